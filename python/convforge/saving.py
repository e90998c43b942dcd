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
import json
import os
import secrets
import struct
import zipfile
import zlib

import numpy as np

__all__ = ["FORMAT_VERSION", "ModelFileError", "new_meta", "read", "write", "write_atomic"]

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
        self.path = os.fspath(path)
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


def _remove_stale_temporaries(directory: str, base: str) -> None:
    """Delete the temporary files of writers of ``base`` that died mid-write (killed, crashed).

    A name carries its writer's process id; a file whose writer is still alive is left alone.
    """
    prefix = f".{base}."
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


def write_atomic(path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` at ``path``, atomically (see the module docstring)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    _remove_stale_temporaries(directory, os.path.basename(path))
    # OS entropy for the name: convforge's generator must not be disturbed by saving.
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)



def _meta_array(meta: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)


def new_meta(kind: str) -> dict:
    """The format fields of a new description: ``{"format", "format_version", "kind", "convforge_version"}``."""
    from . import __version__

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "convforge_version": __version__}


def write(path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write the description ``meta`` (JSON-serialisable) and ``arrays`` as a model file, atomically."""
    write_atomic(path, {_META: _meta_array(meta), **arrays})


# --------------------------------------------------------------------------- reading

_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    KeyError,
    ValueError,
    UnicodeDecodeError,
    NotImplementedError,
)


def _check_meta(meta, path) -> dict:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(path, "the '__meta__' entry is not a convforge description")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(path, f"invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            path,
            f"written by a newer convforge (format version {version}); this version reads up to {FORMAT_VERSION}",
        )
    if meta.get("kind") not in ("model", "weights"):
        raise ModelFileError(path, f"unknown file kind {meta.get('kind')!r}")
    model = meta.get("model")
    weights = meta.get("weights")
    if (
        not isinstance(model, dict)
        or not isinstance(model.get("config"), dict)
        or not isinstance(model["config"].get("layers"), list)
        or not isinstance(weights, list)
        or not all(
            isinstance(w, dict) and {"index", "name", "key", "shape", "layer", "class_name"} <= set(w) for w in weights
        )
    ):
        raise ModelFileError(path, "malformed '__meta__' description (missing model or weights entries)")
    return meta


def read(path) -> tuple[dict, dict[str, np.ndarray]]:
    """``(metadata, arrays)`` of a model file, fully checked; ModelFileError otherwise."""
    path = os.fspath(path)
    with open(path, "rb") as f:  # FileNotFoundError, with the path, for a missing file
        head = f.read(4)
    if not head:
        raise ModelFileError(path, "the file is empty")
    if head != b"PK\x03\x04":
        raise ModelFileError(
            path, "not a model file: it is not an .npz (zip) archive as written by model.save() or model.save_weights()"
        )
    try:
        # Our own file object: np.load leaks its handle when the zip is unreadable.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            if _META not in npz.files:
                raise ModelFileError(
                    path, "no '__meta__' entry: this .npz was not written by convforge's model.save() or save_weights()"
                )
            raw = npz[_META]
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise ModelFileError(path, "the '__meta__' entry is not UTF-8 JSON bytes")
            meta = _check_meta(json.loads(raw.tobytes().decode("utf-8")), path)
            arrays = {name: npz[name] for name in npz.files if name != _META}
    except ModelFileError:
        raise
    except _READ_ERRORS as err:
        raise ModelFileError(path, f"the file is corrupt or truncated ({type(err).__name__}: {err})") from err
    for entry in meta["weights"]:
        value = arrays.get(entry["key"])
        if value is None:
            raise ModelFileError(path, f"weight array {entry['key']!r} listed in the description is missing")
        if list(value.shape) != list(entry["shape"]) or value.dtype not in (np.float32, np.float64):
            raise ModelFileError(
                path,
                f"weight array {entry['key']!r} is {value.dtype} {value.shape}; the description says "
                f"float32/float64 {tuple(entry['shape'])}",
            )
        bad = value.size - int(np.count_nonzero(np.isfinite(value)))
        if bad:
            # A model that diverged, or a forged file: either way not weights to continue from.
            raise ModelFileError(path, f"weight array {entry['key']!r} holds {bad} NaN or infinite values")
    return meta, arrays




# The model side of the files (what is written, how it is put back) lives in convforge.models.state
# and convforge.models.loading; these names stay reachable here for code written before the split.
# Resolved on first access, so that importing this module never imports convforge.models.
_MOVED = {
    "load_model": "loading",
    "save_model": "state",
    "save_weights": "state",
    "load_weights": "state",
    "restore_training_state": "state",
}


def __getattr__(name):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"convforge.models.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
