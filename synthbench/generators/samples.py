"""``samples:PATH``: images a user already generated, scored with no code.

PATH is a folder of class sub-folders, an ``.npz`` or WebDataset-style ``.tar``
shards (``benchmark/sample_files.py`` reads all three; ``synthbench
export-samples`` writes them). Nothing is trained: ``fit`` reads the images and
converts them to the dataset's shape (the record's ``generator_notes`` says how).

Which image a request gets, deterministically and prefix-stably like every adapter:

- a **pool** (what ``replace``, ``augment``, ``scaleup``, ``fidelity``, ``detect``,
  ``ood``, ``copies`` and ``longtail``'s top-ups draw): for run seed s, the images of class c
  are taken in the source's fixed order permuted by a seed derived from (s, c);
  the k-th request of class c gets the k-th image, so no image is used twice in
  one pool, and a longer pool extends a shorter one. More requests of a class
  than the source holds is an error saying how many each protocol needs;
  ``scaleup`` runs only the multiples the source holds.
- a single ``sample(labels, seeds)`` call (the conformance checks): image i is the
  image of class ``labels[i]`` that ``seeds[i]`` picks, with replacement.

A cell's key holds the content digest of what is read (``spec_extras``) and the
``label`` option (default: the file or folder's base name, whether the path is
given as ``samples:PATH`` or as the ``path`` option: both spellings resolve
through :meth:`resolve_argument`, so they are one row and one key), not the path:
changed files make new cells; a source moved under the same base name keeps its
cells, but a new base name or label is a new key, so every cell is computed
again (the key is left so: changing it would move every existing cell). ``recon``
and ``mia`` need a model (to reconstruct, to fit on members only) and record
``unsupported``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from synthbench.benchmark.context import FitContext
from synthbench.benchmark.options import Option
from synthbench.benchmark.sample_files import pool_order, read_samples, source_digest
from synthbench.errors import UserError
from synthbench.generators.base import Generator


class SamplesGenerator(Generator):
    name = "samples"
    version = 2
    """2: a number (an .npz label without class_names, a whole-number .cls) is
    always the class index, so a cell computed by version 1 from such a source
    on a dataset whose classes are named by numbers in another order could hold
    images under the wrong class; its key moves with the version."""
    argument_option = "path"
    refits = False
    needs = "pre-generated images: samples:PATH (a folder of class sub-folders, an .npz or .tar shards)"
    description = "images you already generated, read from a folder, an .npz or .tar shards (no model)"
    options = {
        "path": Option("path", "", "The images: a folder of class sub-folders, an .npz with images and labels, "
                                   "or WebDataset-style .tar shards (given as samples:PATH).", in_key=False),
        "label": Option("label", "", "The name of these samples on the leaderboard (default: the file or "
                                     "folder name). Part of the cell key: a new label is a new row whose cells "
                                     "are all computed again."),
    }

    @classmethod
    def resolve_argument(cls, argument: str, given: dict[str, Any]) -> dict[str, Any]:
        """``samples:PATH``, or the ``path`` option given by name (``-o
        samples.path=PATH``, a suite's ``{path: PATH}``: ``PluginChoice.resolve``
        passes it here too): the path, absolute, and the label from its name
        unless one is given."""
        if not argument:
            raise UserError("The samples generator needs a path: --generator samples:PATH (a folder of class "
                            "sub-folders, an .npz or .tar shards).")
        path = Path(argument).expanduser().resolve()
        label = path.name.removesuffix(".tar").removesuffix(".npz") or "samples"
        return {"label": label, **given, "path": str(path)}

    @classmethod
    def spec_extras(cls, options: dict[str, Any]) -> dict[str, Any]:
        if not options.get("path"):
            raise UserError("The samples generator needs a path: --generator samples:PATH.")
        return {"samples_digest": source_digest(options["path"])}

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        super().fit(ctx)
        samples = read_samples(self.opts["path"], list(ctx.class_names), tuple(ctx.image_shape))
        if samples.digest != source_digest(samples.path):
            raise UserError(f"samples: {samples.path} changed while it was read. Leave the files alone during "
                            f"a run and run again.")
        self._set = samples
        self._by_class = [torch.from_numpy(x) for x in samples.by_class]
        self._real_counts = torch.bincount(ctx.train.labels.to(torch.int64), minlength=len(ctx.class_names)).tolist()
        self._class_names = list(ctx.class_names)
        self.notes = {"source": samples.kind, "images": int(sum(samples.counts)),
                      "per_class": samples.counts, "source_shapes": samples.source_shapes,
                      **({"converted": samples.converted} if samples.converted else {})}
        return {"dataset_digest": ctx.dataset_digest, "samples_digest": samples.digest}

    # -- single requests: with replacement -------------------------------
    def sample(self, labels: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        out = []
        for label, seed in zip(labels.tolist(), seeds):
            images = self._by_class[label]
            out.append(images[int(seed) % len(images)])
        return torch.stack(out) if out else self._by_class[0][:0]

    # -- pools: without replacement ---------------------------------------
    def _order(self, run_seed: int, c: int) -> np.ndarray:
        return pool_order(run_seed, c, len(self._by_class[c]))

    def sample_pool(self, labels: torch.Tensor, run_seed: int, start: int) -> torch.Tensor:
        lab = labels.to(torch.int64).numpy()
        counts = np.bincount(lab[:start], minlength=len(self._by_class))
        need = np.bincount(lab, minlength=len(self._by_class))
        short = [c for c in range(len(self._by_class)) if need[c] > len(self._by_class[c])]
        if short:
            raise UserError(self._too_few(short[0], int(need[short[0]]), len(labels)))
        orders: dict[int, np.ndarray] = {}
        out = []
        for c in lab[start:].tolist():
            order = orders.get(c)
            if order is None:
                order = orders[c] = self._order(run_seed, c)
            out.append(self._by_class[c][int(order[counts[c]])])
            counts[c] += 1
        return torch.stack(out) if out else self._by_class[0][:0]

    def pool_limit(self, labels: torch.Tensor) -> int | None:
        """The longest pool over ``labels`` cycled that uses no image twice."""
        lab = labels.to(torch.int64).numpy()
        limit = None
        for c, images in enumerate(self._by_class):
            where = np.flatnonzero(lab == c)
            if not len(where):
                continue
            cycle, pos = divmod(len(images), len(where))  # the (len+1)-th request of c is the first too many
            first_short = cycle * len(lab) + int(where[pos])
            limit = first_short if limit is None else min(limit, first_short)
        return limit

    def _too_few(self, c: int, need: int, n: int) -> str:
        have, real = len(self._by_class[c]), self._real_counts[c]
        name = self._class_names[c]
        return (f"samples: {self.opts['path']} holds {have} images of class {name!r}; this pool of {n} images "
                f"needs {need} of it. The real train split has {real} of that class: replace, fidelity, detect, "
                f"ood and copies need as many as that per class, augment its ratio plus its largest replace "
                f"fraction times that (1x by default), scaleup xM M times that (scaleup runs only the multiples "
                f"the samples hold, so x1 needs {real}), and longtail less than that (the tail's deficit). "
                f"Generate more images of each class, or run fewer protocols.")
