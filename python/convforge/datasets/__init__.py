"""Image classification data sets read from local files, Keras style.

>>> from convforge.datasets import fashion_mnist
>>> (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()  # doctest: +SKIP

Nothing is ever downloaded.  Fashion-MNIST is found where Debian's package
``dataset-fashion-mnist`` puts it (``sudo apt-get install
dataset-fashion-mnist``); for MNIST, or files elsewhere, pass ``path=DIR`` or
set ``CONVFORGE_DATA=DIR``.

Errors
------
Every problem with data set files raises `DatasetError`, a `ValueError`
whose message names the file and the reason.  Files that cannot be found
raise its subclass `DatasetNotFoundError`, which is also a
`FileNotFoundError` and lists where it looked and how to get the files.

Contents
--------
fashion_mnist, mnist
    ``load_data(path=None)`` and ``CLASS_NAMES``.
cifar10
    ``load_data(path=None)`` from the binary batch files a user brings (no pickle).
read_idx, write_idx
    The IDX file format (raw or gzip) used by both.
"""

from . import cifar10, fashion_mnist, mnist
from .idx import DatasetError, DatasetNotFoundError, read_idx, write_idx

__all__ = [
    "DatasetError",
    "DatasetNotFoundError",
    "cifar10",
    "fashion_mnist",
    "mnist",
    "read_idx",
    "write_idx",
]


from .. import _unsupported  # noqa: E402

# A Keras name this module lacks says so, and what to use (Keras's other namespaces do too).
__getattr__ = _unsupported.module_getattr(__name__, lambda: globals())
