"""Model files: ``.npz`` archives with a JSON description, written atomically, read without pickle.

``model.save(path)``
    Architecture, weights, compile settings (optimizer, loss, metrics),
    optimizer state (momenta, moments, step count) and training progress
    (epochs done, convforge's random-generator state, history, callback
    state). Enough for :func:`load_model`, and for
    ``model.fit(..., resume_from=path)`` to continue exactly where training
    stopped.
``model.save_weights(path)``
    Weights, plus the architecture so that loading can check it.
``model.load_weights(path)``, ``convforge.load_model(path)``
    The reverse; ``load_model`` rebuilds the model from the JSON description.

Format (version 1)
------------------
A NumPy ``.npz`` (zip) archive -- the path is used as given, ``.npz`` is
the natural suffix. The entry ``__meta__`` is a uint8 array holding UTF-8
JSON: ``{"format": "convforge", "format_version": 1, "kind": "model" |
"weights", "model": <Sequential.get_config()>, "weights": [{"layer",
"class_name", "name", "key", "shape", "dtype"}], "compile", "optimizer",
"training"}``. Weights are float arrays named ``weights/<layer index>/<weight
name>``; optimizer slots ``optimizer/<n>``; callback arrays
``callbacks/<n>``. Files are read with ``allow_pickle=False``: nothing in a
model file can execute code.

Writing is atomic: the archive goes to a temporary file in the same
directory, is flushed and fsync'ed, then renamed over the target
(``os.replace``), and the directory is fsync'ed. A crash leaves either the
old file or the new one, never a mixture.

Errors
------
Any problem with a file's content -- not a zip, truncated, corrupt,
unknown format version, or weights that do not fit the model -- raises
:class:`ModelFileError` (a ``ValueError``) naming the path and the reason. A
missing file raises ``FileNotFoundError``.

This module is the file format only: it imports nothing of the models. What a
model writes into a file and how a file is put back into a model live in
:mod:`convforge.models.state` (weights, optimizer, callbacks, training
progress) and :mod:`convforge.models.loading` (``load_model``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import secrets
import stat
import struct
import tokenize
import zipfile
import zlib

import numpy as np

from ._files import NotARegularFileError, open_regular_file

__all__ = ["FORMAT_VERSION", "ModelFileError", "load_weights", "new_meta", "read", "register_keras_serializable",
           "save_model", "save_weights", "write", "write_atomic"]

FORMAT = "convforge"
FORMAT_VERSION = 1
_META = "__meta__"


class ModelFileError(ValueError):
    """A model file that cannot be used: corrupt, truncated, not convforge's, or the wrong architecture.

    Attributes
    ----------
    path : str
    reason : str
    """

    def __init__(self, path, reason: str):
        self.path = os.fsdecode(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# --------------------------------------------------------------------------- writing


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable. Not possible on every platform (Windows): best effort.
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _name_max(directory: str) -> int:
    """The longest file name (in bytes) the directory's file system takes."""
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no limit reported
        return 255


def _temporary_prefix(base: str, name_max: int) -> str:
    """``.<base>.``, the start of the temporary names of writers of ``base``.

    A temporary name is ``<prefix><pid>.<8 hex>.tmp``: when ``base`` is so long that the name
    would pass the file-name limit, the prefix keeps the start of ``base`` and a hash of all of
    it, so that a target whose own name fits can always be written (and its writers' leftovers
    still recognised).
    """
    suffix_room = len(".4294967295.0123abcd.tmp")
    prefix = f".{base}."
    if len(os.fsencode(prefix)) + suffix_room <= name_max:
        return prefix
    digest = hashlib.sha256(os.fsencode(base)).hexdigest()[:16]
    keep = base
    while keep and len(os.fsencode(f".{keep}~{digest}.")) + suffix_room > name_max:
        keep = keep[:-1]
    return f".{keep}~{digest}."


def _remove_stale_temporaries(directory: str, prefix: str) -> None:
    """Delete the temporary files of writers that died mid-write (killed, crashed).

    A name carries its writer's process id; a file whose writer is still alive is left alone.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        parts = name[len(prefix) : -len(".tmp")].split(".")
        if len(parts) != 2 or not parts[0].isdigit():
            continue
        pid = int(parts[0])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # that writer is still running
        except ProcessLookupError:
            pass
        except (PermissionError, OSError):
            continue  # someone else's live process
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _save_target(path: str) -> tuple[str, os.stat_result | None]:
    """The file a save at ``path`` writes, and its current status (None if it does not exist yet).

    A symbolic link is followed, so that the file it points to is updated and the link kept
    (as an editor does); anything but a regular file is refused: the save replaces the target
    by renaming a new file over it, which would turn ``/dev/null`` or a FIFO into a plain file.
    """
    target = os.path.realpath(path)
    try:
        status = os.stat(target)
    except FileNotFoundError:
        return target, None
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(status.st_mode)), "not a regular file")
        shown = path if target == os.path.abspath(path) else f"{path} (-> {target})"
        raise ValueError(
            f"cannot save to {shown}: it is {kind}; a model file replaces a regular file or creates a new one"
        )
    return target, status


def write_atomic(path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` at ``path``, atomically (see the module docstring)."""
    write_file_atomic(path, lambda f: np.savez(f, **arrays))


def write_file_atomic(path, write) -> None:
    """Call ``write(f)`` on a binary file that replaces ``path`` atomically once ``write`` returns.

    ``path`` may be a symbolic link (the file it points to is replaced, the link stays); an
    existing file keeps its permission bits (and its owner, where the process may set it).
    """
    path = os.fsdecode(path)  # bytes paths too, as open() takes them
    target, existing = _save_target(path)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory or "."):  # else the error would name the temporary file
        raise FileNotFoundError(errno.ENOENT, f"no directory {directory!r} to write the file in", path)
    prefix = _temporary_prefix(os.path.basename(target), _name_max(directory))
    _remove_stale_temporaries(directory, prefix)
    # OS entropy for the name: convforge's generator must not be disturbed by saving.
    tmp = os.path.join(directory, f"{prefix}{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # A new file gets 0o666 less the umask, as open() gives; a replaced one starts private
    # (no one may open it before it has the old file's bits) and then takes those bits.
    mode = 0o666 if existing is None else 0o600
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    except OSError as err:  # a directory the process may not write to, a read-only file system
        raise _naming(err, path) from err
    try:
        with os.fdopen(fd, "wb") as f:
            if existing is not None:
                _copy_ownership(f.fileno(), existing)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):  # a full disk, a quota, an I/O error
            raise _naming(err, path) from err
        raise
    _fsync_directory(directory)


def _naming(err: OSError, path: str) -> OSError:
    """``err`` (same type and errno) naming the file being saved: the temporary file it may
    name is an implementation detail the caller never asked for."""
    if err.errno is None:
        return type(err)(f"cannot save {path}: {err}")
    return type(err)(err.errno, f"cannot save the file: {err.strerror}", path)


def _copy_ownership(fd: int, existing: os.stat_result) -> None:
    """Give the new file the old one's owner (best effort: only root may) and permission bits."""
    if not hasattr(os, "fchmod"):  # Windows, where permission bits mean little
        return
    if (existing.st_uid, existing.st_gid) != os.fstat(fd)[4:6]:
        with contextlib.suppress(OSError):
            os.fchown(fd, existing.st_uid, existing.st_gid)
    os.fchmod(fd, stat.S_IMODE(existing.st_mode))


def _meta_array(meta: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)


def new_meta(kind: str) -> dict:
    """The format fields of a new description: ``{"format", "format_version", "kind", "convforge_version"}``."""
    from . import __version__

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "convforge_version": __version__}


# File names of Keras's formats, which a convforge .npz must not take: it would look like a Keras
# file that Keras then fails to open. Keras 3's own (.keras, .weights.h5) are written and read by
# models/keras_file.py; the legacy whole-model HDF5 (.h5, .hdf5) and TensorFlow's SavedModel are not.
_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5", ".tf")


def check_file_name(path, what: str = "model file") -> None:
    """Refuse Keras's file names for convforge's ``.npz`` format, with a message saying what to use."""
    name = os.fsdecode(path)
    lowered = name.lower()
    for suffix in _KERAS_SUFFIXES:
        if lowered.endswith(suffix):
            stem = name[: len(name) - len(suffix)]
            if stem.lower().endswith(".weights"):
                stem = stem[: -len(".weights")]
            keras3 = (" (model.save and load_model read and write Keras 3's .keras files; save_weights and "
                      "load_weights its .weights.h5)")
            raise ValueError(
                f"convforge does not write or read its {what} format under Keras's {suffix} name ({name!r}): its own "
                f"format is an .npz archive with a JSON description. Use a name such as {stem + '.npz'!r}"
                + (keras3 if suffix in (".keras", ".h5") else "; Keras's legacy HDF5 and TensorFlow formats are "
                   "not supported") + "."
            )


def write(path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write the description ``meta`` (JSON-serialisable) and ``arrays`` as a model file, atomically."""
    check_file_name(path)
    write_atomic(path, {_META: _meta_array(meta), **arrays})


# --------------------------------------------------------------------------- reading

_READ_ERRORS = (
    # NumPy's .npy header parser tokenizes the header: a cut-off one raises TokenError, which is
    # no ValueError (`except ModelFileError` missed it).
    tokenize.TokenError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    UnicodeDecodeError,
    NotImplementedError,
    RecursionError,
    OverflowError,
)

# The JSON description: history and configs, a few KB in practice; more is not a convforge file.
_META_MAX_BYTES = 64 * 2**20
# An .npy member's header (NumPy writes at most a few hundred bytes; np.load's own cap).
_NPY_HEADER_MAX = 10000
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_shape(value) -> bool:
    return isinstance(value, list) and len(value) <= 32 and all(_is_count(d) for d in value)


def _check_meta(meta, path) -> dict:
    """The description's structure and declared sizes, checked before anything is built or read."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(path, "the '__meta__' entry is not a convforge description")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(path, f"invalid format_version {version!r:.100}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            path,
            f"written by a newer convforge (format version {version}); this version reads up to {FORMAT_VERSION}",
        )
    if meta.get("kind") not in ("model", "weights"):
        raise ModelFileError(path, f"unknown file kind {meta.get('kind')!r:.100}")
    model = meta.get("model")
    weights = meta.get("weights")
    if (
        not isinstance(model, dict)
        or not isinstance(model.get("config"), dict)
        or not isinstance(model["config"].get("layers"), list)
        or not all(isinstance(layer, dict) for layer in model["config"]["layers"])
        or not isinstance(weights, list)
        or not all(
            isinstance(w, dict) and {"index", "name", "key", "shape", "layer", "class_name"} <= set(w) for w in weights
        )
    ):
        raise ModelFileError(path, "malformed '__meta__' description (missing model or weights entries)")
    for layer in model["config"]["layers"]:
        if not isinstance(layer.get("class_name"), str) or not isinstance(layer.get("config", {}), dict):
            raise ModelFileError(path, f"malformed layer entry in the description: {layer!r:.200}")
    for w in weights:
        if not (_is_count(w["index"]) and isinstance(w["name"], str) and isinstance(w["key"], str)) or not _is_shape(
            w["shape"]
        ):
            raise ModelFileError(path, f"malformed weight entry in the description: {w!r:.200}")
        if w.get("dtype", "float32") not in ("float32", "float64"):
            raise ModelFileError(path, f"weight {w['key']!r:.100} has dtype {w.get('dtype')!r:.50}; float32/float64 expected")
    optimizer = meta.get("optimizer")
    if optimizer is not None:
        if (
            not isinstance(optimizer, dict)
            or not isinstance(optimizer.get("slots", []), list)
            or not _is_count(optimizer.get("iterations", 0))
        ):
            raise ModelFileError(path, "malformed optimizer state in the description")
        for slot in optimizer.get("slots", []):
            if not (
                isinstance(slot, dict)
                and all(isinstance(slot.get(k), str) for k in ("variable", "slot", "key"))
                and _is_shape(slot.get("shape"))
            ):
                raise ModelFileError(path, f"malformed optimizer slot in the description: {slot!r:.200}")
    training = meta.get("training")
    if training is not None:
        history = training.get("history", {}) if isinstance(training, dict) else None
        callbacks = training.get("callbacks", []) if isinstance(training, dict) else None
        if (
            not isinstance(training, dict)
            or not _is_count(training.get("epoch", 0))
            or not isinstance(history, dict)
            or not all(isinstance(k, str) and isinstance(v, list) for k, v in history.items())
            or not isinstance(training.get("history_epochs", []), list)
            or not isinstance(training.get("history_skipped", []), list)
            or not all(_is_count(n) for n in training.get("history_skipped", []))
            or not isinstance(callbacks, list)
            or not all(
                isinstance(c, dict)
                and isinstance(c.get("arrays", {}), dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in c.get("arrays", {}).items())
                for c in callbacks
            )
        ):
            raise ModelFileError(path, "malformed training state in the description")
    return meta


def _listed_arrays(meta) -> dict[str, tuple | None]:
    """Every array the description refers to: key -> declared shape (None: not declared)."""
    listed: dict[str, tuple | None] = {w["key"]: tuple(w["shape"]) for w in meta["weights"]}
    for slot in (meta.get("optimizer") or {}).get("slots", []):
        listed[slot["key"]] = tuple(slot["shape"])
    for cb in (meta.get("training") or {}).get("callbacks", []):
        for key in cb.get("arrays", {}).values():
            listed.setdefault(key, None)
    return listed


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path, key: str, shape, dtypes) -> np.ndarray:
    """One ``.npy`` member, its header checked against the description before its data is read.

    Members must be stored uncompressed (as np.savez writes them): what is read is then no larger
    than the file, whatever the headers claim.
    """
    if info.compress_type != zipfile.ZIP_STORED:
        raise ModelFileError(path, f"array {key!r:.100} is compressed; model files hold uncompressed arrays (np.savez)")
    if info.flag_bits & 0x1:  # zipfile would raise RuntimeError("... password required") on open
        raise ModelFileError(path, f"array {key!r:.100} is encrypted; model files hold plain arrays (np.savez)")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(f, max_header_size=_NPY_HEADER_MAX)
        elif version in ((2, 0), (3, 0)):
            header = np.lib.format.read_array_header_2_0(f, max_header_size=_NPY_HEADER_MAX)
        else:
            raise ModelFileError(path, f"array {key!r:.100} has an unknown .npy version {version}")
        got_shape, fortran, dtype = header
        if dtype.hasobject:
            raise ModelFileError(
                path, f"array {key!r:.100} holds pickled Python objects: refused, nothing in a model file is unpickled"
            )
        if dtype not in dtypes:
            raise ModelFileError(
                path, f"array {key!r:.100} is {dtype}; expected {' or '.join(str(d) for d in dtypes)}"
            )
        if shape is not None and tuple(got_shape) != tuple(shape):
            raise ModelFileError(
                path, f"array {key!r:.100} has shape {tuple(got_shape)}; the description says {tuple(shape)}"
            )
        count = math.prod(got_shape)
        nbytes = count * dtype.itemsize
        if nbytes > info.file_size:
            raise ModelFileError(
                path, f"array {key!r:.100} declares {nbytes} bytes of data but its archive member holds {info.file_size}"
            )
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise ModelFileError(path, f"array {key!r:.100} is truncated")
    array = np.frombuffer(data, dtype=dtype, count=count)
    order = "F" if fortran else "C"
    return array.reshape(got_shape, order=order).copy(order="C")


def read(path) -> tuple[dict, dict[str, np.ndarray]]:
    """``(metadata, arrays)`` of a model file, fully checked; ModelFileError otherwise.

    Memory is bounded by the file: the description is read first (at most 64 MiB) and checked,
    then only the arrays it lists, each header checked against its declared shape before the
    data is read, from uncompressed members.
    """
    path = os.fsdecode(path)  # bytes paths too, as open() takes them
    check_file_name(path)
    try:
        f = open_regular_file(path)  # FileNotFoundError, with the path, for a missing file
    except NotARegularFileError as err:
        raise ModelFileError(path, f"it is {err.kind}, not a regular file") from None
    with f:
        head = f.read(4)
    if not head:
        raise ModelFileError(path, "the file is empty")
    if head != b"PK\x03\x04":
        raise ModelFileError(
            path, "not a model file: it is not an .npz (zip) archive as written by model.save() or model.save_weights()"
        )
    try:
        with open_regular_file(path) as f, zipfile.ZipFile(f) as zf:
            members = {info.filename: info for info in zf.infolist()}
            meta_info = members.get(_META + ".npy")
            if meta_info is None:
                raise ModelFileError(
                    path, "no '__meta__' entry: this .npz was not written by convforge's model.save() or save_weights()"
                )
            if meta_info.file_size > _META_MAX_BYTES:
                raise ModelFileError(path, f"the '__meta__' entry is {meta_info.file_size} bytes: not a description")
            raw = _read_npy(zf, meta_info, path, _META, None, (np.dtype(np.uint8),))
            if raw.ndim != 1:
                raise ModelFileError(path, "the '__meta__' entry is not UTF-8 JSON bytes")
            meta = _check_meta(json.loads(raw.tobytes().decode("utf-8")), path)
            arrays = {}
            for key, shape in _listed_arrays(meta).items():
                info = members.get(key + ".npy")
                if info is None:
                    raise ModelFileError(path, f"array {key!r:.100} listed in the description is missing")
                arrays[key] = _read_npy(zf, info, path, key, shape, _FLOAT_DTYPES)
    except ModelFileError:
        raise
    except _READ_ERRORS as err:
        raise ModelFileError(path, f"the file is corrupt or truncated ({type(err).__name__}: {err!s:.300})") from err
    _check_finite_weights(meta, arrays, path)
    return meta, arrays


def _check_finite_weights(meta, arrays, path) -> None:
    for entry in meta["weights"]:
        value = arrays[entry["key"]]
        bad = value.size - int(np.count_nonzero(np.isfinite(value)))
        if bad:
            # A model that diverged, or a forged file: either way not weights to continue from.
            raise ModelFileError(path, f"weight array {entry['key']!r} holds {bad} NaN or infinite values")


# The model side of the files (what is written, how it is put back) lives in convforge.models.state
def register_keras_serializable(package: str = "Custom", name: str | None = None):
    """Keras's ``@keras.saving.register_keras_serializable()`` decorator, accepted so that Keras code
    runs unchanged: convforge needs no registration. ``load_model`` finds a Layer subclass defined
    in this process by its class name (``custom_objects`` chooses among classes of one name), and
    it does not save custom losses or metrics (load such a model with ``compile=False``). The
    decorator checks its arguments and returns what it decorates as it is.
    """
    for argument, value in (("package", package), ("name", name)):
        if value is not None and (not isinstance(value, str) or not value or ">" in value):
            raise ValueError(f"register_keras_serializable: {argument} must be a non-empty string without '>'; "
                             f"got {value!r}")

    def decorator(obj):
        if not callable(obj):
            raise TypeError(f"register_keras_serializable decorates a class or a function; got {obj!r:.80}")
        return obj

    return decorator


# and convforge.models.loading; these names stay reachable here for code written before the split.
# Resolved on first access, so that importing this module never imports convforge.models.
_MOVED = {
    "load_model": "loading",
    "restore_training_state": "state",
}


# Keras's keras.saving functions: the model's own methods, so that the file name picks the format
# (.keras and .weights.h5 Keras's, .npz convforge's) here as there.
def save_model(model, filepath, overwrite: bool = True, zipped=None) -> None:
    """Keras's ``keras.saving.save_model``: ``model.save(filepath, overwrite)`` (``zipped``: None
    or True; a .keras file is always a zip, as Keras's default)."""
    if zipped not in (None, True):
        raise TypeError(f"save_model: zipped={zipped!r} is not supported: convforge writes .keras files zipped "
                        "(Keras's default)")
    model.save(filepath, overwrite=overwrite)


def save_weights(model, filepath, overwrite: bool = True) -> None:
    """Keras's ``keras.saving.save_weights``: ``model.save_weights(filepath, overwrite)``."""
    model.save_weights(filepath, overwrite=overwrite)


def load_weights(model, filepath, skip_mismatch=False) -> None:
    """Keras's ``keras.saving.load_weights``: ``model.load_weights(filepath, skip_mismatch)``."""
    model.load_weights(filepath, skip_mismatch=skip_mismatch)


def __getattr__(name):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"convforge.models.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
