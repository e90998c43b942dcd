"""Opening a file to read that never waits on it (the loaders of model files and data sets)."""

from __future__ import annotations

import os
import stat


class NotARegularFileError(OSError):
    """The path names something other than a regular file; ``kind`` says what ("a named pipe
    (FIFO)", "a device", ...)."""

    def __init__(self, path, kind: str):
        super().__init__(f"{os.fsdecode(path)!r} is {kind}, not a regular file")
        self.kind = kind


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def open_regular_file(path):
    """``open(path, "rb")`` of a regular file, else NotARegularFileError saying what it is.

    A named pipe with no writer made ``open`` (or the first read) wait forever, and a device such
    as /dev/zero never ends: the path is checked with ``stat``, then (in case it was replaced in
    between) opened without blocking and checked again with ``fstat``, and only then set back
    to ordinary blocking reads. FileNotFoundError and the other OSErrors of
    ``open`` pass through.
    """
    mode = os.stat(path).st_mode  # refused before any open where it can be (opening a device may act)
    if not stat.S_ISREG(mode):
        raise NotARegularFileError(path, _kind(mode))
    nonblocking = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, os.O_RDONLY | nonblocking | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFileError(path, _kind(mode))
        if nonblocking:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
