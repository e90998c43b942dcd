"""The MNIST handwritten digits, read from local IDX files.

Same interface as ``tf.keras.datasets.mnist.load_data()``, except that
nothing is ever downloaded: the user brings the four standard files (see
`FILE_NAMES`, each optionally ``.gz``) and `load_data` finds them.

Search order
------------
1. ``path`` if given -- that directory only.
2. Otherwise ``$CONVFORGE_DATA`` and ``$CONVFORGE_DATA/mnist``.
3. Then `DEFAULT_DIRS`, empty for MNIST: no Debian package ships it.

The first directory holding all four files is used, so a training set is
never paired with a test set from somewhere else.  This module also holds the
file-layout logic shared with `convforge.datasets.fashion_mnist`, which uses
the very same format and file names.
"""

from __future__ import annotations

import os

import numpy as np

from .idx import DatasetError, DatasetNotFoundError, _read_idx, read_idx

__all__ = ["CLASS_NAMES", "DEFAULT_DIRS", "ENV_VAR", "FILE_NAMES", "load_data"]

#: Label -> class name.
CLASS_NAMES = tuple(str(i) for i in range(10))

#: Environment variable naming a directory to search.
ENV_VAR = "CONVFORGE_DATA"

#: Directories searched after ``$CONVFORGE_DATA``; none for MNIST.
DEFAULT_DIRS: tuple = ()

#: The standard file names, in the order train images, train labels, test
#: images, test labels.  Each may also carry a ``.gz`` suffix.
FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Some widely shared copies of MNIST (e.g. on Kaggle) are named
# "train-images.idx3-ubyte"; accepting both spellings spares users a rename.
_ALIASES = {name: (name, name.replace("-idx", ".idx")) for name in FILE_NAMES}

_IMAGE_SHAPE = (28, 28)
_NUM_CLASSES = 10


def _find_file(directory: str, name: str):
    # Uncompressed first: it is read faster, and a user who decompressed the
    # files may have left the .gz beside them.
    for alias in _ALIASES[name]:
        for suffix in ("", ".gz"):
            candidate = os.path.join(directory, alias + suffix)
            if os.path.isfile(candidate):
                return candidate
    return None


def _candidates(path, subdir: str, default_dirs):
    """List ``(directory, origin)`` pairs in search order."""
    if path is not None:
        return [(os.path.expanduser(os.fspath(path)), "path argument")]
    dirs = []
    env = os.environ.get(ENV_VAR, "")
    if env:
        env = os.path.expanduser(env)
        dirs.append((env, f"${ENV_VAR}"))
        dirs.append((os.path.join(env, subdir), f"${ENV_VAR}/{subdir}"))
    for d in default_dirs:
        dirs.append((d, "system default"))
    return dirs


def _locate(display_name: str, path, subdir: str, default_dirs, how_to_get):
    """Return the four file paths from the first complete directory."""
    report = []
    if path is None and not os.environ.get(ENV_VAR):
        report.append(f"  - ${ENV_VAR}: not set")
    for directory, origin in _candidates(path, subdir, default_dirs):
        if not os.path.exists(directory):
            report.append(f"  - {directory} ({origin}): does not exist")
            continue
        if not os.path.isdir(directory):
            report.append(f"  - {directory} ({origin}): not a directory")
            continue
        found = [_find_file(directory, name) for name in FILE_NAMES]
        if all(found):
            return found
        missing = [name + "[.gz]" for name, f in zip(FILE_NAMES, found) if f is None]
        report.append(f"  - {directory} ({origin}): missing {', '.join(missing)}")
    names = ", ".join(FILE_NAMES)
    message = (
        f"{display_name} data not found. Looked for the four IDX files {names} "
        f"(each optionally gzip-compressed, .gz) in:\n"
        + "\n".join(report)
        + "\nTo get them:\n"
        + "\n".join(f"  - {step}" for step in how_to_get)
        + "\nconvforge never downloads anything."
    )
    raise DatasetNotFoundError(message)


def _invalid(path, reason: str) -> DatasetError:
    exc = DatasetError(f"invalid data set file {path}: {reason}")
    exc.path = path
    exc.reason = reason
    return exc


def _check_images(dtype, shape, path) -> None:
    # Called on the header (read_idx's check_header), before the data is read: a file
    # declaring another shape is refused without reading (or allocating) what it declares.
    if dtype != np.uint8:
        raise _invalid(path, f"images must be uint8 (IDX type 0x08), got {dtype}")
    if len(shape) != 3 or tuple(shape[1:]) != _IMAGE_SHAPE:
        raise _invalid(path, f"images must have shape (N, 28, 28), got {tuple(shape)}")


def _check_label_header(dtype, shape, path, count: int, images_path) -> None:
    if dtype != np.uint8:
        raise _invalid(path, f"labels must be uint8 (IDX type 0x08), got {dtype}")
    if len(shape) != 1:
        raise _invalid(path, f"labels must have shape (N,), got {tuple(shape)}")
    if shape[0] != count:
        raise _invalid(
            path, f"{shape[0]} labels for the {count} images of {images_path}"
        )


def _check_labels(y: np.ndarray, path) -> None:
    bad = np.flatnonzero(y >= _NUM_CLASSES)
    if bad.size:
        i = int(bad[0])
        raise _invalid(
            path,
            f"label {int(y[i])} at index {i} is outside 0..{_NUM_CLASSES - 1} "
            f"({bad.size} such labels)",
        )


def _load_dataset(display_name: str, path, subdir: str, default_dirs, how_to_get):
    files = _locate(display_name, path, subdir, default_dirs, how_to_get)
    arrays = []
    for images_path, labels_path in (files[:2], files[2:]):
        x = _read_idx(images_path, check_header=lambda dtype, shape: _check_images(dtype, shape, images_path))
        y = _read_idx(labels_path, check_header=lambda dtype, shape: _check_label_header(
            dtype, shape, labels_path, x.shape[0], images_path))
        _check_labels(y, labels_path)
        arrays.append((x, y))
    return arrays[0], arrays[1]


_HOW_TO_GET = (
    "put the four IDX files in a directory and pass load_data(path=DIR), "
    f"or set {ENV_VAR}=DIR (the files may also be in DIR/mnist)",
)


def load_data(path=None):
    """Load MNIST from local IDX files.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Directory holding the four files of `FILE_NAMES` (each raw or
        ``.gz``).  When given, only this directory is searched.  When
        omitted, ``$CONVFORGE_DATA`` and ``$CONVFORGE_DATA/mnist`` are.

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of numpy.ndarray
        uint8 arrays, like Keras: images ``(N, 28, 28)`` with pixels 0..255,
        labels ``(N,)`` with values 0..9 (see `CLASS_NAMES`).  The official
        files give N = 60000 for training and 10000 for test; other counts
        are accepted.

    Raises
    ------
    DatasetNotFoundError
        No searched directory holds all four files.  The message lists each
        directory searched, what was missing there, and how to get the files.
    DatasetError
        A file is corrupt (see `convforge.datasets.read_idx`) or inconsistent:
        images not uint8 of shape (N, 28, 28), labels not uint8 of shape
        (N,), label count different from image count, or a label above 9.
        The message names the file.

    Examples
    --------
    >>> from convforge.datasets import mnist
    >>> (x_train, y_train), (x_test, y_test) = mnist.load_data("~/data/mnist")  # doctest: +SKIP
    """
    return _load_dataset("MNIST", path, "mnist", DEFAULT_DIRS, _HOW_TO_GET)
