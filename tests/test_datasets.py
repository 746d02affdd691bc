from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from synthbench.benchmark import datasets as ds_mod
from synthbench.benchmark.datasets import load_dataset, stratified_split
from synthbench.errors import UserError


def test_digits_shapes_and_split(digits):
    assert digits.image_shape == (1, 8, 8)
    assert digits.train.images.dtype == torch.uint8 and digits.train.labels.dtype == torch.int64
    assert len(digits.train) + len(digits.test) == 1797
    assert int(digits.train.images.max()) == 255
    # stratified: every class in the test split at ~20%
    counts = torch.bincount(digits.test.labels, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38


def test_digits_digest_is_stable(digits):
    again = load_dataset("digits")
    assert again.digest == digits.digest and len(digits.digest) == 64
    assert torch.equal(again.train.images, digits.train.images)


def test_split_is_disjoint_and_stratified():
    labels = np.repeat(np.arange(3), 50)
    tr, te = stratified_split(labels, 0.2, seed=0)
    assert not set(tr) & set(te) and len(tr) + len(te) == 150
    assert np.bincount(labels[te]).tolist() == [10, 10, 10]


def test_capped_keeps_order_and_changes_digest(digits):
    capped = digits.capped(20)
    assert torch.bincount(capped.train.labels).tolist() == [20] * 10
    assert capped.digest != digits.digest
    assert torch.equal(capped.test.images, digits.test.images)


def test_imagefolder_with_implicit_split(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (6, 6), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    ds = load_dataset(f"imagefolder:{tmp_path}")
    assert ds.class_names == ["cat", "dog"]
    assert ds.image_shape == (1, 6, 6)
    assert len(ds.train) == 16 and len(ds.test) == 4


def test_imagefolder_train_and_test_folders_give_a_train_split_whose_prefixes_are_balanced(tmp_path):
    """Protocols take prefixes of the train labels (augment's added and replaced
    images): read class by class, the first 30 of 60 were all 'a'."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("test", 4)):
        for c in ("a", "b", "c"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (6, 6), dtype=np.uint8)).save(tmp_path / split / c / f"{i}.png")
    ds = load_dataset(f"imagefolder:{tmp_path}")
    assert torch.bincount(ds.train.labels).tolist() == [20, 20, 20]
    assert min(torch.bincount(ds.train.labels[:30], minlength=3).tolist()) >= 5
    assert torch.equal(load_dataset(f"imagefolder:{tmp_path}").train.labels, ds.train.labels)  # one seeded order


def test_imagefolder_errors(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    with pytest.raises(UserError, match="at least two class"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_imagefolder_refuses_16_bit_images_that_pillow_would_clip_to_white(tmp_path):
    """A 16-bit grey PNG loaded through ``convert("L")`` came out near white
    (its values clipped at 255) and was scored as the user's data; it is now a
    one-paragraph error naming the file. 8-bit files in the same folder load."""
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (6, 6), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    assert len(load_dataset(f"imagefolder:{tmp_path}").train) == 8
    deep = Image.fromarray(rng.integers(0, 65535, (6, 6), dtype=np.uint16))
    deep.save(tmp_path / "dog" / "deep.png")
    assert Image.open(tmp_path / "dog" / "deep.png").mode.startswith("I")
    with pytest.raises(UserError, match=r"deep\.png is a I;16.* image \(16-bit or floating point\).*8 bits"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_fashion_mnist_offline_error_names_all_three_ways(tmp_path, monkeypatch):
    monkeypatch.setattr(ds_mod, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(UserError) as err:
        load_dataset("fashion-mnist", data_root=str(tmp_path))
    msg = str(err.value)
    assert "--data-root" in msg and "dataset-fashion-mnist" in msg and "download" in msg


def test_missing_data_root_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        load_dataset("mnist", data_root=str(tmp_path / "nope"))


def test_imagefolder_refuses_a_missing_split_different_classes_and_a_class_without_test_images(tmp_path):
    def images(folder: Path, n: int) -> None:
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((6, 6), 9 * i, np.uint8)).save(folder / f"{i}.png")

    for c in ("a", "b"):
        images(tmp_path / "trainonly" / "train" / c, 4)
        images(tmp_path / "tiny" / c, 2)
    for split, classes in (("train", "ab"), ("test", "ac")):
        for c in classes:
            images(tmp_path / "mismatch" / split / c, 4)
    with pytest.raises(UserError, match="has train/ but no test/"):
        load_dataset(f"imagefolder:{tmp_path / 'trainonly'}")
    with pytest.raises(UserError, match=r"different classes \(only in train/: b; only in test/: c\)"):
        load_dataset(f"imagefolder:{tmp_path / 'mismatch'}")
    with pytest.raises(UserError, match="no test image of class a, b .*at least 3 images"):
        load_dataset(f"imagefolder:{tmp_path / 'tiny'}")


def test_a_failed_download_is_one_paragraph(tmp_path, monkeypatch):
    """torchvision's download error has a line per mirror tried; the message
    that embeds it is one paragraph (the README's promise for bad input)."""
    from synthbench.benchmark.datasets import MNIST
    from synthbench.errors import UserError

    def offline(self, root, download):
        if download:
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n"
                               "<urlopen error [Errno -2] Name or service not known>\n")
        raise RuntimeError("Dataset not found. You can use download=True to download it")

    monkeypatch.setattr(MNIST, "_tv", offline)
    monkeypatch.setenv("SYNTHBENCH_DATA", str(tmp_path))
    with pytest.raises(UserError) as err:
        MNIST().load()
    text = str(err.value)
    assert "\n" not in text
    assert "Tried https://a/, got: <urlopen error [Errno -2] Name or service not known>. Provide it" in text
