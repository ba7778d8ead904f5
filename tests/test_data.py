"""Tests of gzone.data: on the real files in $GZONE_DATA_DIR, and on small files written here."""

import gzip
import hashlib
import json
import os
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from gzone import data

IDX_IMAGES, IDX_LABELS = 0x00000803, 0x00000801
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)


@pytest.fixture(scope="module", autouse=True)
def _cache_dir(tmp_path_factory):
    """Keeps the checksum cache out of the user's cache dir."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GZONE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def shared(data_dir) -> Path:
    """The shared real-data folder (conftest's ``data_dir``: skips visibly when GZONE_DATA_DIR is
    unset or not a folder, e.g. a clone that does not sit beside ../shared)."""
    return data_dir


@pytest.fixture(scope="module")
def fashion_train(shared) -> data.Dataset:
    return data.load_dataset("fashion_mnist", "train")


# ----------------------------------------------------------------------------- real files


def test_fashion_mnist_real(fashion_train):
    test = data.load_dataset("fashion_mnist", "test")
    assert fashion_train.x.shape == (60_000, 28, 28, 1) and test.x.shape == (10_000, 28, 28, 1)
    assert fashion_train.x.dtype == np.float32 and fashion_train.y.dtype == np.int32
    assert (fashion_train.name, fashion_train.split, fashion_train.num_classes) == (
        "fashion_mnist", "train", 10)
    np.testing.assert_array_equal(np.bincount(fashion_train.y), np.full(10, 6000))
    np.testing.assert_array_equal(fashion_train.y[:10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
    assert abs(fashion_train.x.mean()) < 1e-3 and abs(fashion_train.x.std() - 1) < 1e-3
    assert abs(test.x.mean()) < 0.02 and abs(test.x.std() - 1) < 0.02


def test_mnist_real(shared):
    train, test = (data.load_dataset("mnist", split) for split in data.SPLITS)
    assert train.x.shape == (60_000, 28, 28, 1) and test.x.shape == (10_000, 28, 28, 1)
    np.testing.assert_array_equal(test.y[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    assert abs(train.x.mean()) < 1e-3 and abs(train.x.std() - 1) < 1e-3
    raw = data.load_dataset("mnist", "test", normalize=False)
    assert raw.x.min() == 0 and raw.x.max() == 1


def test_cifar10_partial_real(shared):
    with pytest.warns(data.PartialDatasetWarning, match="partial CIFAR-10 copy, 3805 records"):
        train = data.load_dataset("cifar10", "train")
    with pytest.warns(data.PartialDatasetWarning, match="partial CIFAR-10 copy, 761 records"):
        test = data.load_dataset("cifar10", "test")
    assert train.x.shape == (3805, 32, 32, 3) and test.x.shape == (761, 32, 32, 3)
    np.testing.assert_array_equal(train.y[:10], [6, 9, 9, 4, 1, 1, 2, 7, 8, 3])
    np.testing.assert_array_equal(test.y[:10], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1])
    np.testing.assert_allclose(train.x.mean(axis=(0, 1, 2)), 0, atol=0.05)
    np.testing.assert_allclose(train.x.std(axis=(0, 1, 2)), 1, atol=0.05)


@pytest.mark.filterwarnings("ignore::gzone.data.PartialDatasetWarning")
def test_n_takes_the_first_samples_in_file_order(shared, fashion_train):
    head = data.load_dataset("fashion_mnist", "train", n=100, data_dir=shared)
    np.testing.assert_array_equal(head.x, fashion_train.x[:100])
    np.testing.assert_array_equal(head.y, fashion_train.y[:100])
    cifar = data.load_dataset("cifar10", "train", n=800)
    batch_2 = np.fromfile(shared / "cifar10/cifar-10-batches-bin/data_batch_2.bin", np.uint8)
    assert len(cifar) == 800
    np.testing.assert_array_equal(cifar.y[761:], batch_2.reshape(-1, 3073)[:39, 0])


def test_known_checksums_match_shared_sha256sums(shared):
    listed = dict(line.split()[::-1] for line in (shared / "SHA256SUMS").read_text().splitlines())
    ours = {path: digest for path, (_, algorithm, digest) in data.KNOWN_CHECKSUMS.items()
            if algorithm == "sha256"}
    assert len(ours) == 8 and all(listed[path] == digest for path, digest in ours.items())
    assert all(data.KNOWN_CHECKSUMS[path][0] == (shared / path).stat().st_size for path in ours)


def test_real_checksums_are_verified_and_cached(shared, tmp_path, monkeypatch):
    monkeypatch.setenv("GZONE_CACHE_DIR", str(tmp_path))
    data.load_dataset("mnist", "test", n=1)
    cache = json.loads((tmp_path / "checksums.json").read_text())
    assert sorted(cache.values()) == sorted(data.KNOWN_CHECKSUMS[f"mnist/t10k-{kind}-ubyte.gz"][2]
                                            for kind in ("images-idx3", "labels-idx1"))
    key = next(k for k in cache if "t10k-labels" in k)  # a cached digest is trusted ...
    (tmp_path / "checksums.json").write_text(json.dumps({**cache, key: "0" * 64}))
    with pytest.raises(data.DataIntegrityError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        data.load_dataset("mnist", "test", n=1)


# ----------------------------------------------------------------------------- small IDX files


def _pixels(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _idx(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def _write_idx(folder: Path, prefix: str, x: np.ndarray, y: np.ndarray) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    images = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels = folder / f"{prefix}-labels-idx1-ubyte.gz"
    images.write_bytes(gzip.compress(_idx(x, IDX_IMAGES)))
    labels.write_bytes(gzip.compress(_idx(y, IDX_LABELS)))
    return images, labels


X20, Y20 = _pixels((20, 28, 28)), np.arange(20) % 10


@pytest.mark.parametrize(("name", "mean", "std"),
                         [("mnist", 0.1307, 0.3081), ("fashion_mnist", 0.2860, 0.3530)])
def test_idx_round_trip(tmp_path, name, mean, std):
    _write_idx(tmp_path / name, "t10k", X20, Y20)
    raw = data.load_dataset(name, "test", data_dir=tmp_path, normalize=False)
    np.testing.assert_allclose(raw.x[..., 0] * 255, X20, atol=1e-4)
    np.testing.assert_array_equal(raw.y, Y20)
    normalized = data.load_dataset(name, "test", data_dir=tmp_path)
    np.testing.assert_allclose(normalized.x[..., 0], (X20 / 255 - mean) / std, atol=1e-5)
    np.testing.assert_array_equal(data.load_dataset(name, "test", n=3, data_dir=tmp_path).y, [0, 1, 2])


def test_files_are_decoded_once_until_they_change(tmp_path, monkeypatch):
    """A dataset loaded again (another model of a study) is not decompressed again; a file
    rewritten since (another size or mtime) is read anew; the cached arrays are read-only."""
    _write_idx(tmp_path / "mnist", "t10k", X20, Y20)
    decoded = []
    monkeypatch.setattr(data, "_gunzip", lambda path, f=data._gunzip: decoded.append(path.name) or f(path))
    first = data.load_dataset("mnist", "test", data_dir=tmp_path, n=5)
    again = data.load_dataset("mnist", "test", data_dir=tmp_path)
    assert len(decoded) == 2 and np.array_equal(again.y[:5], first.y)
    again.x[0] = 0  # the Dataset holds its own arrays
    cached = data._read_files("mnist", data._read_idx_pair, tuple(
        data._file_stamp(p) for p in sorted((tmp_path / "mnist").iterdir())))
    assert not cached[0].flags.writeable and cached[0].any()
    labels = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(_idx(Y20[::-1], IDX_LABELS)))
    os.utime(labels, ns=(0, labels.stat().st_mtime_ns + 10**9))  # mtime granularity aside
    np.testing.assert_array_equal(data.load_dataset("mnist", "test", data_dir=tmp_path).y, Y20[::-1])
    assert len(decoded) == 4


def test_idx_truncated(tmp_path):
    images, _ = _write_idx(tmp_path / "mnist", "train", X20, Y20)
    images.write_bytes(gzip.compress(_idx(X20, IDX_IMAGES)[:1234]))
    with pytest.raises(data.DataIntegrityError, match=r"train-images-idx3-ubyte.gz: truncated: header "
                       r"says 20 images of 28x28 \(15696 bytes\) but found 1234 bytes; re-download"):
        data.load_dataset("mnist", data_dir=tmp_path)


@pytest.mark.parametrize("corrupt", [
    lambda gz: gz[: len(gz) // 2],  # cut download
    lambda gz: gz[:-8] + bytes(8),  # bad CRC and size trailer
    lambda gz: gzip.decompress(gz),  # not gzipped at all
])
def test_idx_corrupt_gzip(tmp_path, corrupt):
    _, labels = _write_idx(tmp_path / "mnist", "train", X20, Y20)
    labels.write_bytes(corrupt(labels.read_bytes()))
    with pytest.raises(data.DataIntegrityError,
                       match="train-labels-idx1-ubyte.gz: corrupt gzip file .*; re-download"):
        data.load_dataset("mnist", data_dir=tmp_path)


def test_idx_bad_magic(tmp_path):
    images, labels = _write_idx(tmp_path / "mnist", "train", X20, Y20)
    labels.write_bytes(images.read_bytes())
    with pytest.raises(data.DataIntegrityError, match="train-labels-idx1-ubyte.gz: bad IDX magic "
                       "number 0x00000803, expected 0x00000801 for labels"):
        data.load_dataset("mnist", data_dir=tmp_path)


@pytest.mark.parametrize(("labels", "message"), [
    (np.where(np.arange(20) == 7, 11, Y20), "mislabelled: label 11 at index 7 is outside 0..9"),
    (Y20[:19], "mislabelled: 19 labels for 20 images in train-images-idx3-ubyte.gz"),
])
def test_idx_mislabelled(tmp_path, labels, message):
    _write_idx(tmp_path / "fashion_mnist", "train", X20, labels)
    with pytest.raises(data.DataIntegrityError, match=f"train-labels-idx1-ubyte.gz: {message}"):
        data.load_dataset("fashion_mnist", data_dir=tmp_path)


def test_idx_wrong_image_size(tmp_path):
    _write_idx(tmp_path / "mnist", "train", _pixels((4, 32, 32)), Y20[:4])
    with pytest.raises(data.DataIntegrityError, match=r"expected images of shape \(28, 28, 1\), "
                       r"got \(32, 32, 1\)"):
        data.load_dataset("mnist", data_dir=tmp_path)


def test_checksum_checked_on_official_name_and_size_only(tmp_path, monkeypatch):
    _, labels = _write_idx(tmp_path / "mnist", "t10k", X20, Y20)
    size, digest = labels.stat().st_size, hashlib.sha256(labels.read_bytes()).hexdigest()
    key = "mnist/t10k-labels-idx1-ubyte.gz"
    monkeypatch.setattr(data, "KNOWN_CHECKSUMS", {key: (size, "sha256", digest)})
    assert len(data.load_dataset("mnist", "test", data_dir=tmp_path)) == 20
    monkeypatch.setitem(data.KNOWN_CHECKSUMS, key, (size, "sha256", "0" * 64))
    with pytest.raises(data.DataIntegrityError, match=f"t10k-labels-idx1-ubyte.gz: checksum mismatch: "
                       f"expected sha256 0{{64}}, got {digest}"):
        data.load_dataset("mnist", "test", data_dir=tmp_path)
    monkeypatch.setitem(data.KNOWN_CHECKSUMS, key, (size + 1, "sha256", "0" * 64))  # not official
    assert len(data.load_dataset("mnist", "test", data_dir=tmp_path)) == 20


def test_unwritable_cache_is_silent(tmp_path, monkeypatch):
    _, labels = _write_idx(tmp_path / "data" / "mnist", "t10k", X20, Y20)
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("GZONE_CACHE_DIR", str(tmp_path / "a_file" / "gzone"))
    digest = hashlib.sha256(labels.read_bytes()).hexdigest()
    monkeypatch.setattr(data, "KNOWN_CHECKSUMS", {
        "mnist/t10k-labels-idx1-ubyte.gz": (labels.stat().st_size, "sha256", digest)})
    assert len(data.load_dataset("mnist", "test", data_dir=tmp_path / "data")) == 20
    assert sorted(os.listdir(labels.parent)) == ["t10k-images-idx3-ubyte.gz", labels.name]


# ----------------------------------------------------------------------------- small CIFAR files


def _write_cifar(root: Path, fmt: str, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Batches of 2 + i records (3 for test): labels and rows of R, G, B planes, as bin or py."""
    rng = np.random.default_rng(seed)
    sizes = {**{f"data_batch_{i}": 2 + i for i in range(1, 6)}, "test_batch": 3}
    batches = {name: (rng.integers(0, 10, k).astype(np.uint8), _pixels((k, 3072), seed + k))
               for name, k in sizes.items()}
    folder = root / "cifar10" / f"cifar-10-batches-{fmt}"
    folder.mkdir(parents=True)
    for name, (labels, rows) in batches.items():
        if fmt == "bin":
            (folder / f"{name}.bin").write_bytes(np.column_stack([labels, rows]).tobytes())
        else:
            batch = {b"batch_label": b"tiny", b"labels": labels.tolist(), b"data": rows}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return batches


@pytest.mark.parametrize("fmt", ["bin", "py"])
def test_cifar_round_trip(tmp_path, fmt):
    batches = _write_cifar(tmp_path, fmt)
    with pytest.warns(data.PartialDatasetWarning,
                      match=r"partial CIFAR-10 copy, 25 records \(data_batch_1(.bin)?: 3, "):
        raw = data.load_dataset("cifar10", "train", data_dir=tmp_path, normalize=False)
    labels, rows = (np.concatenate([batches[f"data_batch_{i}"][j] for i in range(1, 6)])
                    for j in (0, 1))
    np.testing.assert_array_equal(raw.y, labels)
    n, r, c, ch = np.indices(raw.x.shape)  # byte ch * 1024 + r * 32 + c of record n
    np.testing.assert_allclose(raw.x * 255, rows[n, ch * 1024 + r * 32 + c], atol=1e-4)
    with pytest.warns(data.PartialDatasetWarning):
        normalized = data.load_dataset("cifar10", "train", data_dir=tmp_path)
    with pytest.warns(data.PartialDatasetWarning, match=r"3 records \(test_batch(.bin)?: 3\)"):
        test = data.load_dataset("cifar10", "test", data_dir=tmp_path)
    np.testing.assert_allclose(normalized.x, (raw.x - CIFAR_MEAN) / CIFAR_STD, atol=1e-5)
    np.testing.assert_array_equal(test.y, batches["test_batch"][0])


@pytest.mark.filterwarnings("ignore::gzone.data.PartialDatasetWarning")
def test_cifar_prefers_bin_then_falls_back_to_py(tmp_path):
    bin_labels = _write_cifar(tmp_path, "bin", seed=0)["test_batch"][0]
    py_labels = _write_cifar(tmp_path, "py", seed=1)["test_batch"][0]
    assert not np.array_equal(bin_labels, py_labels)
    np.testing.assert_array_equal(data.load_dataset("cifar10", "test", data_dir=tmp_path).y, bin_labels)
    (tmp_path / "cifar10/cifar-10-batches-bin/test_batch.bin").unlink()
    np.testing.assert_array_equal(data.load_dataset("cifar10", "test", data_dir=tmp_path).y, py_labels)


class _Exploit:
    def __reduce__(self):
        return os.getpid, ()


@pytest.mark.parametrize(("fmt", "corrupt", "message"), [
    ("bin", lambda b: b[:-5], (r"test_batch.bin: truncated or corrupt: 9214 bytes is not a whole "
                               r"number of 3073-byte CIFAR-10 records")),
    ("bin", lambda b: b[:3073] + b"\x0b" + b[3074:], "test_batch.bin: mislabelled: label 11 at index 1"),
    ("py", lambda b: b[:100], "test_batch: corrupt CIFAR-10 python batch"),
    ("py", lambda b: pickle.dumps({b"data": _Exploit()}), "refusing to unpickle"),
    ("py", lambda b: pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 2]}),
     "test_batch: mislabelled: 2 labels for 3 images"),
    ("py", lambda b: pickle.dumps({b"data": np.zeros((3, 1024), np.uint8), b"labels": [1, 2, 3]}),
     r"expected uint8 data of shape \(N, 3072\)"),
])
def test_cifar_bad_files(tmp_path, fmt, corrupt, message):
    _write_cifar(tmp_path, fmt)
    path = tmp_path / "cifar10" / f"cifar-10-batches-{fmt}" / ("test_batch" + ".bin" * (fmt == "bin"))
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(data.DataIntegrityError, match=message):
        data.load_dataset("cifar10", "test", data_dir=tmp_path)


# ----------------------------------------------------------------------------- small SVHN files


def _write_svhn(root: Path, split: str, x: np.ndarray, y: np.ndarray) -> Path:
    from scipy.io import savemat

    (root / "svhn").mkdir(exist_ok=True)
    savemat(root / "svhn" / f"{split}_32x32.mat", {"X": x, "y": y.reshape(-1, 1)})
    return root / "svhn" / f"{split}_32x32.mat"


def test_svhn_round_trip(tmp_path):
    x = _pixels((32, 32, 3, 4))
    _write_svhn(tmp_path, "test", x, np.array([10, 1, 5, 10], np.uint8))
    raw = data.load_dataset("svhn", "test", data_dir=tmp_path, normalize=False)
    np.testing.assert_array_equal(raw.y, [0, 1, 5, 0])
    np.testing.assert_allclose(raw.x * 255, x.transpose(3, 0, 1, 2), atol=1e-4)
    normalized = data.load_dataset("svhn", "test", data_dir=tmp_path)
    np.testing.assert_allclose(normalized.x, (raw.x - SVHN_MEAN) / SVHN_STD, atol=1e-5)


@pytest.mark.parametrize(("label", "index"), [(11, 2), (0, 2)])
def test_svhn_mislabelled(tmp_path, label, index):
    _write_svhn(tmp_path, "train", _pixels((32, 32, 3, 4)), np.array([1, 2, label, 4], np.uint8))
    with pytest.raises(data.DataIntegrityError, match=f"train_32x32.mat: mislabelled: label {label} "
                       f"at index {index} is outside 1..10"):
        data.load_dataset("svhn", data_dir=tmp_path)


def test_svhn_corrupt(tmp_path):
    path = _write_svhn(tmp_path, "train", _pixels((32, 32, 3, 4)), np.arange(1, 5))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(data.DataIntegrityError, match=r"train_32x32.mat: corrupt .mat file"):
        data.load_dataset("svhn", data_dir=tmp_path)


# ----------------------------------------------------------------------------- where data is found


def test_missing_data_error_lists_places_and_fixes(tmp_path, monkeypatch):
    monkeypatch.delenv("GZONE_DATA_DIR", raising=False)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if not installed
    with pytest.raises(data.DataNotFoundError) as error:
        data.load_dataset("cifar10", data_dir=tmp_path)
    assert isinstance(error.value, FileNotFoundError)
    message = str(error.value)
    for expected in [f"data_dir argument: {tmp_path / 'cifar10' / 'cifar-10-batches-bin'}",
                     f"{tmp_path / 'cifar10' / 'cifar-10-batches-py'}", "data_batch_5.bin",
                     "$GZONE_DATA_DIR: not set", "tensorflow-datasets: not installed",
                     "data_dir=", "GZONE_DATA_DIR=", 'pip install "gzone[tfds]"']:
        assert expected in message, expected


def test_relative_env_dir_and_search_order(tmp_path, monkeypatch):
    _write_idx(tmp_path / "env" / "mnist", "t10k", X20, Y20)
    _write_idx(tmp_path / "arg" / "mnist", "t10k", X20, 9 - Y20)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GZONE_DATA_DIR", "env")
    np.testing.assert_array_equal(data.load_dataset("mnist", "test").y, Y20)
    np.testing.assert_array_equal(data.load_dataset("mnist", "test", data_dir="arg").y, 9 - Y20)


def test_tensorflow_datasets_fallback(tmp_path, monkeypatch):
    calls = []

    def load(name, **kwargs):
        calls.append((name, kwargs))
        return np.full((3, 32, 32, 3), 255, np.uint8), np.array([0, 1, 9])

    monkeypatch.delenv("GZONE_DATA_DIR", raising=False)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets",
                        types.SimpleNamespace(load=load, as_numpy=lambda tree: tree))
    ds = data.load_dataset("svhn", "test", data_dir=tmp_path, normalize=False)
    assert calls == [("svhn_cropped", {"split": "test", "batch_size": -1, "as_supervised": True,
                                       "download": True})]
    np.testing.assert_array_equal(ds.y, [0, 1, 9])
    assert ds.x.shape == (3, 32, 32, 3) and ds.x.min() == 1


def test_tensorflow_datasets_failure_is_not_found(tmp_path, monkeypatch):
    def load(name, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.delenv("GZONE_DATA_DIR", raising=False)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets",
                        types.SimpleNamespace(load=load, as_numpy=lambda tree: tree))
    with pytest.raises(data.DataNotFoundError, match="tensorflow-datasets: failed: .*no network"):
        data.load_dataset("mnist", data_dir=tmp_path)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; known datasets: fashion_mnist, "
                       "mnist, cifar10, svhn, digits, gaussian"):
        data.load_dataset("imagenet")
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        data.load_dataset("mnist", "validation")
    _write_idx(tmp_path / "mnist", "train", X20, Y20)
    with pytest.raises(ValueError, match="n=21 but mnist train has only 20 samples"):
        data.load_dataset("mnist", n=21, data_dir=tmp_path)
    with pytest.raises(ValueError, match="n must be a positive number"):
        data.load_dataset("mnist", n=0, data_dir=tmp_path)
    with pytest.raises(TypeError, match="only gaussian"):
        data.load_dataset("mnist", shape=(28, 28, 1), data_dir=tmp_path)


# ----------------------------------------------------------------------------- built-in datasets


def test_digits():
    from sklearn.datasets import load_digits

    train, test = (data.load_dataset("digits", split) for split in data.SPLITS)
    assert train.x.shape == (1500, 8, 8, 1) and test.x.shape == (297, 8, 8, 1)
    assert train.num_classes == 10 and set(train.y.tolist()) == set(range(10))
    digits = load_digits()
    np.testing.assert_array_equal(test.y, digits.target[1500:])
    pixels = digits.images[:1500] / 16
    np.testing.assert_allclose(data.SPECS["digits"].mean + data.SPECS["digits"].std,
                               (pixels.mean(), pixels.std()), atol=5e-5)
    assert abs(train.x.mean()) < 1e-3 and abs(train.x.std() - 1) < 1e-3


def test_gaussian():
    ds = data.load_dataset("gaussian")
    assert ds.x.shape == (1000, 32, 32, 3) and ds.x.dtype == np.float32 and ds.num_classes == 10
    np.testing.assert_array_equal(np.bincount(ds.y), np.full(10, 100))
    assert abs(ds.x.mean()) < 0.01 and abs(ds.x.std() - 1) < 0.01
    small = data.load_dataset("gaussian", n=202, seed=1, shape=(8, 8, 2), num_classes=4)
    assert small.x.shape == (202, 8, 8, 2) and np.bincount(small.y).tolist() == [51, 51, 50, 50]
    again = data.load_dataset("gaussian", n=202, seed=1, shape=(8, 8, 2), num_classes=4)
    np.testing.assert_array_equal(small.x, again.x)
    np.testing.assert_array_equal(small.y, again.y)
    for other in [{"seed": 2}, {"split": "test"}]:
        args = {"split": "train", "n": 202, "seed": 1, "shape": (8, 8, 2), "num_classes": 4} | other
        assert not np.allclose(data.load_dataset("gaussian", **args).x, small.x)


def test_dataset_take_and_validation():
    ds = data.Dataset(np.arange(5, dtype=np.float32).reshape(5, 1, 1, 1), np.arange(5), 5, "t", "train")
    part = ds.take([4, 1])
    assert len(ds) == 5 and len(part) == 2 and part.y.tolist() == [4, 1] and part.x[0, 0, 0, 0] == 4
    with pytest.raises(ValueError, match="expected x"):
        data.Dataset(np.zeros((5, 2, 2)), np.zeros(5), 2, "t", "train")


# ----------------------------------------------------------------------------- subsets


def _labelled(counts) -> data.Dataset:
    """Shuffled labels with the given class counts; x[i] = i identifies each sample."""
    y = np.random.default_rng(0).permutation(np.repeat(np.arange(len(counts)), counts))
    return data.Dataset(np.arange(len(y), dtype=np.float32).reshape(-1, 1, 1, 1), y, len(counts),
                        "t", "train")


def test_prior_counts_largest_remainder():
    assert data.prior_counts([0.5, 0.25, 0.25], 5).tolist() == [3, 1, 1]
    assert data.prior_counts([1 / 3] * 3, 10).tolist() == [4, 3, 3]
    assert data.prior_counts([0.07, 0.63, 0.3], 10).tolist() == [1, 6, 3]
    for seed in range(20):
        prior, n = data.sample_prior(seed, 7), [1, 13, 1000][seed % 3]
        counts = data.prior_counts(prior, n)
        assert counts.sum() == n and np.all(np.abs(counts - prior * n) < 1)
    for bad in ([0.5, 0.6], [-0.1, 1.1], [[0.5, 0.5]]):
        with pytest.raises(ValueError, match="prior must be"):
            data.prior_counts(bad, 10)


def test_subset_with_prior():
    ds = _labelled([100, 50, 30, 20])
    sub = data.subset_with_prior(ds, [0.1, 0.2, 0.3, 0.4], 50, seed=0)
    assert np.bincount(sub.y, minlength=4).tolist() == [5, 10, 15, 20]
    ids = sub.x.ravel().astype(int)
    assert len(set(ids)) == 50 and np.all(np.diff(ids) > 0)  # no repeats, file order
    np.testing.assert_array_equal(ds.y[ids], sub.y)
    indices = data.class_indices(ds.y, 4)
    same = data.subset_with_prior(ds, [0.1, 0.2, 0.3, 0.4], 50, seed=0, indices=indices)
    other = data.subset_with_prior(ds, [0.1, 0.2, 0.3, 0.4], 50, seed=1, indices=indices)
    np.testing.assert_array_equal(same.x, sub.x)
    assert not np.array_equal(other.x, sub.x)
    with pytest.raises(ValueError, match="class 3 has 20 samples, fewer than the 21 requested"):
        data.subset_with_prior(ds, [0, 0, 0, 1], 21, seed=0)
    with pytest.raises(ValueError, match="3 class counts for 4 classes"):
        data.subset_with_prior(ds, [0.5, 0.25, 0.25], 10, seed=0)


def test_balanced_subset():
    ds = _labelled([100, 50, 30, 20])
    sub = data.balanced_subset(ds, 7, seed=3)
    assert np.bincount(sub.y).tolist() == [7, 7, 7, 7]
    np.testing.assert_array_equal(sub.x, data.balanced_subset(ds, 7, seed=3).x)
    with pytest.raises(ValueError, match="class 3 has 20 samples"):
        data.balanced_subset(ds, 21, seed=0)


def test_priors():
    priors = np.array([data.sample_prior(seed, 5) for seed in range(500)])
    np.testing.assert_allclose(priors.sum(axis=1), 1, atol=1e-12)
    assert priors.min() >= 0
    np.testing.assert_allclose(priors.mean(axis=0), 0.2, atol=0.03)
    # Dirichlet(1, ..., 1): P(Q_k > 1/2) = (1/2)^(K-1) = 1/16
    assert abs((priors > 0.5).mean() - 1 / 16) < 0.02
    np.testing.assert_array_equal(data.sample_prior(3, 5), data.sample_prior(3, 5))
    assert not np.allclose(data.sample_prior(3, 5), data.sample_prior(4, 5))
    raw_key = np.array([0, 42], np.uint32)  # the layout of a raw jax.random.PRNGKey
    np.testing.assert_array_equal(data.sample_prior(raw_key, 5), data.sample_prior([0, 42], 5))
    sub = data.balanced_subset(_labelled([5, 5]), 2, seed=raw_key)
    np.testing.assert_array_equal(sub.x, data.balanced_subset(_labelled([5, 5]), 2, seed=[0, 42]).x)
    assert data.sample_prior(np.random.default_rng(0), 5).shape == (5,)
    np.testing.assert_allclose(data.class_prior(np.array([0, 0, 1, 3]), 4), [0.5, 0.25, 0, 0.25])
    assert [i.tolist() for i in data.class_indices(np.array([2, 0, 2, 1]), 3)] == [[1], [3], [0, 2]]
