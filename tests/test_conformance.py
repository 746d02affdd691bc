"""The conformance suite every registered plugin gets, in the style of timm's
``tests/test_models.py``: a new generator, protocol or dataset is tested by
registering it.

- generators: ``synthbench validate``'s checks (the same function the command
  runs), every one of which must pass: declaration, fit, shape/dtype/range,
  determinism, batch-size independence, label adherence, reconstruct;
- protocols: an int version, a declared headline, default options that pass
  their own checks, table columns and every metric ever emitted (the committed
  records and the regress baseline) declared, option-dependent names as
  templates;
- datasets: uint8 images of the declared shape, labels in range, a stable
  content digest, no test image in the train split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synthbench.benchmark.cell import CellSpec
from synthbench.benchmark.datasets import load_dataset
from synthbench.benchmark.metrics import Target
from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.presets import PRECISIONS, PRESETS, bf16_instructions, get_preset
from synthbench.benchmark.validate import validate_generator
from synthbench.errors import UserError
from synthbench.plugins import DATASETS, GENERATORS, PROTOCOLS

from tiny_sd import tiny_sd_path  # noqa: F401  (session fixture: a tiny random SD folder)

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ generators

# In-suite generators get a few more training steps than the smoke preset's so
# that label adherence is measurable; still seconds on a CPU.
FIT_OPTIONS = {"edm": {"train_steps": "400", "eval_batch": "32"},
               "realfake": {"base_train_steps": "400", "finetune_steps": "20", "eval_batch": "32"},
               "ddpm": {"train_steps": "400", "sampler_steps": "20", "eval_batch": "32"},
               "sd": {"sampler_steps": "2", "eval_batch": "4"},
               "stylegan3": {"train_steps": "200", "eval_batch": "16"}}
ADHERENCE_FLOOR = {"real": 0.9, "edm": 0.3, "realfake": 0.3, "ddpm": 0.3}  # chance is 0.1
# Adapters that need Stable Diffusion weights run on a tiny randomly initialised
# pipeline (option -> its folder), which draws at chance; tests/test_sd.py tests sd.
TINY_SD_OPTION = {"sd": "model"}
# Pre-generated samples need a source: the real digits train images as an .npz.
SAMPLES_OPTION = {"samples": "path"}
# A GAN respects labels only once its images look like digits: measured 0.16 after
# 500 steps and 0.24 after 1,000 at smoke width (minutes), 0.86 at the fast preset's
# 1,500 steps (SYNTHBENCH_SLOW=1 tests/test_stylegan3.py checks that). So the
# seconds-long fit here checks the rest of the contract only.
ADHERENCE_EXEMPT = {"sd", "stylegan3"}


@pytest.fixture(scope="session")
def digits_as_samples(digits, tmp_path_factory):
    from synthbench.benchmark.sample_files import write_samples

    x, y = digits.train.images.numpy(), digits.train.labels.numpy()
    return write_samples(tmp_path_factory.mktemp("samples") / "digits.npz", "npz", x, y, digits.class_names)


@pytest.mark.parametrize("name", GENERATORS.names())
def test_generator_passes_validate(name, request, smoke_digits, session_cache):
    cls = GENERATORS.get(name)
    given = dict(FIT_OPTIONS.get(name, {}))
    if name in TINY_SD_OPTION:
        given[TINY_SD_OPTION[name]] = str(request.getfixturevalue("tiny_sd_path"))
    if name in SAMPLES_OPTION:
        given[SAMPLES_OPTION[name]] = str(request.getfixturevalue("digits_as_samples"))
    floor = 0.0 if name in ADHERENCE_EXEMPT else ADHERENCE_FLOOR.get(name, 0.3)
    checks = validate_generator(name, cls, resolve_options(cls.options, given, name), smoke_digits,
                                PRESETS["smoke"], torch.device("cpu"), session_cache, n=60, min_adherence=floor)
    report = {c.name: (c.passed, c.detail) for c in checks}
    assert [c.name for c in checks if c.passed is False] == [], report
    expected = {"declaration", "fit", "shape, dtype, range", "determinism", "batch-size independence",
                "pool prefix stability", "label adherence", "reconstruct", "options outside the key", "speed"}
    assert set(report) == expected, report  # every check ran: none was cut short by a failed fit
    assert report["reconstruct"][0] is (True if cls.can_reconstruct else None)
    # options outside the key that are numbers are checked; a path (samples) is keyed by its content instead
    keyless = any(not opt.in_key and not opt.keyed_when_set and opt.type is not str for opt in cls.options.values())
    assert report["options outside the key"][0] is (True if keyless else None), report


@pytest.mark.parametrize("name", [n for n in GENERATORS.names() if "precision" in GENERATORS.get(n).options
                                  and n not in TINY_SD_OPTION])  # sd's precision applies on CUDA only
def test_generator_passes_validate_in_every_precision(name, smoke_digits, session_cache):
    """Determinism and batch-size independence hold in every precision an adapter
    ships, eager and, where it offers ``compile``, compiled, and for a network
    trained in bf16 where it offers ``train_precision`` (fp32 eager is the test
    above)."""
    cls = GENERATORS.get(name)
    modes = [{"precision": p, "compile": str(c)} for p in cls.options["precision"].choices
             for c in ((False, True) if "compile" in cls.options else (False,)) if (p, c) != ("fp32", False)]
    if "train_precision" in cls.options:
        modes.append({"precision": "bf16", "train_precision": "bf16"})
    if not bf16_instructions("cpu"):
        # torch emulates bf16 on this CPU (10x slower): one bf16 mode, eager sampling from the fp32 network
        # (already fitted above), keeps CI in its time. Training in bf16 is checked for determinism by
        # test_edm/test_ddpm's test_bf16_training_is_deterministic_and_keyed_apart; every mode runs here
        # where bf16 is native
        modes = [m for m in modes if m["precision"] != "bf16"] + [{"precision": "bf16", "compile": "False"}]
    for mode in modes:
        given = {**FIT_OPTIONS.get(name, {}), **mode}
        given = {k: v for k, v in given.items() if k in cls.options}
        checks = validate_generator(name, cls, resolve_options(cls.options, given, name), smoke_digits,
                                    PRESETS["smoke"], torch.device("cpu"), session_cache, n=60,
                                    min_adherence=ADHERENCE_FLOOR.get(name, 0.3))
        report = {c.name: (c.passed, c.detail) for c in checks}
        assert [c.name for c in checks if c.passed is False] == [], (mode, report)
        assert report["determinism"][0] and report["batch-size independence"][0], (mode, report)


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_classifiers_are_deterministic_in_every_precision(precision, compile, smoke_digits, tmp_path):
    """The classifier contract in each precision a preset may ask for, trained
    eagerly and under torch.compile (``--compile``): the same seed gives the same
    weights; an image's logits do not depend on the batch it is evaluated in; a
    classifier read back from the cache evaluates exactly as the one that was
    trained (it keeps its precision)."""
    from synthbench.benchmark.context import cached_classifier
    from synthbench.benchmark.trainer import PRECISION_ATTR, predict_logits

    preset, cpu = get_preset("smoke", precision, compile), torch.device("cpu")
    train, test = smoke_digits.train, smoke_digits.test
    a, b = (cached_classifier(train, 10, preset, 0, cpu, False, tmp_path / name, "conformance") for name in "ab")
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    full = predict_logits(a, test.images, cpu)
    assert torch.equal(full[:37], predict_logits(a, test.images[:37], cpu))
    again = cached_classifier(train, 10, preset, 0, cpu, False, tmp_path / "a", "conformance")  # from the cache
    assert getattr(again, PRECISION_ATTR) == precision and torch.equal(full, predict_logits(again, test.images, cpu))


# ------------------------------------------------------------------- protocols


def _emitted() -> list[tuple[str, int, str, str]]:
    """(protocol, version, metric, where) for every metric the committed records
    and the regress baseline hold: what the protocols really emit, over many
    options (t_re sweeps, scale-up multiples, both MIA feature spaces)."""
    out = []
    for path in sorted((ROOT / "results" / "records").rglob("*.json")):
        record = json.loads(path.read_text())
        spec = record["spec"]
        out += [(spec["protocol"], spec["protocol_version"], m, str(path)) for m in record["metrics"]]
    baseline = json.loads((ROOT / "configs" / "regress-baseline" / "regress.json").read_text())
    for key, cell in baseline["cells"].items():
        proto = key.split("/")[1]
        version = baseline["plugins"][f"protocol:{proto}"]
        out += [(proto, version, m, f"baseline {key}") for m in cell["metrics"]]
    return out


EMITTED = _emitted()


@pytest.mark.parametrize("name", PROTOCOLS.names())
def test_protocol_declaration(name):
    cls = PROTOCOLS.get(name)
    assert cls.name == name
    assert isinstance(cls.version, int) and not isinstance(cls.version, bool)
    # every metric declares how it ranks: higher (True), lower (False), closest to a Target, or None (diagnostic)
    assert cls.metrics and all(rule is None or isinstance(rule, (bool, Target)) for rule in cls.metrics.values())
    assert cls.declared(cls.headline) is not None, f"headline {cls.headline!r} is not a declared metric"
    assert cls.metrics[cls.declared(cls.headline)] is not None, "the headline must rank generators"
    defaults = {key: opt.default for key, opt in cls.options.items()}
    opts = resolve_options(cls.options, defaults, name)  # the defaults pass their own checks
    columns = cls(**opts).table_metrics()
    assert columns and all(cls.declared(c) for c in columns), columns


@pytest.mark.parametrize("name", PROTOCOLS.names())
def test_protocol_emits_only_declared_metrics(name):
    cls = PROTOCOLS.get(name)
    mine = [(m, where) for proto, version, m, where in EMITTED if proto == name and version == cls.version]
    if not mine and PROTOCOLS.origin(name) != "built-in":
        # an installed protocol has no committed records; Protocol.checked_result fails any cell of it that
        # emits an undeclared metric (tests/test_plugin_author_review.py)
        pytest.skip(f"{name} ({PROTOCOLS.origin(name)}) has no committed records; its cells check what they emit")
    assert mine, f"no committed record or baseline cell of {name} v{cls.version} to check"
    undeclared = sorted({m for m, _ in mine if cls.declared(m) is None})
    assert undeclared == [], f"{name} emits undeclared metrics {undeclared}"


def test_templates_match_what_options_produce():
    scaleup, recon, ood = PROTOCOLS.get("scaleup"), PROTOCOLS.get("recon"), PROTOCOLS.get("ood")
    assert scaleup.declared("top1_x2.5") == "top1_x{m}" and scaleup.declared("top1_x10") == "top1_x{m}"
    assert recon.declared("entropy_test_t70") == "entropy_test_t{t}"
    assert ood.declared("augment_folder1_top1") == "{arm}_folder{i}_top1"
    assert recon.declared("top1_x2") is None and scaleup.declared("top1_t30") is None


# -------------------------------------------------------------------- datasets


def _tiny_image_folder(root: Path) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        for cls in ("cat", "dog"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return str(root)


def _load(name: str, tmp_path: Path):
    argument = f":{_tiny_image_folder(tmp_path)}" if name == "imagefolder" else ""
    try:
        return load_dataset(name + argument)
    except UserError as exc:  # paper-scale data absent offline: the error says how to get it
        pytest.skip(f"{name} is not available here: {exc}")


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_contract(name, tmp_path):
    ds = _load(name, tmp_path)
    assert DATASETS.get(name).name == name
    c, h, w = ds.image_shape
    for split in (ds.train, ds.test):
        assert split.images.dtype == torch.uint8 and split.images.ndim == 4
        assert tuple(split.images.shape[1:]) == (c, h, w) and c in (1, 3)
        assert split.labels.dtype == torch.int64 and len(split.labels) == len(split.images) > 0
        assert 0 <= int(split.labels.min()) and int(split.labels.max()) < ds.num_classes
    assert len(ds.digest) == 64 and ds.digest == _load(name, tmp_path / "again").digest
    # A split the loader makes (digits, imagefolder) shares no image; an official
    # split may repeat a handful of source images (CIFAR's test set holds a few
    # exact copies of train images), never a sizeable share.
    train = {bytes(x.numpy().tobytes()) for x in ds.train.images}
    leaked = sum(bytes(x.numpy().tobytes()) in train for x in ds.test.images)
    allowed = 0 if name in ("digits", "imagefolder") else len(ds.test) // 100
    assert leaked <= allowed, f"{leaked} of {len(ds.test)} test images are also in the train split"


# ---------------------------------------------------------------- cell keys


def test_every_committed_record_key_is_its_spec_digest():
    """The spec's JSON, and so every cell_hash, is byte-identical across the
    redesign: each published record still names its own key, and the typed spec
    round-trips to the same key."""
    paths = sorted((ROOT / "results" / "records").rglob("*.json"))
    assert len(paths) >= 50  # not vacuous: the published store holds at least the digits grid's first protocols
    for path in paths:
        record = json.loads(path.read_text())
        spec = CellSpec.from_json(record["spec"])
        assert spec.key == record["cell_hash"], path
        assert path.name.endswith(f"-{spec.key[:16]}.json"), path


@pytest.mark.parametrize("name", GENERATORS.names())
def test_generator_builds_on_a_registered_generator_with_valid_options(name):
    """``builds_on`` names a fit the plan will run as a task: a registered
    generator, not this one, with options its declarations accept."""
    cls = GENERATORS.get(name)
    built = cls.builds_on({key: opt.default for key, opt in cls.options.items()})
    if built is None:
        return
    base, options = built
    assert base != name and base in GENERATORS.names()
    assert GENERATORS.get(base).builds_on({}) is None, "a base that builds on another: the plan fits one level"
    resolve_options(GENERATORS.get(base).options, dict(options), base)
