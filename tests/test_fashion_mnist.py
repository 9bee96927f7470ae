"""Fashion-MNIST from Debian's package: the real files, the flat layout, the fallback order,
train-subset."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from not_flower.app.specs import data_spec
from not_flower.common.config import parse_run_config
from not_flower.task import data as data_mod
from not_flower.task.data import DEBIAN_FASHION_MNIST_DIR, load_dataset, read_idx
from not_flower.task.training import dataset_for
from tests.test_data import N_TEST, N_TRAIN, _assert_round_trip, write_mnist

_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_HAVE_DEBIAN = all((DEBIAN_FASHION_MNIST_DIR / f"{f}.gz").is_file() for f in _FILES)
_SKIP_REASON = (
    f"Debian's Fashion-MNIST is not in {DEBIAN_FASHION_MNIST_DIR}; install it with "
    "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu, 31 MB)"
)


def _flat(tmp_path: Path, gz: bool = True) -> tuple[Path, dict[str, np.ndarray]]:
    """Tiny idx files directly in a folder, as Debian's package lays them out."""
    arrays = write_mnist(tmp_path / "src", "FashionMNIST", gz=gz)
    flat = tmp_path / "flat"
    shutil.copytree(tmp_path / "src" / "FashionMNIST" / "raw", flat)
    return flat, arrays


@pytest.fixture
def no_default_dir(monkeypatch, tmp_path):
    """An empty default data folder, and no download."""
    monkeypatch.setattr(data_mod, "DEFAULT_DATA_DIR", tmp_path / "default")
    monkeypatch.setattr(
        data_mod, "_download", lambda name, root: (_ for _ in ()).throw(RuntimeError("offline"))
    )
    data_mod._load_cached.cache_clear()
    yield
    data_mod._load_cached.cache_clear()


# --------------------------------------------------------------------------- the real files


@pytest.mark.skipif(not _HAVE_DEBIAN, reason=_SKIP_REASON)
def test_debian_fashion_mnist_counts_and_pixels(monkeypatch, tmp_path):
    # the default folder is empty, so data-dir="" must find the package's files
    monkeypatch.setattr(data_mod, "DEFAULT_DATA_DIR", tmp_path / "empty")
    monkeypatch.setattr(data_mod, "_download", lambda name, root: pytest.fail("must not download"))
    ds = load_dataset("fashion-mnist", "")
    assert ds.x_train.shape == (60_000, 1, 28, 28) and ds.x_test.shape == (10_000, 1, 28, 28)
    assert ds.num_classes == 10
    np.testing.assert_array_equal(np.bincount(ds.y_train, minlength=10), [6_000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test, minlength=10), [1_000] * 10)
    for x in (ds.x_train, ds.x_test):
        assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    # exactly the bytes of the files / 255 (not re-scaled or normalised)
    raw = read_idx(DEBIAN_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(np.rint(ds.x_test[:, 0] * 255).astype(np.uint8), raw)
    # and the same data when the folder is named explicitly
    assert (
        load_dataset("fashion-mnist", DEBIAN_FASHION_MNIST_DIR, download=False).y_test.sum()
        == ds.y_test.sum()
    )


@pytest.mark.skipif(not _HAVE_DEBIAN, reason=_SKIP_REASON)
def test_debian_fashion_mnist_matches_torchvisions_reader(tmp_path):
    import torchvision

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in _FILES[2:]:  # the test split is enough to compare the readers
        with gzip.open(DEBIAN_FASHION_MNIST_DIR / f"{f}.gz", "rb") as src:
            (raw / f).write_bytes(src.read())
    for f in _FILES[:2]:
        (raw / f).touch()  # torchvision checks that the train files exist
    tv = torchvision.datasets.FashionMNIST(str(tmp_path), train=False, download=False)
    np.testing.assert_array_equal(
        read_idx(DEBIAN_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz"), tv.data.numpy()
    )
    np.testing.assert_array_equal(
        read_idx(DEBIAN_FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz"), tv.targets.numpy()
    )


# --------------------------------------------------------------------------- layout and fallback


@pytest.mark.parametrize("gz", [True, False])
def test_flat_folder_is_read_without_decompressing(tmp_path, gz):
    flat, arrays = _flat(tmp_path, gz=gz)
    before = sorted(p.name for p in flat.iterdir())
    ds = load_dataset("fashion-mnist", flat, download=False)
    _assert_round_trip(ds, arrays, (1, 28, 28))
    assert sorted(p.name for p in flat.iterdir()) == before  # nothing written next to them


def test_empty_data_dir_falls_back_to_debian_folder(monkeypatch, tmp_path, no_default_dir):
    flat, arrays = _flat(tmp_path)
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST_DIR", flat)
    ds = load_dataset("fashion-mnist", "")
    _assert_round_trip(ds, arrays, (1, 28, 28))


def test_default_folder_comes_before_debian_folder(monkeypatch, tmp_path, no_default_dir):
    flat, _ = _flat(tmp_path)
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST_DIR", flat)
    own = write_mnist(tmp_path / "default", "FashionMNIST")
    ds = load_dataset("fashion-mnist", None)
    np.testing.assert_array_equal(ds.y_train, own["y_train"])
    assert len(ds.y_train) == N_TRAIN and len(ds.y_test) == N_TEST


def test_explicit_data_dir_does_not_fall_back(monkeypatch, tmp_path, no_default_dir):
    flat, _ = _flat(tmp_path)
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST_DIR", flat)
    with pytest.raises(FileNotFoundError, match="not found in data directory"):
        load_dataset("fashion-mnist", tmp_path / "elsewhere", download=False)


def test_missing_fashion_mnist_names_both_ways(monkeypatch, tmp_path, no_default_dir):
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-package")
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion-mnist", "")
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "torchvision.datasets.FashionMNIST" in msg and "data-dir" in msg
    assert str(tmp_path / "no-package") in msg and "offline" in msg  # the download's failure too


def test_bad_idx_header_is_named(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 12)
    with pytest.raises(ValueError, match="not a uint8 idx file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x00\x01")
    with pytest.raises(ValueError, match=r"shape \(5,\).*2 data bytes"):
        read_idx(short)


# --------------------------------------------------------------------------- train-subset


def test_train_subset_is_stratified_fixed_and_keeps_the_test_set():
    full = dataset_for(data_spec(parse_run_config({})))
    cfg = parse_run_config({"train-subset": 500})
    sub = dataset_for(data_spec(cfg))
    assert len(sub.y_train) == 500 and len(sub.y_test) == len(full.y_test)
    share_full = np.bincount(full.y_train, minlength=10) / len(full.y_train)
    share_sub = np.bincount(sub.y_train, minlength=10) / 500
    assert np.abs(share_full - share_sub).max() <= 1 / 500 + 1e-12  # per class within one image
    # the same images for every seed, and every image one of the training set's
    assert np.array_equal(
        dataset_for(data_spec(parse_run_config({"train-subset": 500, "seed": 3}))).x_train,
        sub.x_train,
    )
    flat_full = full.x_train.reshape(len(full.x_train), -1)
    rows = {r.tobytes() for r in flat_full}
    assert all(r.tobytes() in rows for r in sub.x_train.reshape(500, -1))
    assert dataset_for(data_spec(parse_run_config({"train-subset": len(full.y_train)}))) is full


def test_train_subset_too_large_is_named():
    full = dataset_for(data_spec(parse_run_config({})))
    with pytest.raises(ValueError, match=rf"train-subset=99999 exceeds the {len(full.y_train)}"):
        dataset_for(data_spec(parse_run_config({"train-subset": 99999})))


def test_test_subset_is_stratified_fixed_and_keeps_the_training_set():
    full = dataset_for(data_spec(parse_run_config({})))
    cut = dataset_for(data_spec(parse_run_config({"test-subset": 100})))
    assert len(cut.y_test) == 100 and np.array_equal(cut.x_train, full.x_train)
    _, full_counts = np.unique(full.y_test, return_counts=True)
    _, counts = np.unique(cut.y_test, return_counts=True)
    assert np.all(np.abs(counts - full_counts * 100 / len(full.y_test)) < 1)
    again = dataset_for(data_spec(parse_run_config({"test-subset": 100, "seed": 4})))
    assert np.array_equal(again.x_test, cut.x_test)
    both = dataset_for(data_spec(parse_run_config({"test-subset": 100, "train-subset": 500})))
    assert len(both.y_train) == 500 and np.array_equal(both.x_test, cut.x_test)
    with pytest.raises(ValueError, match=rf"test-subset=99999 exceeds the {len(full.y_test)} test"):
        dataset_for(data_spec(parse_run_config({"test-subset": 99999})))
