"""Tests for not_flower.task.data: digits, and each file data set on tiny files in its own
format."""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from not_flower.task import data as data_mod
from not_flower.task.data import DATASETS, Dataset, load_dataset

# --------------------------------------------------------------------------- helpers

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_digits_split.py"
N_TRAIN, N_TEST = 20, 10


def _images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Known uint8 pixel values covering 0 and 255."""
    img = np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    img.flat[0], img.flat[1] = 0, 255
    return img


def _labels(n: int, num_classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, size=n).astype(np.uint8)


def _write_idx_images(path: Path, images: np.ndarray, gz: bool) -> None:
    n, h, w = images.shape
    payload = struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()
    _write(path, payload, gz)


def _write_idx_labels(path: Path, labels: np.ndarray, gz: bool) -> None:
    payload = struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()
    _write(path, payload, gz)


def _write(path: Path, payload: bytes, gz: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist(root: Path, folder: str, gz: bool = False) -> dict[str, np.ndarray]:
    raw = root / folder / "raw"
    arrays = {
        "x_train": _images(N_TRAIN, (28, 28), 1),
        "y_train": _labels(N_TRAIN, 10, 2),
        "x_test": _images(N_TEST, (28, 28), 3),
        "y_test": _labels(N_TEST, 10, 4),
    }
    _write_idx_images(raw / "train-images-idx3-ubyte", arrays["x_train"], gz)
    _write_idx_labels(raw / "train-labels-idx1-ubyte", arrays["y_train"], gz)
    _write_idx_images(raw / "t10k-images-idx3-ubyte", arrays["x_test"], gz)
    _write_idx_labels(raw / "t10k-labels-idx1-ubyte", arrays["y_test"], gz)
    return arrays


def _write_cifar_batch(
    path: Path, images_chw: np.ndarray, labels: np.ndarray, label_key: str, bytes_keys: bool
) -> None:
    entry = {"data": images_chw.reshape(len(images_chw), -1), label_key: [int(v) for v in labels]}
    if bytes_keys:  # the real files, pickled by python 2, read with encoding="bytes"
        entry = {k.encode(): v for k, v in entry.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(entry, f)


def write_cifar(root: Path, name: str, bytes_keys: bool = False) -> dict[str, np.ndarray]:
    x_train = _images(N_TRAIN, (3, 32, 32), 5)
    x_test = _images(N_TEST, (3, 32, 32), 6)
    if name == "cifar10":
        y_train, y_test = _labels(N_TRAIN, 10, 7), _labels(N_TEST, 10, 8)
        base, key = root / "cifar-10-batches-py", "labels"
        for i, chunk in enumerate(np.array_split(np.arange(N_TRAIN), 5)):
            _write_cifar_batch(
                base / f"data_batch_{i + 1}", x_train[chunk], y_train[chunk], key, bytes_keys
            )
        _write_cifar_batch(base / "test_batch", x_test, y_test, key, bytes_keys)
    else:
        y_train, y_test = _labels(N_TRAIN, 100, 7), _labels(N_TEST, 100, 8)
        y_train[0] = 99  # the top class must round-trip
        base, key = root / "cifar-100-python", "fine_labels"
        _write_cifar_batch(base / "train", x_train, y_train, key, bytes_keys)
        _write_cifar_batch(base / "test", x_test, y_test, key, bytes_keys)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _assert_round_trip(
    ds: Dataset, arrays: dict[str, np.ndarray], shape: tuple[int, int, int]
) -> None:
    assert ds.x_train.shape == (N_TRAIN, *shape)
    assert ds.x_test.shape == (N_TEST, *shape)
    assert ds.y_train.shape == (N_TRAIN,) and ds.y_test.shape == (N_TEST,)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.input_shape == shape
    for split in ("train", "test"):
        expected = arrays[f"x_{split}"].astype(np.float32).reshape(-1, *shape) / 255.0
        np.testing.assert_allclose(getattr(ds, f"x_{split}"), expected, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(
            getattr(ds, f"y_{split}"), arrays[f"y_{split}"].astype(np.int64)
        )
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0


# --------------------------------------------------------------------------- digits


def test_digits_shapes_range_and_split():
    ds = load_dataset("digits")
    assert ds.name == "digits" and ds.num_classes == 10
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.input_shape == (1, 8, 8)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0 and ds.x_test.max() <= 1.0
    # values are k/16
    np.testing.assert_allclose(ds.x_train * 16, np.round(ds.x_train * 16), atol=1e-5)
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))
    # stratified: each class's test share is 20 % of its total, up to rounding
    train_counts = np.bincount(ds.y_train, minlength=10)
    test_counts = np.bincount(ds.y_test, minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * (train_counts + test_counts)) <= 1)


def test_digits_is_the_sklearn_data_and_deterministic():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    raw = load_digits()
    all_x = np.concatenate([ds.x_train, ds.x_test]).reshape(len(raw.target), -1) * 16
    # same multiset of images as sklearn's (sorted rows compare equal)
    a = all_x[np.lexsort(all_x.T)]
    b = raw.data[np.lexsort(raw.data.T)]
    np.testing.assert_allclose(a, b, atol=1e-4)
    # independent of data_dir and of the cache: a fresh load gives identical arrays
    data_mod._load_cached.cache_clear()
    again = load_dataset("digits", "/nonexistent/dir/ignored")
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    np.testing.assert_array_equal(again.y_train, ds.y_train)


def test_digits_split_is_scikit_learns_stratified_split_bitwise():
    """The pinned order (no scikit-learn import at load time) is exactly what
    ``train_test_split(test_size=0.2, stratify=y, random_state=0)`` gives, and the module
    is what scripts/make_digits_split.py writes."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    x = (raw.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = raw.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=0
    )
    data_mod._load_cached.cache_clear()
    ds = load_dataset("digits")
    for ours, theirs in ((ds.x_train, x_train), (ds.y_train, y_train), (ds.x_test, x_test)):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        assert ours.tobytes() == theirs.tobytes()
    assert ds.y_test.tobytes() == y_test.tobytes()
    spec = importlib.util.spec_from_file_location("make_digits_split", SCRIPT)
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    order, n_test = make.split_order()
    assert make.TARGET.read_text() == make.render(order, n_test=n_test)


def test_cached_and_read_only():
    ds = load_dataset("digits")
    assert load_dataset("digits") is ds
    for arr in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0] = 0


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError) as err:
        load_dataset("foo")
    msg = str(err.value)
    assert "'foo'" in msg
    assert "digits, mnist, fashion-mnist, cifar10, cifar100" in msg
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100")


# --------------------------------------------------------------------------- MNIST / Fashion-MNIST


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")]
)
def test_mnist_like_round_trip(tmp_path, name, folder):
    arrays = write_mnist(tmp_path, folder)
    ds = load_dataset(name, tmp_path, download=False)
    assert ds.name == name and ds.num_classes == 10
    _assert_round_trip(ds, arrays, (1, 28, 28))
    assert not ds.x_train.flags.writeable and not ds.y_test.flags.writeable
    assert load_dataset(name, str(tmp_path), download=False) is ds  # cache keyed on resolved dir


def test_mnist_gz_only_files(tmp_path):
    arrays = write_mnist(tmp_path, "MNIST", gz=True)
    assert not (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()
    ds = load_dataset("mnist", tmp_path, download=False)
    _assert_round_trip(ds, arrays, (1, 28, 28))


def test_mnist_files_are_torchvisions_format(tmp_path):
    """Cross-check the test writer against torchvision's own reader."""
    import torchvision

    arrays = write_mnist(tmp_path, "MNIST")
    tv = torchvision.datasets.MNIST(str(tmp_path), train=False, download=False)
    np.testing.assert_array_equal(tv.data.numpy(), arrays["x_test"])


def test_mnist_not_found_message(tmp_path):
    write_mnist(tmp_path, "MNIST")  # the *other* data set is present
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion-mnist", tmp_path, download=False)
    msg = str(err.value)
    assert "'fashion-mnist'" in msg and str(tmp_path) in msg
    assert str(tmp_path / "FashionMNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "torchvision.datasets.FashionMNIST" in msg and "data-dir" in msg


def test_mnist_partial_files_lists_missing(tmp_path):
    write_mnist(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="missing t10k-labels-idx1-ubyte in"):
        load_dataset("mnist", tmp_path, download=False)


# --------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("bytes_keys", [False, True])
@pytest.mark.parametrize(("name", "num_classes"), [("cifar10", 10), ("cifar100", 100)])
def test_cifar_round_trip(tmp_path, name, num_classes, bytes_keys):
    arrays = write_cifar(tmp_path, name, bytes_keys=bytes_keys)
    ds = load_dataset(name, tmp_path, download=False)
    assert ds.name == name and ds.num_classes == num_classes
    _assert_round_trip(ds, arrays, (3, 32, 32))
    # channel-major rows: first 1024 bytes of a row are the red plane
    row = arrays["x_train"][3].reshape(-1)
    np.testing.assert_allclose(ds.x_train[3, 0].reshape(-1), row[:1024] / 255.0, atol=1e-7)
    np.testing.assert_allclose(ds.x_train[3, 2].reshape(-1), row[2048:] / 255.0, atol=1e-7)
    assert not ds.x_test.flags.writeable


def test_cifar_matches_torchvision_reader(tmp_path, monkeypatch):
    """Our pickle reader gives what torchvision's CIFAR10 gives (md5 check disabled)."""
    import torchvision

    write_cifar(tmp_path, "cifar10")
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_load_meta", lambda self: None)
    tv = torchvision.datasets.CIFAR10(str(tmp_path), train=True, download=False)
    ds = load_dataset("cifar10", tmp_path, download=False)
    np.testing.assert_allclose(ds.x_train, tv.data.transpose(0, 3, 1, 2) / 255.0, atol=1e-7)
    np.testing.assert_array_equal(ds.y_train, np.asarray(tv.targets))


@pytest.mark.parametrize(
    ("name", "folder", "cls"),
    [
        ("cifar10", "cifar-10-batches-py", "CIFAR10"),
        ("cifar100", "cifar-100-python", "CIFAR100"),
    ],
)
def test_cifar_not_found_message(tmp_path, name, folder, cls):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset(name, tmp_path, download=False)
    msg = str(err.value)
    assert f"'{name}'" in msg and str(tmp_path) in msg
    assert str(tmp_path / folder) in msg
    assert f"torchvision.datasets.{cls}" in msg and "data-dir" in msg


def test_cifar_bad_labels_rejected(tmp_path):
    arrays = write_cifar(tmp_path, "cifar10")
    base = tmp_path / "cifar-10-batches-py"
    _write_cifar_batch(base / "test_batch", arrays["x_test"], np.full(N_TEST, 42), "labels", False)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        load_dataset("cifar10", tmp_path, download=False)


def test_cifar_wrong_row_size_rejected(tmp_path):
    write_cifar(tmp_path, "cifar100")
    _write_cifar_batch(
        tmp_path / "cifar-100-python" / "test",
        np.zeros((N_TEST, 100), dtype=np.uint8),
        np.zeros(N_TEST),
        "fine_labels",
        False,
    )
    with pytest.raises(ValueError, match=r"\(N, 3072\)"):
        load_dataset("cifar100", tmp_path, download=False)


# --------------------------------------------------------------------------- download fallback


def test_download_failure_is_reported(tmp_path, monkeypatch):
    calls = []

    def offline(name, root):
        calls.append((name, root))
        raise RuntimeError("no network here")

    monkeypatch.setattr(data_mod, "_download", offline)
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10", tmp_path)  # download=True by default
    assert calls == [("cifar10", tmp_path.resolve())]
    msg = str(err.value)
    assert "no network here" in msg and "'cifar10'" in msg and str(tmp_path) in msg


def test_download_success_then_load(tmp_path, monkeypatch):
    written = {}

    def fake_download(name, root):
        written.update(write_mnist(root, "MNIST"))

    monkeypatch.setattr(data_mod, "_download", fake_download)
    ds = load_dataset("mnist", tmp_path, download=True)
    _assert_round_trip(ds, written, (1, 28, 28))


def test_download_false_does_not_download(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "_download", lambda name, root: pytest.fail("must not download"))
    with pytest.raises(FileNotFoundError):
        load_dataset("mnist", tmp_path, download=False)


def test_empty_data_dir_means_default(monkeypatch, tmp_path):
    monkeypatch.setattr(data_mod, "DEFAULT_DATA_DIR", tmp_path / "default")
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar100", "", download=False)
    assert str(tmp_path / "default") in str(err.value)
