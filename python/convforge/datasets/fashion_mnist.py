"""Fashion-MNIST (Zalando), read from local IDX files.

Same interface as ``tf.keras.datasets.fashion_mnist.load_data()``, except
that nothing is ever downloaded.  On Debian and Ubuntu the data is one
package away::

    sudo apt-get install dataset-fashion-mnist

which installs the four ``.gz`` files in ``/usr/share/datasets/fashion-mnist``,
searched by default.  Otherwise put the files (see
`convforge.datasets.mnist.FILE_NAMES`, each optionally ``.gz``) in a directory
and pass ``path=`` or set ``$CONVFORGE_DATA``.

Search order
------------
1. ``path`` if given -- that directory only.
2. Otherwise ``$CONVFORGE_DATA`` and ``$CONVFORGE_DATA/fashion-mnist``,
3. then `DEFAULT_DIRS` (``/usr/share/datasets/fashion-mnist``).

The first directory holding all four files is used.
"""

from __future__ import annotations

from .mnist import ENV_VAR, FILE_NAMES, _load_dataset

__all__ = ["CLASS_NAMES", "DEFAULT_DIRS", "FILE_NAMES", "load_data"]

#: Label -> class name, as in the Fashion-MNIST paper and Keras' docs.
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Searched after ``$CONVFORGE_DATA``.  Where Debian's package
#: ``dataset-fashion-mnist`` installs ``train-images-idx3-ubyte.gz``,
#: ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
#: ``t10k-labels-idx1-ubyte.gz``.  Read at each call, so it can be changed.
DEFAULT_DIRS = ("/usr/share/datasets/fashion-mnist",)

_HOW_TO_GET = (
    "on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist "
    f"(installs them in {DEFAULT_DIRS[0]}, searched by default)",
    "or put the four IDX files in a directory and pass load_data(path=DIR), "
    f"or set {ENV_VAR}=DIR (the files may also be in DIR/fashion-mnist)",
)


def load_data(path=None):
    """Load Fashion-MNIST from local IDX files.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Directory holding the four files (each raw or ``.gz``).  When given,
        only this directory is searched.  When omitted, ``$CONVFORGE_DATA``,
        ``$CONVFORGE_DATA/fashion-mnist`` and then `DEFAULT_DIRS` are.

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of numpy.ndarray
        uint8 arrays, like Keras: images ``(N, 28, 28)`` with pixels 0..255,
        labels ``(N,)`` with values 0..9 (see `CLASS_NAMES`).  The official
        files give N = 60000 for training and 10000 for test, 10% of each
        per class; other counts are accepted.

    Raises
    ------
    DatasetNotFoundError
        No searched directory holds all four files.  The message lists each
        directory searched, what was missing there, and how to get the files
        (``sudo apt-get install dataset-fashion-mnist``).  It subclasses both
        `DatasetError` and `FileNotFoundError`.
    DatasetError
        A file is corrupt (see `convforge.datasets.read_idx`) or inconsistent:
        images not uint8 of shape (N, 28, 28), labels not uint8 of shape
        (N,), label count different from image count, or a label above 9.
        The message names the file.

    Examples
    --------
    >>> from convforge.datasets import fashion_mnist
    >>> (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()  # doctest: +SKIP
    >>> x_train.shape, y_train.dtype  # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'))
    >>> fashion_mnist.CLASS_NAMES[y_train[0]]  # doctest: +SKIP
    'Ankle boot'
    """
    return _load_dataset("Fashion-MNIST", path, "fashion-mnist", DEFAULT_DIRS, _HOW_TO_GET)
