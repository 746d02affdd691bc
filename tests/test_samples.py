"""Bring your own samples: the ``samples:PATH`` generator on a folder, an .npz
and .tar shards made here; its pool semantics; its errors; and the round trip
``export-samples -g edm`` -> ``evaluate -g samples:...`` giving edm's numbers."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from synthbench.benchmark.sample_files import layout_for_seed, pool_order, read_samples, write_samples
from synthbench.errors import UserError
from test_cli import run_cli

CLASSES = [str(i) for i in range(10)]


def digits_images(digits, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` real digits train images of each class (uint8 1x8x8)."""
    x, y = digits.train.images.numpy(), digits.train.labels.numpy()
    keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
    return x[keep], y[keep]


def make_sources(tmp_path: Path, digits, per_class: int = 45) -> dict[str, Path]:
    x, y = digits_images(digits, per_class)
    return {fmt: write_samples(tmp_path / f"src.{fmt}" if fmt != "folder" else tmp_path / "src", fmt, x, y, CLASSES)
            for fmt in ("folder", "npz", "tar")}


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def handmade_png(pixels: np.ndarray, color_type: int, chunks: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A PNG written byte by byte (Pillow cannot write 48-bit RGB): ``pixels``
    ``H x W`` (grey, colour type 0) or ``H x W x 3`` (RGB, type 2) of uint8 or
    big-endian uint16 (bit depth 8 or 16), with ``chunks`` (type, data) before
    the image data, e.g. a ``tRNS`` transparent colour."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    depth = 16 if pixels.dtype == np.uint16 else 8
    rows = pixels.astype(">u2" if depth == 16 else np.uint8).reshape(pixels.shape[0], -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(chunk(k, d) for k, d in chunks)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# --------------------------------------------------------------------------- reading


def test_the_three_formats_read_the_same_images_with_one_digest_each(tmp_path, digits):
    sources = make_sources(tmp_path, digits)
    sets = {fmt: read_samples(path, CLASSES, (1, 8, 8)) for fmt, path in sources.items()}
    for fmt, s in sets.items():
        assert s.kind == fmt and s.counts == [45] * 10 and not s.converted
    for c in range(10):
        assert np.array_equal(sets["folder"].by_class[c], sets["npz"].by_class[c])
        assert np.array_equal(sets["folder"].by_class[c], sets["tar"].by_class[c])
    assert len({s.digest for s in sets.values()}) == 3  # each format's digest covers its own bytes


def test_a_read_source_is_not_read_again_for_its_digest(tmp_path, digits, monkeypatch):
    """A fit reads the source once: ``read_samples`` leaves its digest for
    ``source_digest`` when the files did not change while it read them; a file
    changed afterwards is read again and gives a new digest."""
    from synthbench.benchmark import sample_files

    sources = make_sources(tmp_path, digits, per_class=3)
    for fmt, path in sources.items():
        got = read_samples(path, CLASSES, (1, 8, 8))
        monkeypatch.setattr(sample_files, "_hash_item", lambda *a: pytest.fail(f"{fmt} read twice"))
        monkeypatch.setattr(sample_files, "_hash_npz", lambda *a: pytest.fail(f"{fmt} read twice"))
        assert sample_files.source_digest(path) == got.digest
        monkeypatch.undo()
    folder = sources["folder"]
    before = sample_files.source_digest(folder)
    first = sorted(folder.rglob("*.png"))[0]
    first.write_bytes(png_bytes(np.full((8, 8), 255, np.uint8)))
    assert sample_files.source_digest(folder) != before


def test_images_of_another_size_and_channels_are_converted_and_the_record_says_so(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("0", "1"):
        (tmp_path / "rgb" / c).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "rgb" / c / f"{i}.png").write_bytes(png_bytes(rng.integers(0, 255, (16, 16, 3), np.uint8)))
    s = read_samples(tmp_path / "rgb", ["0", "1"], (1, 8, 8))
    assert s.by_class[0].shape == (3, 1, 8, 8) and s.by_class[0].dtype == np.uint8
    assert s.source_shapes == ["3x16x16"] and "converted to the dataset's 1x8x8" in s.converted


def test_class_folders_may_use_the_safe_name_or_the_index(tmp_path):
    names = ["T-shirt/top", "Trouser"]
    img = png_bytes(np.zeros((8, 8), np.uint8))
    for folder in ("T-shirt_top", "1"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.png").write_bytes(img)
    assert read_samples(tmp_path, names, (1, 8, 8)).counts == [1, 1]


# --------------------------------------------------------------------------- the adapter


def fitted_samples(path: Path, dataset):
    from synthbench.benchmark.context import FitContext
    from synthbench.benchmark.presets import PRESETS
    from synthbench.plugins import GENERATORS

    cls = GENERATORS.get("samples")
    gen = cls(**cls.resolve_argument(str(path), {}))
    gen.fitted(FitContext.from_dataset(dataset, PRESETS["smoke"], torch.device("cpu"), path.parent / "cache"))
    return gen


def test_a_pool_takes_each_class_in_its_seeded_order_never_twice_and_extends_as_a_prefix(tmp_path, digits,
                                                                                       smoke_digits):
    path = make_sources(tmp_path, digits)["npz"]  # 45 a class, from the uncapped split
    gen = fitted_samples(path, smoke_digits)
    labels = smoke_digits.train.labels  # 40 per class; the source holds 45
    pool = gen.sample_pool(labels, 3, 0)
    source = read_samples(path, CLASSES, (1, 8, 8))
    for c in range(10):
        got = pool[labels == c].numpy()
        want = source.by_class[c][pool_order(3, c, 45)[:40]]  # the k-th request of c gets the k-th of its order
        assert np.array_equal(got, want)
        assert len(set(pool_order(3, c, 45)[:40].tolist())) == 40  # no image twice
    assert torch.equal(torch.cat([gen.sample_pool(labels[:100], 3, 0), gen.sample_pool(labels, 3, 100)]), pool)
    assert not torch.equal(gen.sample_pool(labels, 4, 0), pool)  # another run seed, another order
    # the 46th request of a class (its 6th in the second pass over the labels) is the first it cannot serve
    assert gen.pool_limit(labels) == min(400 + int(np.flatnonzero(labels.numpy() == c)[5]) for c in range(10))
    with pytest.raises(UserError, match=r"holds 45 images of class '\d'; this pool of 800 images needs 80"):
        gen.sample_pool(torch.cat([labels, labels]), 3, 0)


def test_samples_pass_the_conformance_checks_on_a_folder_an_npz_and_a_tar(tmp_path, digits, capsys):
    for fmt, path in make_sources(tmp_path, digits, per_class=20).items():
        code, out, err = run_cli(["validate", f"samples:{path}", "--preset", "smoke", "--results",
                                  str(tmp_path / "runs"), "-q"], capsys)
        assert code == 0, (fmt, out, err)
        for check in ("determinism", "batch-size independence", "pool prefix stability", "label adherence"):
            assert any(line.startswith(check) and " pass " in f" {line} " for line in out.splitlines()), (check, out)


# --------------------------------------------------------------------------- errors


def bad_sources(tmp_path: Path, digits) -> dict[str, tuple[Path, str]]:
    x, y = digits_images(digits, 5)
    few = write_samples(tmp_path / "few.npz", "npz", x, y, CLASSES)
    unknown = write_samples(tmp_path / "unknown", "folder", x, y, CLASSES)
    (unknown / "9").rename(unknown / "nine")
    corrupt = write_samples(tmp_path / "corrupt", "folder", x, y, CLASSES)
    (corrupt / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    deep = write_samples(tmp_path / "deep", "folder", x, y, CLASSES)
    (deep / "2" / "deep.png").write_bytes(png_bytes(np.full((8, 8), 40000, np.uint16)))
    rgba = write_samples(tmp_path / "rgba", "folder", x, y, CLASSES)
    (rgba / "4" / "alpha.png").write_bytes(png_bytes(np.zeros((8, 8, 4), np.uint8), "RGBA"))
    deep_rgb = write_samples(tmp_path / "deep_rgb", "folder", x, y, CLASSES)  # Pillow opens it as mode RGB
    (deep_rgb / "5" / "deep_rgb.png").write_bytes(handmade_png(np.full((8, 8, 3), 40000, np.uint16), 2))
    trns = write_samples(tmp_path / "trns", "folder", x, y, CLASSES)  # 8-bit RGB, one colour transparent
    (trns / "6" / "trns.png").write_bytes(handmade_png(np.zeros((8, 8, 3), np.uint8), 2,
                                                       ((b"tRNS", b"\x00\x00" * 3),)))
    trns_grey = write_samples(tmp_path / "trns_grey", "folder", x, y, CLASSES)  # 8-bit grey, black transparent
    (trns_grey / "7" / "trns_grey.png").write_bytes(handmade_png(np.zeros((8, 8), np.uint8), 0,
                                                                 ((b"tRNS", b"\x00\x00"),)))
    names = tmp_path / "names.npz"  # labels that are class names, without class_names: refused before the digest
    np.savez(names, images=x, labels=np.array([CLASSES[c] for c in y]))
    return {
        "string labels": (names, r"`labels` must be one integer class index per image \(50\); got <U1"),
        "too few": (few, r"holds 5 images of class '0'; this pool of 400 images needs 40 of it.*scaleup xM"),
        "unknown class": (unknown, r"unknown class name\(s\) 'nine'; no images of '9'"),
        "corrupt": (corrupt, r"cannot read the image .*broken\.png"),
        "empty archive": (empty, r"holds no images"),
        "16-bit": (deep, r"deep\.png is a I;16 image \(16-bit or floating point\)"),
        "RGBA": (rgba, r"alpha\.png has an alpha channel"),
        "16-bit RGB": (deep_rgb, r"deep_rgb\.png is a 16-bit PNG \(RGB, 16 bits per channel\)"),
        "tRNS": (trns, r"trns\.png has a transparent colour \(RGB with a transparency entry"),
        "grey tRNS": (trns_grey, r"trns_grey\.png has a transparent colour \(L with a transparency entry"),
    }


def test_bad_samples_are_one_paragraph_errors_with_exit_2(tmp_path, digits, capsys):
    for what, (path, pattern) in bad_sources(tmp_path, digits).items():
        code, out, err = run_cli(["evaluate", "-g", f"samples:{path}", "-p", "replace", "--preset", "smoke",
                                  "--seeds", "1", "--results", str(tmp_path / "runs"), "-q"], capsys)
        assert code == 2, (what, out, err)
        assert "Traceback" not in err and err.startswith("error: samples:"), (what, err)
        assert re.search(pattern, err.replace("\n", " ")), (what, err)
    assert not list((tmp_path / "runs").rglob("records/*/*/samples/*.json"))  # bad input: no record, no traceback


# --------------------------------------------------------------------------- in the grid


def records_of(root: Path, generator: str) -> dict[tuple[str, str, int], dict]:
    """(label or "", protocol, seed) -> record of ``generator``."""
    out = {}
    for f in (root / "records").rglob("*.json"):
        rec = json.loads(f.read_text())
        spec = rec["spec"]
        if spec["generator"] == generator:
            out[(spec["generator_options"].get("label", ""), spec["protocol"], spec["seed"])] = rec
    return out


def test_export_then_score_gives_the_adapters_numbers(tmp_path, capsys):
    """The round trip on digits at smoke: edm's replace, augment and fidelity
    metrics through samples:, bit for bit, from a folder and from an .npz."""
    runs = str(tmp_path / "runs")
    common = ["--preset", "smoke", "--results", runs, "--threads", "1", "-q"]
    for fmt in ("npz", "folder"):
        code, out, err = run_cli(["export-samples", "-g", "edm", "--seed", "0", "--format", fmt,
                                  "--out", str(tmp_path / f"edm-{fmt}"), *common], capsys)
        assert code == 0, err
        assert "wrote 400 samples of edm" in out
    code, _, err = run_cli(["evaluate", "-g", f"edm,samples:{tmp_path / 'edm-npz'},samples:{tmp_path / 'edm-folder'}",
                            "-p", "replace,augment,fidelity", "--seed", "0", *common], capsys)
    assert code == 0, err
    edm, samples = records_of(tmp_path / "runs", "edm"), records_of(tmp_path / "runs", "samples")
    assert len(edm) == 3 and len(samples) == 6
    for rec in samples.values():
        want = edm[("", rec["spec"]["protocol"], 0)]
        assert {k: v["value"] for k, v in rec["metrics"].items()} == {k: v["value"] for k, v in want["metrics"].items()}
        assert rec["details"]["generator_notes"]["images"] == 400
        assert rec["spec"]["generator_extra"]["samples_digest"]
        assert rec["spec"]["generator_options"]["label"] in ("edm-npz", "edm-folder")
        assert "path" not in rec["spec"]["generator_options"]  # a moved folder keeps its cells


def test_scaleup_runs_the_multiples_the_samples_hold_and_mia_recon_are_unsupported(tmp_path, digits, capsys):
    x, y = digits_images(digits, 90)  # 2.25x the 40 per class of smoke
    src = write_samples(tmp_path / "src.npz", "npz", x, y, CLASSES)
    code, _, err = run_cli(["evaluate", "-g", f"samples:{src}", "-p", "scaleup,mia,recon", "--preset", "smoke",
                            "--seeds", "1", "--results", str(tmp_path / "runs"), "-o", "multiples=1,2,5", "-q"],
                           capsys)
    assert code == 0, err
    recs = records_of(tmp_path / "runs", "samples")
    scale = recs[("src", "scaleup", 0)]
    assert scale["status"] == "ok" and {"top1_x1", "top1_x2"} <= set(scale["metrics"])
    assert "top1_x5" not in scale["metrics"] and "top1" not in scale["metrics"]
    assert "x5 not run" in scale["details"]["note"]
    for proto in ("mia", "recon"):
        assert recs[("src", proto, 0)]["status"] == "unsupported"
    assert "fixed images" in recs[("src", "mia", 0)]["error"]


def test_changed_files_make_new_cells(tmp_path, digits, capsys):
    from synthbench.plugins import GENERATORS

    x, y = digits_images(digits, 5)
    src = write_samples(tmp_path / "src", "folder", x, y, CLASSES)
    cls = GENERATORS.get("samples")
    before = cls.spec_extras(cls.resolve_argument(str(src), {}))
    first = sorted((src / "0").iterdir())[0]
    first.write_bytes(png_bytes(np.full((8, 8), 7, np.uint8)))
    after = cls.spec_extras(cls.resolve_argument(str(src), {}))
    assert before != after


def test_files_changed_between_planning_and_fitting_stop_the_run(tmp_path, digits, capsys, monkeypatch):
    """The cell key holds the source's digest as the plan read it; a fit that
    reads other files (edited meanwhile) must not store its numbers under it."""
    from synthbench.plugins import GENERATORS

    x, y = digits_images(digits, 45)
    src = write_samples(tmp_path / "src.npz", "npz", x, y, CLASSES)
    cls = GENERATORS.get("samples")
    monkeypatch.setattr(cls, "spec_extras", classmethod(lambda klass, options: {"samples_digest": "0" * 16}))
    code, _, err = run_cli(["evaluate", "-g", f"samples:{src}", "-p", "replace", "--preset", "smoke", "--seeds", "1",
                            "--threads", "1", "--results", str(tmp_path / "store"), "-q"], capsys)
    assert code == 2 and "samples_digest was '0000000000000000' when this run was planned" in err, err
    assert "input files changed during the run" in err and "Traceback" not in err
    assert not list((tmp_path / "store" / "records").rglob("samples/seed0-*.json"))  # nothing under the stale key


def test_layout_for_seed_inverts_the_pool_order():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 30)
    images = np.arange(30, dtype=np.uint8).reshape(30, 1, 1, 1)
    x, y = layout_for_seed(images, labels, 7, 3)
    for c in range(3):
        mine = x[y == c]
        assert np.array_equal(mine[pool_order(7, c, len(mine))], images[labels == c])


# --------------------------------------------------------------------------- the content digest


def _digest_before_class_names(images: np.ndarray, labels: np.ndarray) -> str:
    """An .npz's digest as it was computed before ``class_names`` were covered
    (a copy of the old ``_hash_npz``): an .npz without names must keep it, so
    users' existing cells stay cache hits."""
    import hashlib

    h = hashlib.sha256(b"synthbench-samples\x1fnpz\x1f")
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(str(images.shape).encode())
    h.update(labels.astype(np.int64).tobytes())
    return h.hexdigest()


def test_an_npz_digest_covers_its_class_names_and_is_unchanged_without_them(tmp_path, digits):
    """``class_names`` decide which class each label is: two .npz files that
    differ only in their order are different sources (different cells, different
    pools); an .npz without names keeps the digest it always had."""
    from synthbench.benchmark.sample_files import source_digest

    x, y = digits_images(digits, 3)
    swapped = CLASSES[:]
    swapped[0], swapped[1] = swapped[1], swapped[0]
    np.savez(tmp_path / "a.npz", images=x, labels=y, class_names=np.array(CLASSES))
    np.savez(tmp_path / "b.npz", images=x, labels=y, class_names=np.array(swapped))
    np.savez(tmp_path / "bare.npz", images=x, labels=y)
    a, b = source_digest(tmp_path / "a.npz"), source_digest(tmp_path / "b.npz")
    assert a != b
    assert read_samples(tmp_path / "a.npz", CLASSES, (1, 8, 8)).digest == a  # read and digest agree
    assert read_samples(tmp_path / "b.npz", CLASSES, (1, 8, 8)).digest == b
    want = _digest_before_class_names(x, y)
    assert source_digest(tmp_path / "bare.npz") == want
    assert read_samples(tmp_path / "bare.npz", CLASSES, (1, 8, 8)).digest == want


# --------------------------------------------------------------------------- numbers are indices

NUMBERED = [str(i) for i in range(11)]
"""Class folders named by numbers; an image folder sorts them as text
('0', '1', '10', '2', ...), so most names are another class's index."""


def numbered_dataset(root: Path, per_class: int = 5) -> list[str]:
    """An image folder whose class names are numbers in another order than
    their indices; image i of class NAME is filled with 20 * NAME + i, so a
    pixel tells which class it was written under. Returns the class names in
    the dataset's (sorted) order."""
    for name in NUMBERED:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i}.png").write_bytes(png_bytes(np.full((8, 8), 20 * int(name) + i, np.uint8)))
    return sorted(NUMBERED)


def assert_classes_kept(samples, class_names: list[str]) -> None:
    for c, images in enumerate(samples.by_class):
        assert len(images), class_names[c]
        assert set((images[:, 0, 0, 0] // 20).tolist()) == {int(class_names[c])}, (c, class_names[c])


def test_numbers_are_class_indices_and_an_export_reads_back_on_a_numbered_dataset(tmp_path, capsys):
    """On an image folder whose classes are named '0', '1', '10', '2', ...: an
    export of every format reads back as the classes it was written from (a
    .cls number is the index, a folder the name), scoring the .tar gives the
    exporting adapter's own numbers, and an .npz label without class_names is
    the index, not the class that number names."""
    ds = tmp_path / "ds"
    names = numbered_dataset(ds)
    assert names[:4] == ["0", "1", "10", "2"]
    runs = str(tmp_path / "runs")
    common = ["-d", f"imagefolder:{ds}", "--preset", "smoke", "--seed", "0", "--results", runs, "--threads", "1",
              "-q"]
    for fmt in ("tar", "folder", "npz"):
        out_path = tmp_path / f"exp-{fmt}"
        code, out, err = run_cli(["export-samples", "-g", f"samples:{ds}", "--format", fmt, "--out", str(out_path),
                                  *common], capsys)
        assert code == 0, err
        assert_classes_kept(read_samples(out_path, names, (1, 8, 8)), names)
    code, _, err = run_cli(["evaluate", "-g", f"samples:{ds},samples:{tmp_path / 'exp-tar'}", "-p", "replace",
                            *common], capsys)
    assert code == 0, err
    recs = records_of(tmp_path / "runs", "samples")
    own, scored = recs[("ds", "replace", 0)], recs[("exp-tar", "replace", 0)]
    assert {k: v["value"] for k, v in scored["metrics"].items()} == {k: v["value"] for k, v in own["metrics"].items()}
    x = np.stack([np.full((1, 8, 8), 20 * int(n), np.uint8) for n in names])
    np.savez(tmp_path / "bare.npz", images=x, labels=np.arange(len(names)))  # label c is class c
    assert_classes_kept(read_samples(tmp_path / "bare.npz", names, (1, 8, 8)), names)
    tar = tmp_path / "named.tar"  # a .cls that is not a number is a class name
    with tarfile.open(tar, "w") as t:
        for i, cls in enumerate((b"T-shirt/top", b"1", b"0", b"2")):
            for key, data in ((f"{i}.png", png_bytes(np.full((8, 8), i, np.uint8))), (f"{i}.cls", cls)):
                info = tarfile.TarInfo(key)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    got = read_samples(tar, ["1", "T-shirt/top", "0"], (1, 8, 8))  # '1' is a number: index 1, not the class '1'
    assert [x[:, 0, 0, 0].tolist() for x in got.by_class] == [[2], [0, 1], [3]]
    with pytest.raises(UserError, match=r"`labels` hold 11 \(image 0\).*0\.\.10"):
        np.savez(tmp_path / "out.npz", images=x, labels=np.full(len(names), 11))
        read_samples(tmp_path / "out.npz", names, (1, 8, 8))


# --------------------------------------------------------------------------- export-samples refuses unconditional pools


def test_export_samples_refuses_an_unconditional_adapter(tmp_path, capsys):
    """An unconditional adapter's pool is pseudo-labelled, not class-balanced,
    so the `score them` command export-samples prints would fail at once: it
    is refused with one paragraph, exit 2, nothing written. edm with
    conditional=false is refused before its fit (its option says so); an
    adapter that turns unconditional in fit is refused after it."""
    from synthbench.api import FitContext, Generator
    from synthbench.plugins import GENERATORS

    runs = str(tmp_path / "runs")
    common = ["--preset", "smoke", "--results", runs, "--threads", "1", "-q"]
    code, out, err = run_cli(["export-samples", "-g", "edm", "-o", "conditional=false", "--out",
                              str(tmp_path / "edm"), *common], capsys)
    assert code == 2, (out, err)
    text = err.replace("\n", " ")
    assert "Traceback" not in err and "is unconditional" in text and "not class-balanced" in text
    assert "synthbench evaluate -g edm -o conditional=false -d digits --preset smoke --seed 0" in text
    assert not (tmp_path / "edm").exists()
    assert not [f for f in (tmp_path / "runs").rglob("*") if f.is_file()]  # refused before a fit: nothing cached

    class Unconditional(Generator):
        name = "unconditional-stub"
        description = "noise, unconditional (for tests)"

        def fit(self, ctx: FitContext):
            self.conditional = False
            self.shape = tuple(ctx.image_shape)
            return {"dataset_digest": ctx.dataset_digest}

        def sample(self, labels, seeds):
            return torch.stack([torch.randint(0, 256, self.shape, dtype=torch.uint8,
                                              generator=torch.Generator().manual_seed(int(s))) for s in seeds])

    GENERATORS.register(Unconditional.name, Unconditional)
    try:
        code, out, err = run_cli(["export-samples", "-g", Unconditional.name, "--out", str(tmp_path / "stub"),
                                  *common], capsys)
    finally:
        GENERATORS.unregister(Unconditional.name)
    assert code == 2, (out, err)
    assert "unconditional-stub is unconditional" in err.replace("\n", " ") and "Traceback" not in err
    assert not (tmp_path / "stub").exists()


# --------------------------------------------------------------------------- tar shards with metadata members


def test_a_tar_shard_with_json_and_txt_members_reads_like_one_without(tmp_path, digits):
    """img2dataset-style shards hold KEY.json and KEY.txt beside each image:
    members that are neither an image nor a .cls are skipped wherever they sit
    (after the pair, too, where they were once refused as "members without
    their pair") and leave the digest as it is without them."""
    x, y = digits_images(digits, 2)
    plain = write_samples(tmp_path / "plain.tar", "tar", x, y, CLASSES)
    shard = tmp_path / "shard.tar"
    with tarfile.open(plain) as src, tarfile.open(shard, "w") as out:
        for member in src.getmembers():
            out.addfile(member, src.extractfile(member))
            key = member.name.rpartition(".")[0]
            if member.name.endswith(".cls"):  # after the pair
                for ext, data in (("json", b'{"caption": "a digit"}'), ("txt", b"a digit")):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    out.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("zzz.json")  # metadata with no image at all
        info.size = 2
        out.addfile(info, io.BytesIO(b"{}"))
    want, got = read_samples(plain, CLASSES, (1, 8, 8)), read_samples(shard, CLASSES, (1, 8, 8))
    assert got.counts == [2] * 10 and got.digest == want.digest
    assert all(np.array_equal(a, b) for a, b in zip(got.by_class, want.by_class))


# --------------------------------------------------------------------------- what the cell key holds


def test_the_cell_key_holds_the_digest_and_the_label_not_the_path(tmp_path, digits, smoke_digits):
    """What the README says a move or a rename costs: a source moved under the
    same base name keeps its cell key; renamed (the default label is the base
    name) or given another label, it is a new key whose cells are all computed
    again; renamed but given its old label, it keeps its key."""
    from synthbench.benchmark.cell import CellSpec, PluginChoice
    from synthbench.benchmark.presets import PRESETS
    from synthbench.plugins import GENERATORS, PROTOCOLS

    def key(path: Path, **given) -> str:
        gen = PluginChoice.resolve(GENERATORS, f"samples:{path}", given)
        return CellSpec.of(smoke_digits, gen, PluginChoice.resolve(PROTOCOLS, "replace"), PRESETS["smoke"], 0,
                           torch.device("cpu")).key

    x, y = digits_images(digits, 2)
    first = write_samples(tmp_path / "a" / "src", "folder", x, y, CLASSES)
    before = key(first)
    (tmp_path / "c").mkdir()
    moved = first.rename(tmp_path / "c" / "src")
    assert key(moved) == before  # moved, same base name: same cells
    assert key(moved, label="mine") != before  # another label: another row, every cell again
    renamed = moved.rename(tmp_path / "c" / "renamed")
    assert key(renamed) != before  # the default label is the base name
    assert key(renamed, label="src") == before  # its old label keeps its cells


def test_export_follows_the_out_suffix_unless_told_and_refuses_a_contradiction():
    from synthbench.samples_cli import export_format

    assert export_format(None, "edm_x10.npz") == "npz"  # the README's example wrote a folder named .npz
    assert export_format(None, "shard.TAR") == "tar" and export_format(None, "edm_samples") == "folder"
    assert export_format("npz", "x.npz") == "npz" and export_format("folder", "plain") == "folder"
    with pytest.raises(UserError, match="names a .npz file but --format is folder"):
        export_format("folder", "x.npz")


@pytest.mark.parametrize("protocol, options, need", [
    ("copies", [], 40),  # a train-sized pool, as replace's
    ("augment", ["-o", "augment.replace_fraction=0.5"], 60),  # ratio 1 + the replaced half
])
def test_too_few_images_says_what_each_protocol_needs(protocol, options, need, tmp_path, digits, capsys):
    """The "too few images" message listed replace, fidelity, detect and ood as
    needing the train split's count per class, leaving out copies, which draws
    the same train-sized pool, and said augment needs its ratio times it, though
    it draws its replace_fraction's images on top. Found checking the message
    against each protocol's sample_pool_size."""
    x, y = digits_images(digits, 40)  # smoke's 40 train images of each class: enough for replace, not more
    src = write_samples(tmp_path / "src.npz", "npz", x, y, CLASSES)
    if protocol == "copies":
        x, y = digits_images(digits, 39)
        src = write_samples(tmp_path / "few.npz", "npz", x, y, CLASSES)
    code, out, err = run_cli(["evaluate", "-g", f"samples:{src}", "-p", protocol, *options, "--preset", "smoke",
                              "--seeds", "1", "--threads", "1", "--results", str(tmp_path / "runs"), "-q"], capsys)
    text = " ".join(err.split())
    assert code == 2 and f"needs {need} of it" in text, (out, err)
    assert "replace, fidelity, detect, ood and copies need as many as that per class" in text
    assert "augment its ratio plus its largest replace fraction times that" in text


def test_a_path_given_as_an_option_is_the_row_and_key_of_samples_colon_path(tmp_path, digits, smoke_digits, capsys,
                                                                             monkeypatch):
    """``-g samples -o samples.path=P`` got the label ``samples`` instead of P's
    base name, so another cell key than ``-g samples:P`` (no cache hit, another
    row name), and a suite's ``samples: [{path: A}, {path: B}]`` was refused as
    "the same row" twice. Found by a reviewer. The ``samples:P`` key is left as
    it was (records computed before keep their cells)."""
    from synthbench.benchmark.cell import CellSpec, PluginChoice
    from synthbench.benchmark.presets import PRESETS
    from synthbench.plugins import GENERATORS, PROTOCOLS

    def key(choice: PluginChoice) -> str:
        return CellSpec.of(smoke_digits, choice, PluginChoice.resolve(PROTOCOLS, "replace"), PRESETS["smoke"], 0,
                           torch.device("cpu")).key

    x, y = digits_images(digits, 40)
    a = write_samples(tmp_path / "A", "folder", x, y, CLASSES)
    b = write_samples(tmp_path / "B.npz", "npz", x[::-1], y[::-1], CLASSES)
    colon = PluginChoice.resolve(GENERATORS, f"samples:{a}")
    assert colon.options == {"path": str(a.resolve()), "label": "A"}  # what keyed samples:P's cells before
    monkeypatch.chdir(tmp_path)
    for given in ({"path": str(a)}, {"path": "A"}):  # a relative path is made absolute, as samples:P's is
        named = PluginChoice.resolve(GENERATORS, "samples", given)
        assert named.options == colon.options and named.label == colon.label == "samples (label=A)"
        assert key(named) == key(colon)
    mine = PluginChoice.resolve(GENERATORS, "samples", {"path": "A", "label": "mine"})
    assert mine.options["label"] == "mine"  # a label given is kept

    # scored as samples:A, then asked for as -o samples.path=A: the same cell, found in the store
    store = tmp_path / "store"
    code, _, err = run_cli(["evaluate", "-g", f"samples:{a}", "-p", "replace", "--preset", "smoke", "--seeds", "1",
                            "--threads", "1", "--results", str(store), "-q"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["evaluate", "-g", "samples", "-o", f"samples.path={a}", "-p", "replace", "--preset",
                              "smoke", "--seeds", "1", "--threads", "1", "--results", str(store), "--dry-run"],
                             capsys)
    assert code == 0, err
    assert re.search(r"samples \(label=A\)\s+seed 0\s+cached", out), out

    # a suite may list two sources as two rows
    suite = tmp_path / "two.yaml"
    suite.write_text(f"name: two\ndataset: digits\npreset: smoke\nseeds: [0]\nthreads: 1\n"
                     f"generators:\n  samples:\n    - {{path: {a}}}\n    - {{path: {b}}}\nprotocols: {{replace: {{}}}}\n")
    code, out, err = run_cli(["run", str(suite), "--results", str(store), "--dry-run"], capsys)
    assert code == 0, err
    assert "samples (label=A) x replace" in out and "samples (label=B) x replace" in out


def test_two_sources_of_one_base_name_are_refused_naming_the_shared_label(tmp_path, digits, capsys):
    """x.npz and x.tar both take the label x, so their rows key alike; the
    error names what they share (label=x). Before, it said only that an
    option at its default or one that does not change outputs leaves a row as
    it is, which did not point at the label. Found by the README review."""
    sources = make_sources(tmp_path, digits)
    npz, tar = tmp_path / "x.npz", tmp_path / "x.tar"
    sources["npz"].rename(npz)
    sources["tar"].rename(tar)
    code, out, err = run_cli(["evaluate", "-g", f"samples:{npz},samples:{tar}", "--preset", "smoke", "--seeds", "1",
                              "--results", str(tmp_path / "r"), "--dry-run", "--threads", "1"], capsys)
    assert code == 2
    assert "both key their cells as samples with label=x" in err
