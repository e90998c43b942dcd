"""Warnings that point at the user's line, however deep inside convforge they are raised."""

from __future__ import annotations

import os
import sys

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` in the function calling this one that names the
    first frame outside convforge: the user's ``fit``, ``compile`` or ``load_model`` line, not a
    line of the trainer, a callback or the argument check around ``fit`` (hand-counted levels
    pointed inside convforge wherever a call went through one function more)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level if frame is not None else 1
