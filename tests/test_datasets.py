"""Tests of convforge.datasets: the IDX reader/writer and the MNIST loaders.

Everything runs on small synthetic files in tmp_path, except one test that
reads the real Fashion-MNIST installed by Debian's ``dataset-fashion-mnist``
and is skipped where that package is absent.
"""

import gzip
import os
import struct

import numpy as np
import pytest

from convforge.datasets import (
    DatasetError,
    DatasetNotFoundError,
    fashion_mnist,
    mnist,
    read_idx,
    write_idx,
)

SYSTEM_FASHION_DIR = "/usr/share/datasets/fashion-mnist"

TYPE_CASES = [
    (0x08, np.uint8),
    (0x09, np.int8),
    (0x0B, np.int16),
    (0x0C, np.int32),
    (0x0D, np.float32),
    (0x0E, np.float64),
]


def _random_array(rng, dtype, shape):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        a = rng.standard_normal(shape).astype(dtype) * 1e3
        a.flat[0] = -0.0  # sign bits and byte order both survive
        return a
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    a.flat[0], a.flat[-1] = info.min, info.max
    return a


def _raw_idx(code, dims, payload=b""):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def _put(path, data, gz=False):
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


# --------------------------------------------------------------------------
# IDX round trips
# --------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("code,dtype", TYPE_CASES, ids=[np.dtype(d).name for _, d in TYPE_CASES])
def test_roundtrip_every_type(tmp_path, code, dtype, gz):
    rng = np.random.default_rng(1234 + code)
    for shape in [(7,), (3, 5), (4, 2, 3), (2, 1, 3, 2)]:
        a = _random_array(rng, dtype, shape)
        path = tmp_path / f"a{len(shape)}.idx{'.gz' if gz else ''}"
        write_idx(path, a)
        head = path.read_bytes()
        if gz:
            assert head[:2] == b"\x1f\x8b"
            head = gzip.decompress(head)
        assert head[:4] == bytes([0, 0, code, len(shape)])
        b = read_idx(path)
        assert b.dtype == np.dtype(dtype)
        assert b.dtype.isnative
        assert b.shape == shape
        assert b.flags.c_contiguous and b.flags.writeable
        np.testing.assert_array_equal(b, a)
        if np.dtype(dtype).kind == "f":
            assert np.signbit(b.flat[0])


def test_header_and_payload_are_big_endian(tmp_path):
    path = tmp_path / "x.idx"
    write_idx(path, np.array([[0x0102, -2]], dtype=np.int16))
    assert path.read_bytes() == bytes(
        [0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE]
    )
    # A big-endian input array is written the same and read back native.
    write_idx(path, np.array([[0x0102, -2]], dtype=">i2"))
    assert path.read_bytes()[-4:] == bytes([0x01, 0x02, 0xFF, 0xFE])
    out = read_idx(path)
    assert out.dtype == np.dtype("=i2") and out.tolist() == [[0x0102, -2]]


def test_hand_made_uint8_file(tmp_path):
    path = _put(tmp_path / "labels", _raw_idx(0x08, (4,), bytes([3, 0, 9, 255])))
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.tolist() == [3, 0, 9, 255]


def test_gzip_detected_by_content_not_name(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    gz_named_plain = tmp_path / "images-idx3-ubyte"
    write_idx(tmp_path / "tmp.gz", a)
    os.rename(tmp_path / "tmp.gz", gz_named_plain)
    assert gz_named_plain.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(gz_named_plain), a)

    plain_named_gz = tmp_path / "other.gz"
    plain_named_gz.write_bytes(_raw_idx(0x08, (2, 3, 4), a.tobytes()))
    np.testing.assert_array_equal(read_idx(plain_named_gz), a)


def test_multi_member_gzip_is_read(tmp_path):
    data = _raw_idx(0x08, (6,), bytes(range(6)))
    path = tmp_path / "m.gz"
    path.write_bytes(gzip.compress(data[:5]) + gzip.compress(data[5:]))
    assert read_idx(path).tolist() == list(range(6))


def test_zero_length_dimension_round_trips(tmp_path):
    a = np.zeros((0, 28, 28), dtype=np.uint8)
    for name in ["e.idx", "e.idx.gz"]:
        write_idx(tmp_path / name, a)
        assert read_idx(tmp_path / name).shape == (0, 28, 28)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_empty_array_with_absurd_other_dimensions_is_a_dataset_error(tmp_path, gz):
    # dims (0, 2**32-1, 2**32-1) declare no data, but NumPy refuses to make such a shape: its bare
    # ValueError ("array is too big") named no file and was no DatasetError.
    path = tmp_path / "z.idx"
    data = bytes([0, 0, 0x08, 3]) + np.array([0, 2**32 - 1, 2**32 - 1], ">u4").tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DatasetError, match="empty array whose other dimensions") as info:
        read_idx(path)
    assert info.value.path == str(path)


def test_read_accepts_str_and_pathlike(tmp_path):
    path = tmp_path / "s.idx"
    write_idx(str(path), np.ones(3, np.uint8))
    assert read_idx(str(path)).tolist() == [1, 1, 1]
    assert read_idx(path).tolist() == [1, 1, 1]


# --------------------------------------------------------------------------
# IDX corruption: always DatasetError naming the file and the reason
# --------------------------------------------------------------------------

_GOOD = _raw_idx(0x08, (2, 3), bytes(range(6)))

CORRUPTIONS = {
    "empty file": (b"", "empty file"),
    "bad magic": (b"\x01\x00" + _GOOD[2:], "magic"),
    "bad magic second byte": (b"\x00\x07" + _GOOD[2:], "magic"),
    "bad type code": (b"\x00\x00\x0a\x02" + _GOOD[4:], "type code 0x0A"),
    "zero dimensions": (b"\x00\x00\x08\x00", "dimensions"),
    "too many dimensions": (b"\x00\x00\x08\x40" + b"\x00" * 256, "dimensions"),
    "truncated magic": (b"\x00\x00", "truncated header"),
    "truncated dims": (_GOOD[:9], "truncated header"),
    "truncated data": (_GOOD[:-1], "truncated data"),
    "only header": (_GOOD[:12], "truncated data"),
    "trailing bytes": (_GOOD + b"\x00", "trailing"),
    "absurd dims": (_raw_idx(0x08, (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)), "limit"),
    "absurd float64 dims": (_raw_idx(0x0E, (2**31, 2**31)), "limit"),
}


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_file_raises_dataset_error(tmp_path, case, gz):
    data, reason = CORRUPTIONS[case]
    path = _put(tmp_path / "bad-idx3-ubyte", data, gz=gz)
    with pytest.raises(DatasetError) as info:
        read_idx(path)
    msg = str(info.value)
    assert str(path) in msg
    assert reason in msg
    assert isinstance(info.value, ValueError)
    assert info.value.path == str(path)


def _gz_good(tmp_path):
    path = tmp_path / "g.gz"
    write_idx(path, np.arange(200, dtype=np.uint8).reshape(10, 20))
    return path, bytearray(path.read_bytes())


@pytest.mark.parametrize(
    "damage",
    [
        "not gzip after magic",
        "flipped payload byte",
        "bad crc",
        "cut stream",
        "garbage after member",
    ],
)
def test_bad_gzip_stream_raises_dataset_error(tmp_path, damage):
    path, blob = _gz_good(tmp_path)
    if damage == "not gzip after magic":
        blob = bytearray(b"\x1f\x8b" + b"this is not a gzip stream at all")
    elif damage == "flipped payload byte":
        blob[len(blob) // 2] ^= 0xFF
    elif damage == "bad crc":
        blob[-8] ^= 0xFF  # the CRC32 in the member trailer
    elif damage == "cut stream":
        blob = blob[: len(blob) // 2]
    elif damage == "garbage after member":
        blob += b"garbage!"
    path.write_bytes(bytes(blob))
    with pytest.raises(DatasetError) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_gzip_declaring_large_data_fails_fast_without_allocating(tmp_path):
    # 1000**3 bytes declared (under the limit), none present: the reader
    # must report truncation rather than reserve a gigabyte first.
    path = _put(tmp_path / "big.gz", _raw_idx(0x08, (1000, 1000, 1000)), gz=True)
    with pytest.raises(DatasetError, match="truncated data"):
        read_idx(path)


def test_max_bytes_is_checked_before_reading_data(tmp_path):
    path = _put(tmp_path / "x", _raw_idx(0x0C, (10,), bytes(40)))
    assert read_idx(path, max_bytes=40).shape == (10,)
    with pytest.raises(DatasetError, match="limit of 39 bytes"):
        read_idx(path, max_bytes=39)


@pytest.mark.parametrize(
    "max_bytes, exc, words",
    [("abc", TypeError, "max_bytes must be a number of bytes"), (None, TypeError, "max_bytes"),
     (True, TypeError, "max_bytes"), (-1, ValueError, "max_bytes must be >= 0"),
     (float("nan"), ValueError, "max_bytes must be >= 0")],
)
def test_max_bytes_is_checked(tmp_path, max_bytes, exc, words):
    # A str or None gave Python's "'>' not supported between instances of 'int' and 'str'",
    # True was taken as 1 byte, and -1 blamed the file ("the file is corrupt").
    path = tmp_path / "a.idx"
    write_idx(path, np.arange(10, dtype=np.uint8))
    with pytest.raises(exc, match=words):
        read_idx(path, max_bytes=max_bytes)
    assert read_idx(path, max_bytes=10.0).shape == (10,)


def test_missing_file_is_dataset_not_found_error(tmp_path):
    path = tmp_path / "nope-idx1-ubyte"
    with pytest.raises(DatasetNotFoundError) as info:
        read_idx(path)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, DatasetError)
    assert str(path) in str(info.value)


def test_directory_is_dataset_error(tmp_path):
    with pytest.raises(DatasetError) as info:
        read_idx(tmp_path)
    assert str(tmp_path) in str(info.value)


# --------------------------------------------------------------------------
# write_idx
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint16, np.int64, np.float16, np.bool_, np.complex64])
def test_write_refuses_unsupported_dtype(tmp_path, dtype):
    with pytest.raises(TypeError, match="IDX cannot store"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=dtype))
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_scalar(tmp_path):
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "x", np.uint8(3))


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "a.idx.gz"
    write_idx(path, np.ones((2, 2), np.uint8))
    before = path.read_bytes()

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write_idx(path, np.zeros((5, 5), np.uint8))
    assert path.read_bytes() == before  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["a.idx.gz"]  # temp removed

    monkeypatch.undo()
    write_idx(path, np.zeros((5, 5), np.uint8))
    assert read_idx(path).shape == (5, 5)
    assert [p.name for p in tmp_path.iterdir()] == ["a.idx.gz"]


def test_gzip_output_is_reproducible(tmp_path):
    # No timestamp in the gzip header: same name and data, same bytes.
    a = np.arange(100, dtype=np.float32)
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    write_idx(tmp_path / "1" / "x.gz", a)
    write_idx(tmp_path / "2" / "x.gz", a)
    assert (tmp_path / "1" / "x.gz").read_bytes() == (tmp_path / "2" / "x.gz").read_bytes()


# --------------------------------------------------------------------------
# load_data on synthetic files
# --------------------------------------------------------------------------

NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def make_dataset(
    directory, n_train=50, n_test=20, gz=(False, True, True, False), seed=0, names=NAMES
):
    """Write four small consistent files; return the arrays written."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = (
        rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_train, dtype=np.uint8),
        rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_test, dtype=np.uint8),
    )
    for name, a, z in zip(names, arrays, gz):
        write_idx(directory / (name + (".gz" if z else "")), a)
    return arrays


@pytest.fixture
def no_defaults(monkeypatch, tmp_path):
    """Isolate load_data from the machine: no env var, no system directory."""
    monkeypatch.delenv("CONVFORGE_DATA", raising=False)
    monkeypatch.setattr(fashion_mnist, "DEFAULT_DIRS", (str(tmp_path / "no-system-dir"),))


def _assert_loaded(result, arrays):
    (x_train, y_train), (x_test, y_test) = result
    for got, want in zip((x_train, y_train, x_test, y_test), arrays):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("module", [fashion_mnist, mnist], ids=["fashion_mnist", "mnist"])
def test_load_data_from_path_argument(tmp_path, module, no_defaults):
    arrays = make_dataset(tmp_path / "d")
    _assert_loaded(module.load_data(path=tmp_path / "d"), arrays)
    _assert_loaded(module.load_data(str(tmp_path / "d")), arrays)


@pytest.mark.parametrize("gz", [(False,) * 4, (True,) * 4])
def test_load_data_all_raw_or_all_gz(tmp_path, gz, no_defaults):
    arrays = make_dataset(tmp_path, gz=gz)
    _assert_loaded(fashion_mnist.load_data(tmp_path), arrays)


def test_load_data_accepts_dotted_names(tmp_path, no_defaults):
    dotted = tuple(n.replace("-idx", ".idx") for n in NAMES)
    arrays = make_dataset(tmp_path, names=dotted)
    _assert_loaded(mnist.load_data(tmp_path), arrays)


def test_load_data_prefers_uncompressed_twin(tmp_path, no_defaults):
    arrays = make_dataset(tmp_path, gz=(False,) * 4, seed=1)
    make_dataset(tmp_path, gz=(True,) * 4, seed=2)
    _assert_loaded(mnist.load_data(tmp_path), arrays)


@pytest.mark.parametrize(
    "module,subdir",
    [(fashion_mnist, "fashion-mnist"), (mnist, "mnist")],
    ids=["fashion_mnist", "mnist"],
)
def test_load_data_from_env_var(tmp_path, monkeypatch, module, subdir, no_defaults):
    # The directory itself ...
    arrays = make_dataset(tmp_path / "top", seed=3)
    monkeypatch.setenv("CONVFORGE_DATA", str(tmp_path / "top"))
    _assert_loaded(module.load_data(), arrays)
    # ... or its per-data-set subdirectory.
    arrays = make_dataset(tmp_path / "data" / subdir, seed=4)
    monkeypatch.setenv("CONVFORGE_DATA", str(tmp_path / "data"))
    _assert_loaded(module.load_data(), arrays)


def test_first_complete_directory_wins(tmp_path, monkeypatch, no_defaults):
    # The env dir holds only a training set; its subdirectory the full set.
    make_dataset(tmp_path / "data", seed=5)
    (tmp_path / "data" / "t10k-labels-idx1-ubyte").unlink()
    arrays = make_dataset(tmp_path / "data" / "fashion-mnist", seed=6)
    monkeypatch.setenv("CONVFORGE_DATA", str(tmp_path / "data"))
    _assert_loaded(fashion_mnist.load_data(), arrays)


def test_fashion_falls_back_to_system_dir(tmp_path, monkeypatch):
    arrays = make_dataset(tmp_path / "system", gz=(True,) * 4, seed=7)
    monkeypatch.setattr(fashion_mnist, "DEFAULT_DIRS", (str(tmp_path / "system"),))
    monkeypatch.setenv("CONVFORGE_DATA", str(tmp_path / "empty"))
    _assert_loaded(fashion_mnist.load_data(), arrays)


def test_path_argument_searches_only_there(tmp_path, monkeypatch):
    make_dataset(tmp_path / "env", seed=8)
    monkeypatch.setenv("CONVFORGE_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(fashion_mnist, "DEFAULT_DIRS", (str(tmp_path / "env"),))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        fashion_mnist.load_data(path=tmp_path / "empty")
    msg = str(info.value)
    assert str(tmp_path / "empty") in msg
    assert str(tmp_path / "env") not in msg


def test_fashion_not_found_message(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVFORGE_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(fashion_mnist, "DEFAULT_DIRS", (str(tmp_path / "sys"),))
    with pytest.raises(DatasetNotFoundError) as info:
        fashion_mnist.load_data()
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, DatasetError)
    msg = str(info.value)
    assert "sudo apt-get install dataset-fashion-mnist" in msg
    assert str(tmp_path / "data") in msg
    assert str(tmp_path / "data" / "fashion-mnist") in msg
    assert str(tmp_path / "sys") in msg
    assert "CONVFORGE_DATA" in msg and "path=" in msg
    for name in NAMES:
        assert name in msg


def test_mnist_not_found_message(tmp_path, monkeypatch):
    monkeypatch.delenv("CONVFORGE_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError) as info:
        mnist.load_data()
    msg = str(info.value)
    assert "CONVFORGE_DATA" in msg and "not set" in msg and "path=" in msg
    assert "apt-get" not in msg


def test_not_found_names_missing_files(tmp_path, no_defaults):
    make_dataset(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        mnist.load_data(tmp_path)
    msg = str(info.value)
    assert "missing t10k-images-idx3-ubyte[.gz]" in msg
    assert "train-images-idx3-ubyte[.gz]" not in msg


def test_path_that_is_a_file(tmp_path, no_defaults):
    f = tmp_path / "f"
    f.write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match="not a directory"):
        mnist.load_data(f)


def _rewrite(directory, index, array):
    for suffix in ("", ".gz"):
        p = directory / (NAMES[index] + suffix)
        if p.exists():
            write_idx(p, array)
            return p
    raise AssertionError("fixture file not found")


@pytest.mark.parametrize(
    "index,bad,reason",
    [
        (1, np.zeros(49, np.uint8), "49 labels for the 50 images"),
        (3, np.zeros(21, np.uint8), "21 labels for the 20 images"),
        (1, np.where(np.arange(50) == 10, 10, 0).astype(np.uint8), "label 10 at index 10"),
        (3, np.full(20, 255, np.uint8), "label 255 at index 0"),
        (1, np.zeros(50, np.int32), "labels must be uint8"),
        (1, np.zeros((50, 1), np.uint8), "labels must have shape (N,)"),
        (0, np.zeros((50, 28, 27), np.uint8), "shape (N, 28, 28)"),
        (2, np.zeros((20, 784), np.uint8), "shape (N, 28, 28)"),
        (0, np.zeros((50, 28, 28), np.float32), "images must be uint8"),
    ],
)
def test_inconsistent_files_raise(tmp_path, index, bad, reason, no_defaults):
    make_dataset(tmp_path)
    path = _rewrite(tmp_path, index, bad)
    with pytest.raises(DatasetError) as info:
        fashion_mnist.load_data(tmp_path)
    assert not isinstance(info.value, DatasetNotFoundError)
    msg = str(info.value)
    assert str(path) in msg
    assert reason in msg


def test_corrupt_file_in_load_data_names_it(tmp_path, no_defaults):
    make_dataset(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DatasetError) as info:
        mnist.load_data(tmp_path)
    assert str(path) in str(info.value)


def test_class_names():
    assert fashion_mnist.CLASS_NAMES == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )
    assert mnist.CLASS_NAMES == tuple("0123456789")


# --------------------------------------------------------------------------
# The real Fashion-MNIST, as installed by Debian's dataset-fashion-mnist
# --------------------------------------------------------------------------


@pytest.mark.skipif(
    not os.path.isdir(SYSTEM_FASHION_DIR),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("CONVFORGE_DATA", raising=False)
    for data in (fashion_mnist.load_data(), fashion_mnist.load_data(path=SYSTEM_FASHION_DIR)):
        (x_train, y_train), (x_test, y_test) = data
        assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
        assert y_train.shape == (60000,) and y_test.shape == (10000,)
        for a in (x_train, y_train, x_test, y_test):
            assert a.dtype == np.uint8
        assert np.bincount(y_train, minlength=10).tolist() == [6000] * 10
        assert np.bincount(y_test, minlength=10).tolist() == [1000] * 10
        assert x_train.max() == 255 and x_train.min() == 0
        # The first training image is an ankle boot, as in Keras' docs.
        assert fashion_mnist.CLASS_NAMES[y_train[0]] == "Ankle boot"


@pytest.mark.parametrize(
    "index,dims,reason",
    [
        (0, (1, 2**14, 2**14), "images must have shape (N, 28, 28), got (1, 16384, 16384)"),
        (1, (2**28,), "268435456 labels for the 50 images"),
    ],
)
def test_load_data_refuses_a_wrong_declared_shape_before_reading_the_data(tmp_path, index, dims, reason, no_defaults):
    # A (sparse) file of 256 MiB whose header declares a shape MNIST never has: the loader knows
    # the shape it needs, so it must refuse the header without reading or allocating the data
    # (it read the whole declared array, then found the shape wrong).
    import tracemalloc

    make_dataset(tmp_path, gz=(False, False, False, False))
    path = tmp_path / NAMES[index]
    header = bytes([0, 0, 0x08, len(dims)]) + np.asarray(dims, ">u4").tobytes()
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + int(np.prod(dims)))
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError) as info:
            mnist.load_data(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reason in str(info.value) and str(path) in str(info.value)
    assert peak < 16 * 2**20, f"{peak} bytes allocated to refuse a bad header"
