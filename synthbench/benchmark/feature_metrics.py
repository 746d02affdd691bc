"""Feature-space fidelity metrics, shared by the ``fidelity`` protocol and the
``recon`` sweep (Yamaguchi & Fukuda 2023, arXiv 2311.13090, Fig. 3b): the reference classifier as a torch-fidelity
feature extractor, Inception-v3 from local weights, FID/KID/precision/recall
through torch-fidelity and density/coverage (Naeem et al. 2020). See
``synthbench/protocols/fidelity.py`` for how the metrics are read."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from synthbench.benchmark.batches import eval_batch, in_fixed_batches
from synthbench.benchmark.classifiers import to_input
from synthbench.errors import UserError

CLASSIFIER_EXTRACTOR = "synthbench-classifier"
INCEPTION_EXTRACTOR = "inception-v3-compat"
INCEPTION_FILE = URL_INCEPTION_V3.rsplit("/", 1)[-1]
FEATURE_NAME = "penultimate"
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
"""torch-fidelity's defaults; the subset size shrinks to the smaller set's size."""
METRIC_NAMES = ("fid", "kid", "precision", "recall", "density", "coverage")
PER_CLASS_NAMES = ("fid", "precision", "recall", "density", "coverage")
"""The metrics :func:`per_class_metrics` gives per class (all but KID)."""
HIGHER_IS_BETTER = {"fid": False, "kid": False, "precision": True, "recall": True, "density": True,
                    "coverage": True}


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """A synthbench classifier's penultimate features as a torch-fidelity
    feature extractor (input: uint8 ``[B, C, H, W]``, as torch-fidelity feeds).

    torch-fidelity builds extractors as ``cls(name, features_list, **kwargs)``
    from ``calculate_metrics``' keyword arguments, so the model arrives as the
    ``synthbench_classifier`` keyword. It is held outside the module tree on
    purpose: torch-fidelity calls ``requires_grad_(False)`` and ``.cuda()`` on
    the extractor, which must not change the shared reference classifier."""

    def __init__(self, name: str, features_list: list[str], synthbench_classifier: torch.nn.Module | None = None,
                 **kwargs: Any):
        super().__init__(name, features_list)
        if synthbench_classifier is None:
            raise ValueError(f"feature extractor {name!r} needs the keyword synthbench_classifier=<model>")
        self._model = [synthbench_classifier]

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (FEATURE_NAME,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return FEATURE_NAME

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model = self._model[0]
        model.eval()
        device = next(model.parameters()).device
        return (model.features(to_input(x.to(device))).float().cpu(),)


if CLASSIFIER_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(CLASSIFIER_EXTRACTOR, ClassifierFeatureExtractor)


def classifier_features(model: torch.nn.Module, images: torch.Tensor, device: torch.device,
                        batch: int | None = None) -> torch.Tensor:
    """Penultimate features of uint8 ``images``, through the registered
    torch-fidelity extractor (the same code path ``calculate_metrics`` takes),
    in the fixed evaluation batches of ``batches.py``."""
    ext = ClassifierFeatureExtractor(CLASSIFIER_EXTRACTOR, [FEATURE_NAME], synthbench_classifier=model)
    return in_fixed_batches(lambda x: ext(x.to(device))[0], images, batch or eval_batch(device))


def find_inception_weights(path: str = "") -> Path | None:
    """The Inception-v3 weights file: ``path`` when given, else torch-fidelity's
    download cache (``torch.hub.get_dir()/checkpoints``) if a file is there.
    Never downloads."""
    p = Path(path).expanduser() if path else Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    return p if p.is_file() else None


def inception_features(images: torch.Tensor, weights: Path, device: torch.device, batch: int = 64) -> torch.Tensor:
    """Inception-v3 pool features (2048-d) of uint8 images; grey images are
    repeated to RGB. The weights path is passed explicitly, so torch-fidelity
    never reaches ``load_state_dict_from_url``."""
    # torch-fidelity reads the file with torch.load(weights_only=False), which can
    # run code from a crafted pickle. The bytes are read once, checked to load as
    # plain tensors under the restricted unpickler, and those same bytes go to
    # torch-fidelity through a private copy: the user's file is never read twice,
    # so it cannot be swapped between the check and the load.
    data = Path(weights).read_bytes()
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(
            f"inception_weights {weights} is not a plain tensor state dict ({type(exc).__name__}: {exc}). "
            f"synthbench only loads weights files that need no code execution; give torch-fidelity's "
            f"{INCEPTION_FILE}."
        ) from None
    with tempfile.TemporaryDirectory(prefix="synthbench-inception-") as private:
        checked = Path(private) / INCEPTION_FILE
        checked.write_bytes(data)
        ext = FeatureExtractorInceptionV3(INCEPTION_EXTRACTOR, ["2048"], feature_extractor_weights_path=str(checked),
                                          verbose=False).to(device).eval()
    def features(x: torch.Tensor) -> torch.Tensor:
        return ext((x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x).to(device))[0]

    return in_fixed_batches(features, images, batch)


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 5, chunk: int = 1024) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020, Sec. 3, Eq. 5, 6).

    With NND_k(X_i) the distance of real X_i to its k-th nearest other real
    point and B(X_i) the ball of that radius around it:
    density = 1/(kM) sum_j sum_i 1[Y_j in B(X_i)], coverage = 1/N sum_i
    1[exists j: Y_j in B(X_i)]. "In the ball" is strict (``<``), as in the
    authors' reference code (clovaai/generative-evaluation-prdc). Distances
    are taken ``chunk`` real rows at a time (memory ``chunk x max(N, M)``), in
    float64."""
    real = real.double()
    fake = fake.double()
    if not 1 <= k < len(real):
        raise ValueError(f"k={k} needs at least k + 1 real points, got {len(real)}")
    hits, covered = 0, 0
    for rows in real.split(chunk):
        # k + 1: the nearest point to X_i among the reals is X_i itself (distance 0).
        radii = torch.cdist(rows, real).kthvalue(k + 1, dim=1).values  # [chunk]
        inside = torch.cdist(rows, fake) < radii[:, None]  # [chunk, M]
        hits += int(inside.sum())
        covered += int(inside.any(dim=1).sum())
    return hits / (k * len(fake)), covered / len(real)


def feature_metrics(real: torch.Tensor, fake: torch.Tensor, k: int = 5, kid_seed: int = 2020,
                    with_fid: bool = True, with_kid: bool = True) -> dict[str, float | None]:
    """FID, KID (mean, std over subsets), precision, recall (torch-fidelity) and
    density, coverage (Naeem et al.) between ``real`` and ``fake`` feature rows.

    torch-fidelity's convention is kept: its ``features_1`` is the generated set,
    ``features_2`` the real one, so precision is the share of generated samples
    on the real manifold and recall the share of real samples on the generated
    one (Kynkaanniemi et al. 2019, Sec. 3). ``k`` shrinks to ``min(n) - 1`` for
    tiny sets; a set of one point gives ``None`` everywhere."""
    real = real.float().cpu()
    fake = fake.float().cpu()
    n = min(len(real), len(fake))
    out: dict[str, float | None] = {name: None for name in (*METRIC_NAMES, "kid_std")}
    k_eff = min(k, n - 1)
    out["k"] = k_eff
    if k_eff < 1:
        return out
    if with_fid:
        stats_fake = fid_features_to_statistics(fake)
        stats_real = fid_features_to_statistics(real)
        out["fid"] = float(fid_statistics_to_metric(stats_fake, stats_real, verbose=False)[KEY_METRIC_FID])
    if with_kid:
        kid = kid_features_to_metric(fake, real, kid_subsets=KID_SUBSETS, kid_subset_size=min(KID_SUBSET_SIZE, n),
                                     rng_seed=kid_seed & 0xFFFF_FFFF, verbose=False)
        out["kid"], out["kid_std"] = float(kid[KEY_METRIC_KID_MEAN]), float(kid[KEY_METRIC_KID_STD])
    # torch-fidelity's "full" variant holds all pairwise distances at once; past
    # 10k points its batched "part" variant (same result) keeps memory bounded.
    prc = prc_features_to_metric(fake, real, prc_neighborhood=k_eff, prc_batch_size=10000,
                                 save_cpu_ram=max(len(real), len(fake)) > 10000, verbose=False)
    out["precision"], out["recall"] = float(prc[KEY_METRIC_PRECISION]), float(prc[KEY_METRIC_RECALL])
    out["density"], out["coverage"] = density_coverage(real, fake, k_eff)
    return out


def per_class_metrics(real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor, fake_labels: torch.Tensor,
                      num_classes: int, k: int = 5, kid_seed: int = 2020) -> dict[str, list]:
    """Per-class precision, recall, density, coverage (lists indexed by class,
    ``None`` where a class has fewer than two images on a side) and FID where
    both sides hold more images than the feature dimension."""
    out: dict[str, list] = {name: [] for name in (*PER_CLASS_NAMES, "n_real", "n_fake")}
    dim = real.shape[1]
    for c in range(num_classes):
        r, f = real[real_labels == c], fake[fake_labels == c]
        m = feature_metrics(r, f, k, kid_seed, with_fid=min(len(r), len(f)) > dim, with_kid=False) \
            if min(len(r), len(f)) >= 2 else {}
        for name in PER_CLASS_NAMES:
            value = m.get(name)
            out[name].append(None if value is None else round(float(value), 6))
        out["n_real"].append(int(len(r)))
        out["n_fake"].append(int(len(f)))
    return out
