"""Image-classification datasets of the Goldilocks-zone papers, as NHWC float32 numpy arrays.

``load_dataset(name, split)`` reads the official files, checks them and normalises the pixels
as the papers' authors did, ``x = (pixels / pixel_max - mean) / std`` per channel:

| name          | source                             | mean                     | std                      | pixel_max |
| ------------- | ---------------------------------- | ------------------------ | ------------------------ | --------- |
| fashion_mnist | IDX ``.gz`` files                  | 0.2860                   | 0.3530                   | 255       |
| mnist         | IDX ``.gz`` files                  | 0.1307                   | 0.3081                   | 255       |
| cifar10       | binary ``.bin`` or python batches  | (0.4914, 0.4822, 0.4465) | (0.2470, 0.2435, 0.2616) | 255       |
| svhn          | ``{train,test}_32x32.mat``         | (0.4377, 0.4438, 0.4728) | (0.1980, 0.2010, 0.1970) | 255       |
| digits        | ``sklearn.datasets.load_digits``   | 0.3051                   | 0.3750                   | 16        |
| gaussian      | generated N(0, 1) images           | (not normalised)         |                          |           |

The ``digits`` constants are the mean and standard deviation of ``images / 16`` over its train
part (mean 0.305107, std 0.375028); ``digits`` has no official split, so the first
``DIGITS_TRAIN_SIZE = 1500`` of its 1,797 images in scikit-learn's order are ``train`` and the
other 297 are ``test``.

Files are looked for, in order, under the ``data_dir`` argument, then under ``$GZONE_DATA_DIR``
(a relative path is relative to the current directory), in this layout::

    fashion_mnist/{train,t10k}-images-idx3-ubyte.gz, {train,t10k}-labels-idx1-ubyte.gz
    mnist/        (same names as fashion_mnist)
    cifar10/cifar-10-batches-bin/data_batch_{1..5}.bin, test_batch.bin   (preferred)
    cifar10/cifar-10-batches-py/data_batch_{1..5}, test_batch
    svhn/train_32x32.mat, test_32x32.mat

and finally with tensorflow-datasets, if it is installed (``pip install "gzone[tfds]"``), which
downloads them. Files with an official name and size are checked against the official checksum
(``KNOWN_CHECKSUMS``; verified digests are cached by path, size and mtime under
``$GZONE_CACHE_DIR``, else ``$XDG_CACHE_HOME/gzone``, else ``~/.cache/gzone``); every file is
checked for structure: headers, sizes, shapes and label ranges.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import json
import os
import pickle
import tempfile
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

SPLITS = ("train", "test")
NUM_CLASSES = 10  # of every file-backed dataset
DIGITS_TRAIN_SIZE = 1500
CIFAR_RECORD_BYTES = 1 + 32 * 32 * 3
CIFAR_OFFICIAL_RECORDS = 10_000  # per official batch file
_IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # uint8 data, 3 and 1 dimensions
_TFDS_NAMES = {"fashion_mnist": "fashion_mnist", "mnist": "mnist", "cifar10": "cifar10",
               "svhn": "svhn_cropped"}


class DatasetSpec(NamedTuple):
    """Image shape (H, W, C) and normalisation constants of a dataset."""

    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pixel_max: float = 255.0


SPECS = {
    "fashion_mnist": DatasetSpec((28, 28, 1), (0.2860,), (0.3530,)),
    "mnist": DatasetSpec((28, 28, 1), (0.1307,), (0.3081,)),
    "cifar10": DatasetSpec((32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "svhn": DatasetSpec((32, 32, 3), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "digits": DatasetSpec((8, 8, 1), (0.3051,), (0.3750,), pixel_max=16.0),
}
DATASETS = (*SPECS, "gaussian")

# Path under the data dir -> (size in bytes, hash algorithm, hex digest) of the official file.
# MNIST / Fashion-MNIST: sha256 as registered by tensorflow-datasets. CIFAR-10 python batches and
# SVHN: the md5 published with them. No per-file digest is published for the CIFAR-10 ``.bin``
# batches (official size 30,730,000 bytes): they are checked by structure only.
KNOWN_CHECKSUMS: dict[str, tuple[int, str, str]] = {
    "mnist/train-images-idx3-ubyte.gz": (
        9912422, "sha256", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "mnist/train-labels-idx1-ubyte.gz": (
        28881, "sha256", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "mnist/t10k-images-idx3-ubyte.gz": (
        1648877, "sha256", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "mnist/t10k-labels-idx1-ubyte.gz": (
        4542, "sha256", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    "fashion_mnist/train-images-idx3-ubyte.gz": (
        26421880, "sha256", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    "fashion_mnist/train-labels-idx1-ubyte.gz": (
        29515, "sha256", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
    "fashion_mnist/t10k-images-idx3-ubyte.gz": (
        4422102, "sha256", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
    "fashion_mnist/t10k-labels-idx1-ubyte.gz": (
        5148, "sha256", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    "cifar10/cifar-10-batches-py/data_batch_1": (31035704, "md5", "c99cafc152244af753f735de768cd75f"),
    "cifar10/cifar-10-batches-py/data_batch_2": (31035320, "md5", "d4bba439e000b95fd0a9bffe97cbabec"),
    "cifar10/cifar-10-batches-py/data_batch_3": (31035999, "md5", "54ebc095f3ab1f0389bbae665268c751"),
    "cifar10/cifar-10-batches-py/data_batch_4": (31035696, "md5", "634d18415352ddfa80567beed471001a"),
    "cifar10/cifar-10-batches-py/data_batch_5": (31035623, "md5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    "cifar10/cifar-10-batches-py/test_batch": (31035526, "md5", "40351d587109b95175f43aff81a1287e"),
    "svhn/train_32x32.mat": (182040794, "md5", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "svhn/test_32x32.mat": (64275384, "md5", "eb5a983be6a315427106f1b164d9cef3"),
}


class DataNotFoundError(FileNotFoundError):
    """No copy of a dataset was found in any of the places searched."""


class DataIntegrityError(ValueError):
    """A dataset file is truncated, corrupt, mislabelled or fails its checksum."""


class PartialDatasetWarning(UserWarning):
    """Dataset files hold fewer records than the official ones."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Images ``x`` (N, H, W, C) float32 and integer labels ``y`` (N,) in ``0..num_classes-1``."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str
    split: str

    def __post_init__(self):
        if self.x.ndim != 4 or self.y.shape != self.x.shape[:1]:
            raise ValueError(f"expected x (N, H, W, C) and y (N,), got {self.x.shape}, {self.y.shape}")

    def __len__(self) -> int:
        return len(self.y)

    def take(self, indices: np.ndarray | Sequence[int] | slice) -> Dataset:
        """The samples at ``indices``, in that order."""
        return dataclasses.replace(self, x=self.x[indices], y=self.y[indices])


# ----------------------------------------------------------------------------- loading


def load_dataset(
    name: str,
    split: str = "train",
    *,
    n: int | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    normalize: bool = True,
    **kwargs,
) -> Dataset:
    """Loads the first ``n`` samples (all if None) of a dataset split, in file order.

    ``normalize=False`` gives raw pixels scaled to [0, 1]. ``seed`` and ``kwargs`` (``shape``,
    ``num_classes``) only apply to ``gaussian``, whose ``n`` defaults to 1000.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {name}; use one of {', '.join(SPLITS)}")
    if n is not None and n < 1:
        raise ValueError(f"n must be a positive number of samples, got {n}")
    if name == "gaussian":
        return gaussian_dataset(split, n=1000 if n is None else n, seed=seed, **kwargs)
    if kwargs:
        raise TypeError(f"{name} takes no keyword arguments {sorted(kwargs)} (only gaussian does)")
    x, y = _digits(split) if name == "digits" else _find_and_read(name, split, data_dir)
    if n is not None:
        if n > len(y):
            raise ValueError(f"n={n} but {name} {split} has only {len(y)} samples")
        x, y = x[:n], y[:n]
    return Dataset(_to_float(x, SPECS[name], normalize), y.astype(np.int32), NUM_CLASSES, name, split)


def gaussian_dataset(
    split: str = "train",
    *,
    n: int = 1000,
    seed: int = 0,
    shape: tuple[int, int, int] = (32, 32, 3),
    num_classes: int = 10,
) -> Dataset:
    """The papers' random dataset: i.i.d. N(0, 1) images with balanced, randomly ordered labels.

    Drawn from ``numpy.random.default_rng([seed, s])`` with ``s`` = 0 for train, 1 for test, so
    the two splits are independent.
    """
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    x = rng.standard_normal((n, *shape), dtype=np.float32)
    y = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
    return Dataset(x, y, num_classes, "gaussian", split)


def _to_float(pixels: np.ndarray, spec: DatasetSpec, normalize: bool) -> np.ndarray:
    x = pixels.astype(np.float32) / np.float32(spec.pixel_max)
    if normalize:
        x -= np.asarray(spec.mean, np.float32)
        x /= np.asarray(spec.std, np.float32)
    return x


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    part = slice(DIGITS_TRAIN_SIZE) if split == "train" else slice(DIGITS_TRAIN_SIZE, None)
    return digits.images[part, :, :, None].astype(np.uint8), digits.target[part]


_Reader = Callable[[list[Path]], tuple[np.ndarray, np.ndarray]]


def _layouts(name: str, split: str) -> list[tuple[_Reader, list[str]]]:
    """(reader, file paths relative to a data dir) of each on-disk format, preferred first."""
    if name in ("fashion_mnist", "mnist"):
        prefix = "train" if split == "train" else "t10k"
        files = [f"{name}/{prefix}-images-idx3-ubyte.gz", f"{name}/{prefix}-labels-idx1-ubyte.gz"]
        return [(_read_idx_pair, files)]
    if name == "cifar10":
        batches = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        return [(_read_cifar_bin, [f"cifar10/cifar-10-batches-bin/{b}.bin" for b in batches]),
                (_read_cifar_py, [f"cifar10/cifar-10-batches-py/{b}" for b in batches])]
    return [(_read_svhn_mat, [f"svhn/{split}_32x32.mat"])]


def _places(data_dir) -> list[tuple[str, Path | None]]:
    """The data dirs to search, in order, labelled for error messages."""
    roots = [("data_dir argument", data_dir), ("$GZONE_DATA_DIR", os.environ.get("GZONE_DATA_DIR"))]
    return [(label, Path(os.path.abspath(root)) if root else None) for label, root in roots]


def _candidates(name: str, split: str, root: Path | None) -> list[tuple[_Reader, list[str], list[Path]]]:
    """(reader, file names under the data dir, their paths) of each format to try in ``root``."""
    if root is None:
        return []
    return [(reader, files, [root / f for f in files]) for reader, files in _layouts(name, split)]


def _find_and_read(name: str, split: str, data_dir) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W, C) and labels from the first place that has the split's files."""
    places = _places(data_dir)
    for _, root in places:
        for reader, files, paths in _candidates(name, split, root):
            if all(p.is_file() for p in paths):
                for path, file in zip(paths, files):
                    _verify_checksum(path, file)
                x, y, caught = _read_files(name, reader, tuple(_file_stamp(p) for p in paths))
                for warning in caught:  # on every load, as if read again
                    warnings.warn(warning.message, warning.category, stacklevel=3)
                return x, y
    try:
        found = _load_tfds(name, split)
    except DataIntegrityError:
        raise
    except Exception as e:  # any tensorflow-datasets failure (e.g. no network) means "not found"
        raise DataNotFoundError(_not_found(name, split, places, f"failed: {e!r}")) from e
    if found is None:
        raise DataNotFoundError(_not_found(name, split, places, "not installed"))
    return found


def _file_stamp(path: Path) -> tuple[str, int, int]:
    """(absolute path, size, mtime_ns): a file's identity for :func:`_read_files`."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=4)
def _read_files(name: str, reader: _Reader, stamps: tuple[tuple[str, int, int], ...]
                ) -> tuple[np.ndarray, np.ndarray, tuple[warnings.WarningMessage, ...]]:
    """``reader``'s read-only (images, labels) of the files ``stamps`` name and its warnings,
    decoded once per process while the files keep their size and mtime (MNIST: 0.25 s)."""
    paths = [Path(path) for path, _, _ in stamps]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, y = reader(paths)
    _check_shape(paths[0], x, SPECS[name].shape)
    for array in (x, y):
        array.flags.writeable = False
    return x, y, tuple(caught)


def _not_found(name: str, split: str, places, tfds_status: str) -> str:
    lines = [f"{name} ({split} split) not found. Looked in:"]
    for label, root in places:
        if root is None:
            lines.append(f"  {label}: not set")
        for _, _, paths in _candidates(name, split, root):
            missing = ", ".join(p.name for p in paths if not p.is_file())
            lines.append(f"  {label}: {paths[0].parent}{os.sep} (missing {missing})")
    lines.append(f"  tensorflow-datasets: {tfds_status}")
    lines.append(
        f"To get the data: pass data_dir=<folder holding {name}/>, or set GZONE_DATA_DIR=<folder>, "
        f'or `pip install "gzone[tfds]"` to download it with tensorflow-datasets.')
    return "\n".join(lines)


def _load_tfds(name: str, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The split from tensorflow-datasets (downloaded on first use); None if not installed."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        return None
    tfds_name = _TFDS_NAMES[name]
    x, y = tfds.as_numpy(tfds.load(
        tfds_name, split=split, batch_size=-1, as_supervised=True, download=True))
    source = f"tensorflow-datasets {tfds_name}/{split}"
    _check_shape(source, x, SPECS[name].shape)
    _check_labels(source, y)
    return x, y


# ----------------------------------------------------------------------------- file readers


def _check_shape(source, x: np.ndarray, shape: tuple[int, int, int]) -> None:
    if x.shape[1:] != shape:
        raise DataIntegrityError(f"{source}: expected images of shape {shape}, got {x.shape[1:]}")


def _check_labels(source, y: np.ndarray, low: int = 0, high: int = NUM_CLASSES - 1) -> None:
    bad = np.flatnonzero((y < low) | (y > high))
    if bad.size:
        raise DataIntegrityError(f"{source}: mislabelled: label {y[bad[0]]} at index {bad[0]} is "
                                 f"outside {low}..{high} ({bad.size} such labels)")


def _gunzip(path: Path) -> bytes:
    compressed = path.read_bytes()
    try:
        return gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error) as e:
        raise DataIntegrityError(f"{path}: corrupt gzip file ({e}); re-download the file") from e


def _parse_idx(path: Path, kind: str) -> np.ndarray:
    """The array in a gzipped IDX ``kind`` ('images' or 'labels') file."""
    raw, magic = _gunzip(path), _IDX_MAGIC[kind]
    found = int.from_bytes(raw[:4], "big")
    if len(raw) >= 4 and found != magic:
        raise DataIntegrityError(f"{path}: bad IDX magic number 0x{found:08x}, expected "
                                 f"0x{magic:08x} for {kind}; not an IDX {kind} file")
    header = 4 + 4 * (magic & 0xFF)
    if len(raw) < header:
        raise DataIntegrityError(f"{path}: truncated: the file ends inside the IDX header "
                                 f"({len(raw)} bytes); re-download the file")
    dims = [int(d) for d in np.frombuffer(raw, ">u4", count=magic & 0xFF, offset=4)]
    size = header + int(np.prod(dims))
    if len(raw) != size:
        what = f"{dims[0]} {kind}" + (f" of {dims[1]}x{dims[2]}" if len(dims) == 3 else "")
        problem = "truncated" if len(raw) < size else "trailing data"
        raise DataIntegrityError(f"{path}: {problem}: header says {what} ({size} bytes) but found "
                                 f"{len(raw)} bytes; re-download the file")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _read_idx_pair(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = paths
    x, y = _parse_idx(images_path, "images"), _parse_idx(labels_path, "labels")
    if len(y) != len(x):
        raise DataIntegrityError(
            f"{labels_path}: mislabelled: {len(y)} labels for {len(x)} images in {images_path.name}")
    _check_labels(labels_path, y)
    return x[..., None], y


def _planes_to_hwc(rows: np.ndarray) -> np.ndarray:
    """CIFAR rows of 3072 bytes (R, G, B planes of 32x32, row-major) -> (N, 32, 32, 3)."""
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _read_cifar_bin_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD_BYTES:
        raise DataIntegrityError(f"{path}: truncated or corrupt: {raw.size} bytes is not a whole "
                                 f"number of {CIFAR_RECORD_BYTES}-byte CIFAR-10 records; "
                                 f"re-download the file")
    records = raw.reshape(-1, CIFAR_RECORD_BYTES)
    _check_labels(path, records[:, 0])
    return _planes_to_hwc(records[:, 1:]), records[:, 0]


_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")})


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10 python batches (dicts of numpy arrays) and refuses any other object."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_py_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        x, y = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    except Exception as e:  # unpickling garbage can raise almost anything
        raise DataIntegrityError(f"{path}: corrupt CIFAR-10 python batch ({e!r}); "
                                 f"re-download the file") from e
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise DataIntegrityError(f"{path}: expected uint8 data of shape (N, 3072), "
                                 f"got {x.dtype} {x.shape}")
    if y.shape != (len(x),):
        raise DataIntegrityError(f"{path}: mislabelled: {y.size} labels for {len(x)} images")
    _check_labels(path, y)
    return _planes_to_hwc(x), y


def _read_cifar_batches(read_file, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    parts = [read_file(p) for p in paths]
    counts = [len(y) for _, y in parts]
    if min(counts) < CIFAR_OFFICIAL_RECORDS:
        listing = ", ".join(f"{p.name}: {c}" for p, c in zip(paths, counts))
        warnings.warn(f"{paths[0].parent}: partial CIFAR-10 copy, {sum(counts)} records "
                      f"({listing}); the official files hold {CIFAR_OFFICIAL_RECORDS} each",
                      PartialDatasetWarning, stacklevel=5)  # points at load_dataset's caller
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def _read_cifar_bin(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    return _read_cifar_batches(_read_cifar_bin_file, paths)


def _read_cifar_py(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    return _read_cifar_batches(_read_cifar_py_file, paths)


def _read_svhn_mat(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """SVHN cropped digits: X (32, 32, 3, N) uint8, y (N, 1) in 1..10 where 10 is the digit 0."""
    from scipy.io import loadmat

    (path,) = paths
    try:
        mat = loadmat(path)
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).ravel()
    except Exception as e:  # scipy raises ValueError, OSError, MatReadError, ...
        raise DataIntegrityError(f"{path}: corrupt .mat file ({e!r}); re-download the file") from e
    if x.dtype != np.uint8 or x.ndim != 4:
        raise DataIntegrityError(f"{path}: expected uint8 X of shape (32, 32, 3, N), "
                                 f"got {x.dtype} {x.shape}")
    if len(y) != x.shape[3]:
        raise DataIntegrityError(f"{path}: mislabelled: {len(y)} labels for {x.shape[3]} images")
    _check_labels(path, y, low=1, high=10)
    return x.transpose(3, 0, 1, 2), y % 10


# ----------------------------------------------------------------------------- checksums


def _verify_checksum(path: Path, key: str) -> None:
    """Checks a file with an official name and size against its official digest."""
    known = KNOWN_CHECKSUMS.get(key)
    if known is None or known[0] != path.stat().st_size:
        return
    _, algorithm, expected = known
    actual = _cached_digest(path, algorithm)
    if actual != expected:
        raise DataIntegrityError(f"{path}: checksum mismatch: expected {algorithm} {expected}, "
                                 f"got {actual}; the file is corrupt, re-download it")


def _cache_dir() -> Path:
    if os.environ.get("GZONE_CACHE_DIR"):
        return Path(os.environ["GZONE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gzone"


def _cached_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, cached by (absolute path, size, mtime_ns) in the user cache dir."""
    stat, cache_file = path.stat(), _cache_dir() / "checksums.json"
    key = f"{algorithm}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache = _read_json(cache_file)
    if key not in cache:
        digest = hashlib.new(algorithm)
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        cache[key] = digest.hexdigest()
        _write_json(cache_file, cache)
    return cache[key]


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _write_json(path: Path, content: dict) -> None:
    """Best effort, atomic: an unwritable cache only costs hashing again next time."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
            json.dump(content, f)
        os.replace(f.name, path)


# ----------------------------------------------------------------------------- subsets


def class_indices(y: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """Indices of each class in ``y``, increasing: ``out[k] = flatnonzero(y == k)``."""
    return [np.flatnonzero(y == k) for k in range(num_classes)]


def class_prior(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Empirical class proportions Q of the labels ``y``."""
    return np.bincount(y, minlength=num_classes) / len(y)


def sample_prior(seed: int | Sequence[int] | np.random.Generator, num_classes: int) -> np.ndarray:
    """A class prior drawn uniformly from the probability simplex, i.e. Dirichlet(1, ..., 1).

    ``seed``: an int, a sequence of non-negative ints (such as a raw ``jax.random.PRNGKey``) or a
    numpy Generator.
    """
    return _rng(seed).dirichlet(np.ones(num_classes))


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, (int, np.integer, np.random.Generator)):
        return np.random.default_rng(seed)
    return np.random.default_rng(np.asarray(seed).tolist())  # also takes jax / numpy arrays


def prior_counts(prior: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """Per-class counts that sum to exactly ``n`` and follow ``prior``: largest-remainder rounding.

    Ties between equal remainders go to the lower class index.
    """
    prior = np.asarray(prior, np.float64)
    if prior.ndim != 1 or (prior < 0).any() or not np.isclose(prior.sum(), 1.0, atol=1e-6):
        raise ValueError(f"prior must be a 1-d vector of non-negative numbers summing to 1, "
                         f"got {prior}")
    exact = prior / prior.sum() * n
    counts = np.floor(exact).astype(np.int64)
    largest_remainders = np.argsort(counts - exact, kind="stable")
    counts[largest_remainders[: n - counts.sum()]] += 1
    return counts


def subset_with_prior(
    ds: Dataset,
    prior: Sequence[float] | np.ndarray,
    n: int,
    *,
    seed: int | Sequence[int] | np.random.Generator,
    indices: list[np.ndarray] | None = None,
) -> Dataset:
    """``n`` samples drawn without replacement, with class counts ``prior_counts(prior, n)``.

    Raises ValueError when a class has fewer samples than its count (no silent capping, which
    would change ``n`` or the prior). The samples keep their order in ``ds``. Pass
    ``indices=class_indices(ds.y, ds.num_classes)`` to reuse it over many draws.
    """
    indices = class_indices(ds.y, ds.num_classes) if indices is None else indices
    return ds.take(_draw(indices, prior_counts(prior, n), seed))


def balanced_subset(
    ds: Dataset,
    n_per_class: int,
    *,
    seed: int | Sequence[int] | np.random.Generator,
    indices: list[np.ndarray] | None = None,
) -> Dataset:
    """``n_per_class`` samples of every class, drawn without replacement, in their order in ``ds``.

    For a total ``n`` use ``subset_with_prior(ds, np.full(K, 1 / K), n, seed=seed)``.
    """
    indices = class_indices(ds.y, ds.num_classes) if indices is None else indices
    return ds.take(_draw(indices, np.full(len(indices), n_per_class), seed))


def _draw(indices: list[np.ndarray], counts: np.ndarray, seed) -> np.ndarray:
    if len(counts) != len(indices):
        raise ValueError(f"got {len(counts)} class counts for {len(indices)} classes")
    for k, (idx, count) in enumerate(zip(indices, counts)):
        if count > len(idx):
            raise ValueError(f"class {k} has {len(idx)} samples, fewer than the {count} requested")
    rng = _rng(seed)
    return np.sort(np.concatenate(
        [rng.choice(idx, count, replace=False) for idx, count in zip(indices, counts)]))
