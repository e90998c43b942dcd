"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a tiny header followed by the raw array::

    bytes 0-1   0x00 0x00                    magic
    byte  2     type code                    see ``TYPE_CODES``
    byte  3     ndim                         number of dimensions
    4 * ndim    dims, big-endian uint32      one per dimension
    ...         prod(dims) * itemsize bytes  big-endian, C order

The files are usually distributed gzip-compressed (``*.gz``); `read_idx`
recognises gzip by its magic bytes, so a compressed file read under its
uncompressed name (or the reverse) still works.

Every way a file can be unreadable -- missing, empty, corrupt gzip stream,
truncated header or data, trailing bytes, unknown type code, absurd size --
raises `DatasetError` (a `ValueError`) whose message names the file and the
reason, so callers have exactly one exception type to handle.
"""

from __future__ import annotations

import gzip
import numbers
import os
import sys
import uuid
import zlib

import numpy as np

from .._files import NotARegularFileError, open_regular_file

__all__ = [
    "DatasetError",
    "DatasetNotFoundError",
    "MAX_IDX_BYTES",
    "MAX_NDIM",
    "TYPE_CODES",
    "read_idx",
    "write_idx",
]

#: IDX type code -> big-endian dtype of the stored elements.
TYPE_CODES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# (kind, itemsize) -> type code; byte order is irrelevant on the writing side
# because arrays are converted to big-endian before being written.
_CODE_OF = {(dt.kind, dt.itemsize): code for code, dt in TYPE_CODES.items()}

#: Largest payload `read_idx` accepts by default (16 GiB).  The header of a
#: corrupt or hostile file can declare any size up to 255 dims of 2**32-1;
#: checking it before allocating turns such a file into a clear error instead
#: of a MemoryError or an out-of-memory kill.
MAX_IDX_BYTES = 2**34

#: Largest number of dimensions accepted.  Real IDX files have 1 (labels) or
#: 3 (images); a larger value in byte 3 is far more likely corruption.
MAX_NDIM = 8

_GZIP_MAGIC = b"\x1f\x8b"

# Data is read in pieces of this size so that a gzip stream whose header
# declares a large array but which holds little data never makes us reserve
# the declared size up front (the decompressed length is unknown until the
# stream ends).
_CHUNK = 16 * 2**20


class DatasetError(ValueError):
    """A data set file is missing, unreadable, corrupt or inconsistent.

    The message names the file (or the directories searched) and the reason.
    When raised for a single file, the attributes ``path`` and ``reason`` hold
    the two parts separately; otherwise they are ``None``.
    """

    path = None
    reason = None


# Shown in tracebacks as convforge.datasets.DatasetError, where users import it.
DatasetError.__module__ = "convforge.datasets"


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The data set files are not where they were looked for.

    A subclass of both `DatasetError` (so one ``except DatasetError`` handles
    every data set problem) and `FileNotFoundError` (so code that already
    handles missing files keeps working).  Its message lists every place that
    was searched and how to obtain the files; convforge never downloads.
    """


DatasetNotFoundError.__module__ = "convforge.datasets"


def _error(path, reason: str, cls=DatasetError) -> DatasetError:
    exc = cls(f"cannot read IDX file {path}: {reason}")
    exc.path = path
    exc.reason = reason
    return exc


def _read_header_bytes(f, n: int, path, first: bool) -> bytes:
    data = f.read(n)
    if len(data) != n:
        if first and not data:
            raise _error(path, "empty file")
        raise _error(path, f"truncated header: expected {n} more bytes, got {len(data)}")
    return data


def _parse_header(f, path, max_bytes: int):
    """Read and validate the header.

    Returns ``(dtype, dims, header_len, nbytes)`` where `nbytes` is the
    payload size the header declares.
    """
    head = _read_header_bytes(f, 4, path, first=True)
    if head[0] != 0 or head[1] != 0:
        raise _error(
            path,
            f"bad magic number 0x{head[:4].hex()} (an IDX file starts with two zero bytes); "
            "not an IDX file",
        )
    code, ndim = head[2], head[3]
    if code not in TYPE_CODES:
        known = ", ".join(f"0x{c:02X}" for c in TYPE_CODES)
        raise _error(path, f"unknown data type code 0x{code:02X} (known: {known})")
    if not 1 <= ndim <= MAX_NDIM:
        raise _error(path, f"bad number of dimensions {ndim} (must be 1..{MAX_NDIM})")
    raw_dims = _read_header_bytes(f, 4 * ndim, path, first=False)
    dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
    dtype = TYPE_CODES[code]
    # Python ints cannot overflow, so this product is exact for any header.
    nbytes = dtype.itemsize
    for d in dims:
        nbytes *= d
    # An empty array (a dimension of 0) declares no data, but NumPy still refuses a shape whose
    # other dimensions multiply past its limit: judge the size of the non-zero dimensions too.
    spread = dtype.itemsize
    for d in dims:
        spread *= max(d, 1)
    if spread > max_bytes and nbytes == 0:
        raise _error(
            path,
            f"header declares dims {dims}: an empty array whose other dimensions would hold "
            f"{spread} bytes, more than the limit of {max_bytes} bytes; the file is corrupt",
        )
    if nbytes > max_bytes:
        raise _error(
            path,
            f"header declares dims {dims} of {dtype.itemsize}-byte elements = {nbytes} bytes, "
            f"more than the limit of {max_bytes} bytes; the file is corrupt "
            "(or pass a larger max_bytes)",
        )
    return dtype, dims, 4 + 4 * ndim, nbytes


def _read_payload(f, nbytes: int, path, preallocate: bool) -> np.ndarray:
    """Read exactly ``nbytes`` and check nothing follows; return uint8 array."""
    if preallocate:
        # Size already verified against the file size: read straight into
        # the final buffer, no intermediate copies.
        buf = np.empty(nbytes, dtype=np.uint8)
        view = memoryview(buf)
        got = 0
        while got < nbytes:
            n = f.readinto(view[got : got + _CHUNK])
            if not n:
                break
            got += n
    else:
        ba = bytearray()
        while len(ba) < nbytes:
            piece = f.read(min(_CHUNK, nbytes - len(ba)))
            if not piece:
                break
            ba += piece
        got = len(ba)
        buf = np.frombuffer(ba, dtype=np.uint8)
    if got != nbytes:
        raise _error(path, f"truncated data: expected {nbytes} bytes after the header, got {got}")
    # For gzip this read also reaches the end of the stream, which is where
    # the CRC and length of the member are verified.
    extra = f.read(1)
    if extra:
        raise _error(
            path, f"trailing bytes after the {nbytes} bytes of data declared by the header"
        )
    return buf


def read_idx(path, *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed.

    Parameters
    ----------
    path : str or os.PathLike
        The file.  gzip compression is detected from the content (magic bytes
        ``1f 8b``), not from the name.
    max_bytes : int, optional
        Refuse files whose header declares more data than this many bytes
        (default `MAX_IDX_BYTES`, 16 GiB).  Checked before allocating.

    Returns
    -------
    numpy.ndarray
        A C-contiguous, writable array in native byte order with the shape
        given by the header: uint8 (code 0x08), int8 (0x09), int16 (0x0B),
        int32 (0x0C), float32 (0x0D) or float64 (0x0E).

    Raises
    ------
    DatasetNotFoundError
        The file does not exist.
    DatasetError
        Anything else: unreadable file, empty file, corrupt gzip stream, bad
        magic number, unknown type code, bad number of dimensions, truncated
        header or data, trailing bytes, or a declared size above `max_bytes`.
        The message names `path` and the reason.
    """
    if isinstance(max_bytes, (bool, np.bool_)) or not isinstance(max_bytes, numbers.Real):
        raise TypeError(f"max_bytes must be a number of bytes (an int), got {type(max_bytes).__name__} {max_bytes!r}")
    if not max_bytes >= 0:  # NaN too
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes!r}")
    return _read_idx(path, max_bytes)


def _read_idx(path, max_bytes: int = MAX_IDX_BYTES, check_header=None) -> np.ndarray:
    """`read_idx`, and ``check_header(dtype, dims)`` (native dtype, shape) called once the
    header is read, before the payload is: a loader that knows the shape it needs refuses a
    file declaring another one (a gzip bomb, a huge sparse file) without reading its data."""
    path = os.fspath(path)
    try:
        raw = open_regular_file(path)
    except FileNotFoundError as exc:
        raise _error(path, "no such file", DatasetNotFoundError) from exc
    except NotARegularFileError as exc:
        raise _error(path, f"it is {exc.kind}, not a regular file") from exc
    except OSError as exc:
        raise _error(path, exc.strerror or str(exc)) from exc
    with raw:
        try:
            magic = raw.read(2)
            raw.seek(0)
            if magic == _GZIP_MAGIC:
                with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                    return _read_stream(f, path, max_bytes, None, check_header)
            return _read_stream(raw, path, max_bytes, os.fstat(raw.fileno()).st_size, check_header)
        except DatasetError:
            raise
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            # EOFError: the compressed stream ends before its end marker;
            # zlib.error: corrupt deflate data; BadGzipFile: bad header, CRC
            # or length check, or non-gzip bytes after the last member.
            raise _error(path, f"corrupt or truncated gzip stream ({exc})") from exc
        except OSError as exc:
            raise _error(path, f"read error ({exc})") from exc


def _read_stream(f, path, max_bytes: int, file_size, check_header=None) -> np.ndarray:
    dtype, dims, header_len, nbytes = _parse_header(f, path, max_bytes)
    if check_header is not None:
        check_header(dtype.newbyteorder("="), dims)
    preallocate = False
    if file_size is not None:
        # Uncompressed file: the exact size is known, so a truncated or
        # padded file is reported before anything large is allocated.
        have = file_size - header_len
        if have < nbytes:
            raise _error(
                path, f"truncated data: expected {nbytes} bytes after the header, file has {have}"
            )
        if have > nbytes:
            raise _error(
                path,
                f"{have - nbytes} trailing bytes after the {nbytes} bytes of data "
                "declared by the header",
            )
        preallocate = True
    buf = _read_payload(f, nbytes, path, preallocate)
    arr = buf.view(dtype).reshape(dims)
    if dtype.itemsize > 1 and sys.byteorder == "little":
        # In place: no second copy of a possibly large array.
        arr.byteswap(inplace=True)
    return arr.view(dtype.newbyteorder("="))


def write_idx(path, array) -> None:
    """Write an array as an IDX file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination.  The file is gzip-compressed when the name ends in
        ``.gz``.  The data is first written to a temporary file in the same
        directory, then moved over `path` with `os.replace`, so readers never
        see a half-written file and an existing file is only replaced by a
        complete one.
    array : array_like
        1 to `MAX_NDIM` dimensions, each below 2**32, of dtype uint8, int8,
        int16, int32, float32 or float64 (any byte order).

    Raises
    ------
    TypeError
        The dtype has no IDX type code.
    ValueError
        Wrong number of dimensions or a dimension too large for the header.
    """
    path = os.fspath(path)
    arr = np.asarray(array)
    code = _CODE_OF.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise TypeError(
            f"IDX cannot store dtype {arr.dtype}; use uint8, int8, int16, int32, float32 or float64"
        )
    if not 1 <= arr.ndim <= MAX_NDIM:
        raise ValueError(f"IDX stores arrays of 1 to {MAX_NDIM} dimensions, got {arr.ndim}")
    if any(d > 0xFFFFFFFF for d in arr.shape):
        raise ValueError(f"IDX dimensions must be < 2**32, got shape {arr.shape}")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    data = np.ascontiguousarray(arr, dtype=TYPE_CODES[code])

    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    # os.open with mode 0o666 lets the umask decide the permissions, as for
    # any newly created file (tempfile would force 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "wb") as out:
            if path.endswith(".gz"):
                # mtime=0 makes the output byte-for-byte reproducible; the
                # stored name is the final one without ".gz", not the temp's.
                with gzip.GzipFile(
                    filename=os.path.basename(path), mode="wb", fileobj=out,
                    compresslevel=6, mtime=0,
                ) as gz:
                    gz.write(header)
                    gz.write(memoryview(data.reshape(-1).view(np.uint8)))
            else:
                out.write(header)
                out.write(memoryview(data.reshape(-1).view(np.uint8)))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
