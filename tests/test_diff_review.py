"""Regressions found by reviewing the day's fixes against each other (the diff
review): what a change left behind in the code around it."""

from __future__ import annotations

import shutil
from pathlib import Path

from synthbench.leaderboard import site
from test_cli import run_cli
from test_record_integrity import edm_path, record, store_with_real


def test_a_copied_record_is_not_called_invalid_and_strict_builds(tmp_path, capsys, monkeypatch):
    """56711bc leaves a record copied beside itself out of the board, but the
    leaderboard command and the index page called it an invalid record that
    --strict stops on, and --strict built the site anyway: the copy is a valid
    record whose cell counts once, so it is now named as a copy to remove."""
    monkeypatch.setattr(site, "_table_figures", lambda table, out: [])
    store = store_with_real(tmp_path / "results")
    store.write(record("edm", 0.9))
    original = edm_path(store)
    copy = original.with_name(original.stem + " (copy).json")
    shutil.copy(original, copy)
    for strict in ([], ["--strict"]):
        out_dir = tmp_path / f"site{len(strict)}"
        args = ["leaderboard", "--results", str(store.root), "--out", str(out_dir), "-q", *strict]
        code, out, err = run_cli(args, capsys)
        assert code == 0, err
        assert "2 records ->" in out
        assert "invalid record file" not in err and "--strict stops" not in err
        assert "1 copied record file(s)" in err and f"left out {copy}: the same cell as" in err
        index = (out_dir / "index.html").read_text()
        assert "Records left out" in index and copy.name in index
        assert "not a valid record" not in index and "holds a cell another file holds" in index


def test_an_invalid_record_beside_a_copy_is_still_called_invalid(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(site, "_table_figures", lambda table, out: [])
    store = store_with_real(tmp_path / "results")
    store.write(record("edm", 0.9))
    original = edm_path(store)
    shutil.copy(original, original.with_name(original.stem + " (copy).json"))
    (original.parent / "seed1-garbage.json").write_text("{not json")
    args = ["leaderboard", "--results", str(store.root), "--out", str(tmp_path / "site"), "-q"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "1 invalid record file(s)" in err and "1 copied record file(s)" in err
    index = (tmp_path / "site" / "index.html").read_text()
    assert "is not a valid record" in index and "holds a cell another file holds" in index


def _png_16_bit_rgb(path: Path, side: int = 6) -> None:
    """A 16-bit RGB PNG, written by hand: Pillow opens it as mode ``RGB`` but
    cannot save one."""
    import struct
    import zlib

    import numpy as np

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = np.random.default_rng(0).integers(0, 65535, (side, side * 3)).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_imagefolder_16_bit_rgb_refusal_says_what_pillow_would_do(tmp_path):
    """cd07710's refusal said every 16-bit image would be clipped 'to near
    white', which is what Pillow does to 16-bit grey; a 16-bit RGB PNG opens as
    RGB with each sample's high byte kept, and the message now says that."""
    import numpy as np
    import pytest
    from PIL import Image

    from synthbench.benchmark.datasets import load_dataset
    from synthbench.errors import UserError

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    _png_16_bit_rgb(tmp_path / "dog" / "deep.png")
    assert Image.open(tmp_path / "dog" / "deep.png").mode == "RGB"
    with pytest.raises(UserError) as err:
        load_dataset(f"imagefolder:{tmp_path}")
    assert "16-bit PNG (RGB" in str(err.value) and "high byte" in str(err.value)
    assert "near white" not in str(err.value)
