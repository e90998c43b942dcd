"""convforge.datasets.cifar10 on small binary batch files written here."""

import numpy as np
import pytest

from convforge.datasets import DatasetError, DatasetNotFoundError, cifar10


def write_batches(directory, counts=(3, 2, 1, 2, 1, 4), seed=0):
    rng = np.random.default_rng(seed)
    expected = []
    for name, n in zip(cifar10.FILE_NAMES, counts):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        planes = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)  # R, G, B planes, row by row
        records = np.concatenate([labels[:, None], planes.reshape(n, -1)], axis=1)
        (directory / name).write_bytes(records.tobytes())
        expected.append((planes.transpose(0, 2, 3, 1), labels[:, None]))
    return expected


def test_reads_keras_shapes_and_channel_order(tmp_path):
    expected = write_batches(tmp_path)
    (x_train, y_train), (x_test, y_test) = cifar10.load_data(path=tmp_path)
    assert x_train.shape == (9, 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.shape == (9, 1) and y_test.shape == (4, 1)
    np.testing.assert_array_equal(x_train, np.concatenate([x for x, _ in expected[:5]]))
    np.testing.assert_array_equal(y_train, np.concatenate([y for _, y in expected[:5]]))
    np.testing.assert_array_equal(x_test, expected[5][0])
    # Pixel (row 0, column 1) of the first image: bytes 1, 1025 and 2049 of its record.
    raw = np.frombuffer((tmp_path / "data_batch_1.bin").read_bytes(), np.uint8)
    assert tuple(x_train[0, 0, 1]) == (raw[1 + 1], raw[1 + 1025], raw[1 + 2049])


def test_finds_the_unpacked_archive_directory_and_the_environment(tmp_path, monkeypatch):
    sub = tmp_path / "cifar-10-batches-bin"
    sub.mkdir()
    write_batches(sub)
    assert cifar10.load_data(path=tmp_path)[0][0].shape[0] == 9
    monkeypatch.setenv("CONVFORGE_DATA", str(tmp_path))
    assert cifar10.load_data()[1][0].shape[0] == 4


def test_missing_and_corrupt_files_are_named(tmp_path, monkeypatch):
    monkeypatch.delenv("CONVFORGE_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError, match="CONVFORGE_DATA: not set"):
        cifar10.load_data()
    write_batches(tmp_path)
    (tmp_path / "data_batch_3.bin").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing data_batch_3.bin"):
        cifar10.load_data(path=tmp_path)
    write_batches(tmp_path)
    with open(tmp_path / "test_batch.bin", "ab") as f:
        f.write(b"\0" * 10)
    with pytest.raises(DatasetError, match=r"test_batch.bin: its size \(12302 bytes\) is not a whole number"):
        cifar10.load_data(path=tmp_path)
    write_batches(tmp_path)
    data = bytearray((tmp_path / "data_batch_2.bin").read_bytes())
    data[cifar10.RECORD_BYTES] = 12  # the label of record 1
    (tmp_path / "data_batch_2.bin").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="label 12 of record 1 is outside 0..9"):
        cifar10.load_data(path=tmp_path)


def test_a_file_of_the_wrong_size_is_refused_before_anything_is_read(tmp_path):
    # A damaged (here sparse) test batch of 256 MiB + 1 byte: its size alone says it is not a whole
    # number of records, so load_data must refuse it without reading it, nor the five training
    # batches before it (it read every file whole, then checked the size).
    import tracemalloc

    write_batches(tmp_path)
    with open(tmp_path / "test_batch.bin", "r+b") as f:
        f.truncate(2**28 + 1)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=r"test_batch.bin: its size \(268435457 bytes\) is not a whole number"):
            cifar10.load_data(path=tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes allocated to refuse a file by its size"
