"""Data set loading for not-flower.

Every data set is returned as plain numpy arrays in ``(N, C, H, W)`` layout with
pixel values in ``[0, 1]`` (no mean/std normalisation, so that a backdoor trigger
can be stamped as pixel value ``1.0``).

Supported data sets (see :data:`DATASETS`):

``digits``
    scikit-learn's bundled 8x8 handwritten digits (1797 images, no download
    needed).  A fixed, seed-independent stratified 20 % test split is used.
``mnist``, ``fashion-mnist``
    Read with :class:`torchvision.datasets.MNIST` / ``FashionMNIST`` from
    ``<data_dir>/MNIST/raw`` / ``<data_dir>/FashionMNIST/raw`` (idx files, plain
    or ``.gz``-compressed).  The four idx files directly in ``data_dir`` (a flat
    folder) are read too, without decompressing them to disk.  For
    ``fashion-mnist`` with no ``data_dir``, the default folder is tried first and
    then Debian's package ``dataset-fashion-mnist``
    (:data:`DEBIAN_FASHION_MNIST_DIR`, the original ``.gz`` files), before any
    download.
``cifar10``, ``cifar100``
    Read from the python-pickle batches in ``<data_dir>/cifar-10-batches-py`` /
    ``<data_dir>/cifar-100-python`` (the layout torchvision downloads and
    extracts).  The pickles are read directly, in exactly the format
    torchvision reads, but *without* torchvision's md5 check, so that
    re-packed or truncated copies (and the tiny files the tests write) load.
"""

from __future__ import annotations

import base64
import functools
import gzip
import importlib.util
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from not_flower.common.prestart import NUM_CLASSES

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST_DIR",
    "DEFAULT_DATA_DIR",
    "Dataset",
    "default_data_dir",
    "load_dataset",
]

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100")

#: Where file-based data sets are looked for when no ``data_dir`` is given.
DEFAULT_DATA_DIR = Path("~/.cache/not-flower/data")

#: Where ``apt-get install dataset-fashion-mnist`` (Debian, Ubuntu) puts the four original
#: idx ``.gz`` files; used for ``fashion-mnist`` when no ``data_dir`` is given.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# torchvision class name == the sub-folder torchvision uses under the root.
_MNIST_CLASS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

_CIFAR = {
    # name: (torchvision class, folder, train files, test files, meta file, label key, archive url)
    "cifar10": (
        "CIFAR10",
        "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"),
        ("test_batch",),
        "batches.meta",
        "labels",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "cifar100": (
        "CIFAR100",
        "cifar-100-python",
        ("train",),
        ("test",),
        "meta",
        "fine_labels",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
}


@dataclass(frozen=True, eq=False)
class Dataset:
    """An in-memory image classification data set.

    Attributes
    ----------
    name : str
        One of :data:`DATASETS`.
    x_train, x_test : np.ndarray
        ``float32`` images of shape ``(N, C, H, W)`` with values in ``[0, 1]``.
    y_train, y_test : np.ndarray
        ``int64`` labels of shape ``(N,)`` with values in ``[0, num_classes)``.
    num_classes : int
        Number of classes of the data set (fixed per data set, not inferred).
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    num_classes: int

    def __post_init__(self) -> None:
        for split, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            if x.ndim != 4:
                raise ValueError(f"x_{split} must have shape (N, C, H, W), got shape {x.shape}")
            if y.ndim != 1 or len(y) != len(x):
                raise ValueError(
                    f"y_{split} must have shape ({len(x)},) to match x_{split}, got shape {y.shape}"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"train and test images differ in shape: {self.x_train.shape[1:]} "
                f"vs {self.x_test.shape[1:]}"
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


def default_data_dir() -> Path:
    """Return the directory searched when no ``data_dir`` is given.

    Returns
    -------
    Path
        ``~/.cache/not-flower/data``, user-expanded and resolved.
    """
    return DEFAULT_DATA_DIR.expanduser().resolve()


def _resolve_root(data_dir: str | os.PathLike | None) -> Path:
    if data_dir is None or str(data_dir).strip() == "":
        return default_data_dir()
    return Path(data_dir).expanduser().resolve()


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
) -> Dataset:
    """Load a data set as read-only numpy arrays.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.
    data_dir : str or os.PathLike or None, optional
        Root directory holding the data set files (ignored for ``digits``).
        ``None`` or ``""`` means ``~/.cache/not-flower/data``.
    download : bool, optional
        If the files are missing, try torchvision's download into ``data_dir``
        (fails without internet; the failure is reported in the error).

    Returns
    -------
    Dataset
        The data set.  Results are cached per process, keyed on ``(name,
        resolved data_dir)``; all arrays are read-only so the cached copy
        cannot be modified (use ``arr.copy()`` to get a writable array).

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`DATASETS`, or the files hold labels
        outside ``[0, num_classes)``.
    FileNotFoundError
        If the files are not in ``data_dir`` (and could not be downloaded); the
        message lists the expected layout and how to provide the files.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if name == "digits":
        return _load_cached("digits", None)
    root = _resolve_root(data_dir)
    try:
        return _load_cached(name, str(root))
    except FileNotFoundError as missing:
        no_dir = data_dir is None or str(data_dir).strip() == ""
        if name == "fashion-mnist" and no_dir:
            debian = DEBIAN_FASHION_MNIST_DIR
            if all(_idx_file(debian, f) is not None for f in _MNIST_FILES):
                return _load_cached(name, str(debian))
            missing = FileNotFoundError(
                f"{missing}\n(Debian's package dataset-fashion-mnist is not installed either: "
                f"{debian} does not hold the four idx files.)"
            )
        if not download:
            raise missing from None
        try:
            _download(name, root)
        except Exception as exc:  # noqa: BLE001 - any download failure (offline, ...) is reported
            raise FileNotFoundError(
                f"{missing}\n(automatic download also failed: {type(exc).__name__}: {exc})"
            ) from exc
        return _load_cached(name, str(root))


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, root: str | None) -> Dataset:
    if name == "digits":
        x_train, y_train, x_test, y_test = _load_digits()
    elif name in _MNIST_CLASS:
        x_train, y_train, x_test, y_test = _load_mnist(name, Path(root))
    else:
        x_train, y_train, x_test, y_test = _load_cifar(name, Path(root))
    num_classes = NUM_CLASSES[name]
    for split, y in (("train", y_train), ("test", y_test)):
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(
                f"dataset {name!r} ({root}): {split} labels must be in [0, {num_classes}), "
                f"found range [{y.min()}, {y.max()}]; the files are corrupt or belong to "
                "another data set"
            )
    arrays = []
    for x, y in ((x_train, y_train), (x_test, y_test)):
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.ascontiguousarray(y, dtype=np.int64)
        x.setflags(write=False)
        y.setflags(write=False)
        arrays += [x, y]
    return Dataset(name, *arrays, num_classes=num_classes)


# --------------------------------------------------------------------------- digits


def _load_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits and its stratified 20 % test split (``random_state=0``).

    The file is read as ``sklearn.datasets.load_digits`` reads it, and the split's order
    comes pinned from :mod:`not_flower.task.digits_split`, so that no part of scikit-learn
    is imported: a ClientApp in a deployment starts one process per message, and importing
    scikit-learn would cost each about a second. Both are checked against scikit-learn's
    own functions in ``tests/test_data.py``.
    """
    from not_flower.task.digits_split import N_TEST, ORDER

    with gzip.open(_digits_csv(), mode="rt", encoding="utf-8") as text:
        data = np.loadtxt(text, delimiter=",")
    x = (data[:, :-1].astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = data[:, -1].astype(np.int64)
    order = np.frombuffer(base64.b64decode("".join(ORDER)), dtype="<u2").astype(np.int64)
    train, test = order[:-N_TEST], order[-N_TEST:]
    return x[train], y[train], x[test], y[test]


def _digits_csv() -> Path:
    """scikit-learn's ``datasets/data/digits.csv.gz``, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("dataset 'digits' needs scikit-learn (pip install scikit-learn)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"


# --------------------------------------------------------------------------- MNIST


def _mnist_missing_message(name: str, root: Path, raw: Path, missing: list[str]) -> str:
    cls = _MNIST_CLASS[name]
    expected = "\n".join(f"  {raw / f}   (or {f}.gz)" for f in _MNIST_FILES)
    return (
        f"dataset {name!r} not found in data directory {root}: "
        f"missing {', '.join(missing)} in {raw}.\n"
        f"Expected layout (torchvision's {cls} layout; idx files, plain or .gz):\n{expected}\n"
        f"To provide them, download them on a machine with internet with\n"
        f"  python -c 'import torchvision; torchvision.datasets.{cls}(\"DIR\", download=True)'\n"
        f"copy DIR here and pass data-dir=DIR (run config) / data_dir=DIR, "
        f"or place the files in {raw}."
        + (
            f"\nOr, on Debian or Ubuntu, `apt-get install dataset-fashion-mnist` (31 MB, offline "
            f"from the distribution's mirror) and leave data-dir empty: the files it installs in "
            f"{DEBIAN_FASHION_MNIST_DIR} are then read directly."
            if name == "fashion-mnist"
            else ""
        )
    )


def _idx_file(folder: Path, fname: str) -> Path | None:
    """``folder/fname`` or ``folder/fname.gz``, whichever exists (plain first), else None."""
    for path in (folder / fname, folder / (fname + ".gz")):
        if path.is_file():
            return path
    return None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one idx file (plain or ``.gz``) of unsigned bytes into a numpy array.

    Parameters
    ----------
    path : str or os.PathLike
        An idx file as LeCun's MNIST and Zalando's Fashion-MNIST ship them: a big-endian
        header (magic ``0x0000 08 D``: type ``0x08`` = uint8, ``D`` dimensions), ``D``
        big-endian uint32 sizes, then the data.  ``.gz`` files are decompressed in memory.

    Returns
    -------
    np.ndarray
        ``uint8`` array of the shape the header gives (e.g. ``(60000, 28, 28)``).

    Raises
    ------
    ValueError
        If the header is not that of a uint8 idx file or the data size does not match it.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        payload = f.read()
    if len(payload) < 4 or payload[0] != 0 or payload[1] != 0 or payload[2] != 0x08:
        raise ValueError(
            f"{path} is not a uint8 idx file (header {payload[:4].hex() or 'empty'}; "
            f"expected 000008 followed by the number of dimensions)"
        )
    ndim = payload[3]
    header = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(payload[4:header], dtype=">u4"))
    data = np.frombuffer(payload, dtype=np.uint8, offset=header)
    if len(shape) != ndim or data.size != int(np.prod(shape)):
        raise ValueError(
            f"{path}: header says shape {shape} ({int(np.prod(shape))} bytes) "
            f"but {data.size} data bytes follow"
        )
    return data.reshape(shape)


def _scaled_split(images: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    """uint8 ``(N, H, W)`` images and labels as float32 ``(N, 1, H, W)`` in [0, 1] and int64."""
    x = images.astype(np.float32)
    x /= 255.0
    return [x[:, None, :, :], labels.astype(np.int64)]


def _load_flat_idx(name: str, root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four idx files directly in ``root`` (Debian's layout), read without torchvision."""
    splits = []
    for images_file, labels_file in (_MNIST_FILES[:2], _MNIST_FILES[2:]):
        images = read_idx(_idx_file(root, images_file))
        labels = read_idx(_idx_file(root, labels_file))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"dataset {name!r}: {images_file} ({images.shape}) and {labels_file} "
                f"({labels.shape}) in {root} must be N images and N labels"
            )
        splits += _scaled_split(images, labels)
    return splits[0], splits[1], splits[2], splits[3]


def _load_mnist(name: str, root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import torchvision

    cls_name = _MNIST_CLASS[name]
    raw = root / cls_name / "raw"
    if not raw.is_dir() and all(_idx_file(root, f) is not None for f in _MNIST_FILES):
        return _load_flat_idx(name, root)
    missing = []
    for fname in _MNIST_FILES:
        plain, gz = raw / fname, raw / (fname + ".gz")
        if plain.is_file():
            continue
        if gz.is_file():
            # torchvision reads only the decompressed files; decompress next to the
            # archive exactly as torchvision's own download step would.
            tmp = plain.with_name(plain.name + ".tmp")
            try:
                with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(tmp, plain)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise FileNotFoundError(
                    f"dataset {name!r}: could not decompress {gz} to {plain} ({exc}); "
                    f"decompress it yourself (gunzip -k {gz}) or make {raw} writable"
                ) from exc
            continue
        missing.append(fname)
    if missing:
        raise FileNotFoundError(_mnist_missing_message(name, root, raw, missing))

    cls = getattr(torchvision.datasets, cls_name)
    splits = []
    for train in (True, False):
        try:
            ds = cls(root=str(root), train=train, download=False)
        except (AssertionError, TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(
                f"dataset {name!r}: the idx files in {raw} could not be read "
                f"({type(exc).__name__}: {exc}); "
                f"they must be uint8 idx files (magic 2051 for images, 2049 for labels)"
            ) from exc
        images = ds.data.numpy()
        labels = ds.targets.numpy()
        if len(images) != len(labels):
            split = "train" if train else "t10k"
            raise ValueError(
                f"dataset {name!r}: {split} images ({len(images)}) and labels ({len(labels)}) "
                f"in {raw} differ in count"
            )
        splits += _scaled_split(images, labels)
    return splits[0], splits[1], splits[2], splits[3]


# --------------------------------------------------------------------------- CIFAR


def _cifar_missing_message(name: str, root: Path, missing: list[str]) -> str:
    cls, folder, train_files, test_files, meta, _, url = _CIFAR[name]
    expected = "\n".join(f"  {root / folder / f}" for f in (*train_files, *test_files))
    return (
        f"dataset {name!r} not found in data directory {root}: missing {', '.join(missing)} "
        f"in {root / folder}.\n"
        f"Expected layout (the extracted python version, as torchvision's {cls} uses; "
        f"'{meta}' is optional):\n{expected}\n"
        f"To provide them, download them on a machine with internet with\n"
        f"  python -c 'import torchvision; torchvision.datasets.{cls}(\"DIR\", download=True)'\n"
        f"(or fetch {url} and extract it into DIR), copy DIR here and pass "
        f"data-dir=DIR (run config) / data_dir=DIR."
    )


def _read_cifar_batch(path: Path, label_key: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR python batch: a pickle with ``data`` uint8 (N, 3072) and labels."""
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    if not isinstance(entry, dict):
        raise ValueError(f"dataset {name!r}: {path} is not a CIFAR batch (expected a pickled dict)")

    def get(key: str):
        for k in (key, key.encode()):
            if k in entry:
                return entry[k]
        raise ValueError(
            f"dataset {name!r}: {path} has no {key!r} entry (keys: {sorted(map(str, entry))}); "
            f"expected 'data' and {label_key!r}"
        )

    data = np.asarray(get("data"), dtype=np.uint8)
    labels = np.asarray(get(label_key), dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(
            f"dataset {name!r}: {path} must hold 'data' of shape (N, 3072) and N labels, "
            f"got data {data.shape} and {labels.shape[0]} labels"
        )
    # rows are stored channel-major (R plane, G plane, B plane) -> (N, 3, 32, 32) directly.
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar(name: str, root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    _, folder, train_files, test_files, _, label_key, _ = _CIFAR[name]
    base = root / folder
    missing = [f for f in (*train_files, *test_files) if not (base / f).is_file()]
    if missing:
        message = _cifar_missing_message(name, root, missing)
        archive = root / Path(_CIFAR[name][6]).name
        if archive.is_file():
            message += (
                f"\nNote: the archive {archive} is present but not extracted; extract it with "
                f"`tar -xzf {archive} -C {root}` or load with download enabled "
                "(torchvision extracts it)."
            )
        raise FileNotFoundError(message)
    out = []
    for files in (train_files, test_files):
        batches = [_read_cifar_batch(base / f, label_key, name) for f in files]
        x = np.concatenate([b[0] for b in batches]).astype(np.float32)
        x /= 255.0  # in place: avoids a second full-size float copy
        y = np.concatenate([b[1] for b in batches])
        out += [x, y]
    return out[0], out[1], out[2], out[3]


# --------------------------------------------------------------------------- download


def _download(name: str, root: Path) -> None:
    """Try torchvision's download of ``name`` into ``root`` (raises when offline)."""
    import torchvision

    cls_name = _MNIST_CLASS.get(name) or _CIFAR[name][0]
    cls = getattr(torchvision.datasets, cls_name)
    cls(root=str(root), train=True, download=True)
