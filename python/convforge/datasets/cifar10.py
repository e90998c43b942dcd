"""CIFAR-10, read from the binary batch files you bring (never downloaded, never unpickled).

Same result as ``keras.datasets.cifar10.load_data()``: ``(x_train, y_train),
(x_test, y_test)`` with ``x`` uint8 of shape ``(N, 32, 32, 3)``
(channels-last) and ``y`` uint8 of shape ``(N, 1)``. Keras reads the
*python* version of the data set, which is pickled; convforge reads the
*binary* version instead (``cifar-10-binary.tar.gz`` from the CIFAR page,
unpacked), because unpickling a downloaded file can run arbitrary code.

Files
-----
``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin``: each
record is 1 label byte (0-9) followed by 3072 pixel bytes, the 1024 red
values of the 32x32 image row by row, then green, then blue. The standard
files hold 10000 records each; any whole number of records is accepted.

Search order
------------
``path`` if given (that directory, or its ``cifar-10-batches-bin``
subdirectory, the name the archive unpacks to); otherwise
``$CONVFORGE_DATA`` and ``$CONVFORGE_DATA/cifar-10-batches-bin``.
"""

from __future__ import annotations

import os

import numpy as np

from .idx import DatasetError, DatasetNotFoundError
from .mnist import ENV_VAR

__all__ = ["CLASS_NAMES", "FILE_NAMES", "RECORD_BYTES", "load_data"]

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
FILE_NAMES = (*TRAIN_FILES, TEST_FILE)
SUBDIR = "cifar-10-batches-bin"
RECORD_BYTES = 1 + 32 * 32 * 3


def _invalid(path, reason: str) -> DatasetError:
    exc = DatasetError(f"invalid data set file {path}: {reason}")
    exc.path, exc.reason = path, reason
    return exc


def _check_size(path, size: int) -> None:
    if size == 0 or size % RECORD_BYTES:
        raise _invalid(
            path,
            f"its size ({size} bytes) is not a whole number of {RECORD_BYTES}-byte records "
            "(1 label byte + 3072 pixel bytes): is it the CIFAR-10 *binary* version?",
        )


def _file_size(path) -> int:
    """The size of a batch file, checked before anything is read (a damaged file of gigabytes is
    refused from its size alone)."""
    try:
        size = os.stat(path).st_size
    except OSError as err:
        raise _invalid(path, f"cannot be read ({err.strerror or err})") from err
    _check_size(path, size)
    return size


def read_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch file: ``(images (N, 32, 32, 3) uint8, labels (N, 1) uint8)``."""
    _file_size(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise _invalid(path, f"cannot be read ({err.strerror or err})") from err
    _check_size(path, raw.size)  # the file may have changed since
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, :1].copy()
    bad = np.flatnonzero(labels[:, 0] > 9)
    if bad.size:
        i = int(bad[0])
        raise _invalid(path, f"label {int(labels[i, 0])} of record {i} is outside 0..9 ({bad.size} such records)")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _candidates(path):
    if path is not None:
        base = os.fspath(path)
        return [(base, "path"), (os.path.join(base, SUBDIR), "path")]
    env = os.environ.get(ENV_VAR)
    if env:
        return [(env, f"${ENV_VAR}"), (os.path.join(env, SUBDIR), f"${ENV_VAR}")]
    return []


def load_data(path=None):
    """Load CIFAR-10 from its binary batch files.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Directory holding ``data_batch_1.bin`` ... ``data_batch_5.bin`` and
        ``test_batch.bin`` (or holding ``cifar-10-batches-bin/`` with them).

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        uint8 arrays ``(N, 32, 32, 3)`` and ``(N, 1)``, as Keras.

    Raises
    ------
    DatasetNotFoundError
        No searched directory holds all six files; the message lists where it looked.
    DatasetError
        A file is not a CIFAR-10 binary batch (size, labels).
    """
    report = [] if path is not None or os.environ.get(ENV_VAR) else [f"  - ${ENV_VAR}: not set"]
    for directory, origin in _candidates(path):
        if not os.path.isdir(directory):
            report.append(f"  - {directory} ({origin}): not a directory")
            continue
        missing = [name for name in FILE_NAMES if not os.path.isfile(os.path.join(directory, name))]
        if missing:
            report.append(f"  - {directory} ({origin}): missing {', '.join(missing)}")
            continue
        for name in FILE_NAMES:  # every size first: a damaged test batch fails before 150 MB are read
            _file_size(os.path.join(directory, name))
        train = [read_batch(os.path.join(directory, name)) for name in TRAIN_FILES]
        x_test, y_test = read_batch(os.path.join(directory, TEST_FILE))
        x_train = np.concatenate([x for x, _ in train])
        y_train = np.concatenate([y for _, y in train])
        return (x_train, y_train), (x_test, y_test)
    raise DatasetNotFoundError(
        "CIFAR-10 data not found. Looked for the binary batch files "
        f"{', '.join(FILE_NAMES)} in:\n"
        + "\n".join(report)
        + "\nTo get them: download cifar-10-binary.tar.gz (the 'CIFAR-10 binary version') from "
        "https://www.cs.toronto.edu/~kriz/cifar.html, unpack it, and pass load_data(path=DIR) or set "
        f"{ENV_VAR}=DIR. convforge never downloads anything, and does not read the pickled python version."
    )
