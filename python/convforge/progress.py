"""Keras-style progress bars for fit, evaluate and predict.

On a terminal (``verbose=1``) a bar is redrawn in place, at most
``interval`` seconds apart (10 times a second by default) so fast batches do
not flood the output::

    Epoch 1/5
    469/469 [==============================] - 4s 8ms/step - loss: 0.4852 - accuracy: 0.8253

    120/469 [=======>......................] - ETA: 2s - loss: 0.5012 - accuracy: 0.8170   (while running)

When the stream is not a terminal (a log file, a notebook capture, CI), or
with ``verbose=2``, only the final line of each epoch is written, without
the bar::

    469/469 - 4s - 8ms/step - loss: 0.4852 - accuracy: 0.8253
"""

from __future__ import annotations

import sys
import time

import numpy as np

__all__ = ["ProgressBar", "format_duration", "write_line"]

# The clock bars read (a name of its own so that tests can replace it).
_clock = time.perf_counter

# Whether a bar has been drawn without its final newline (on any stream): a message
# printed meanwhile (write_line) must start on a fresh line.
_open_line = {"stream": None}


def format_duration(seconds: float) -> str:
    """``'3s'``, ``'1:05'`` or ``'1:01:05'``, as Keras prints ETAs and epoch times."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if seconds >= 60:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds}s"


def _format_step_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def _format_value(value) -> str:
    try:
        # One value per threshold or class (Precision(thresholds=[...]), F1Score()): their mean,
        # as Keras's progress bar shows it (the logs and History keep the array).
        v = float(np.mean(value)) if np.ndim(value) else float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.4e}"


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def write_line(text: str, stream=None) -> None:
    """Print a message on its own line, ending a bar drawn in place first.

    In a data-parallel run only the primary rank prints (the others would repeat it).
    """
    from . import distributed

    if not distributed.is_primary():
        return
    stream = stream if stream is not None else sys.stdout
    if _open_line["stream"] is not None:
        _open_line["stream"].write("\n")
        _open_line["stream"] = None
    stream.write(text + "\n")
    stream.flush()


class ProgressBar:
    """A Keras-like progress bar for ``target`` steps.

    Parameters
    ----------
    target : int or None
        Number of steps (batches); None where it is not known (a generator
        without ``steps_per_epoch``): ``3/Unknown`` and no bar, as Keras's.
    verbose : int
        1: animated bar on a terminal, final line only otherwise; 2: final
        line only; 0: nothing.
    width : int
        Characters inside the brackets.
    interval : float
        Minimum seconds between redraws.
    stream : file, optional
        Default ``sys.stdout`` (looked up when the bar is made).
    """

    def __init__(self, target: int, verbose: int = 1, width: int = 30, interval: float = 0.1, stream=None):
        self.target = None if target is None else int(target)
        self.verbose = verbose
        self.width = width
        self.interval = interval
        self.stream = stream if stream is not None else sys.stdout
        self.dynamic = verbose == 1 and _is_terminal(self.stream)
        self.start = _clock()
        self._last_draw = 0.0
        self._last_len = 0
        self._done = False

    def _rewrite(self, line: str, finalize: bool) -> None:
        """Write ``line`` over the terminal's current line, padded with spaces to wipe the end of a
        longer previous one; a final line ends it."""
        pad = " " * max(0, self._last_len - len(line))
        self._last_len = len(line)
        self.stream.write("\r" + line + pad)
        if finalize:
            self.stream.write("\n")
            _open_line["stream"] = None
            self._done = True
        else:
            _open_line["stream"] = self.stream

    def update(self, current: int, values=None, finalize: bool | None = None) -> None:
        """Show that ``current`` steps are done, with ``values`` (name -> number).

        The last step (``current == target``) or ``finalize=True`` writes
        the final line; other calls redraw at most every ``interval`` seconds.
        """
        if self.verbose == 0 or self._done:
            return
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        now = _clock()
        if not finalize and (not self.dynamic or now - self._last_draw < self.interval):
            return
        self._last_draw = now
        elapsed = now - self.start
        items = "".join(f" - {k}: {_format_value(v)}" for k, v in (values or {}).items())
        # An unknown target is the count itself once the last step is done.
        total = self.target if self.target is not None else (current if finalize else "Unknown")
        count = f"{current:>{len(str(total))}}/{total}"
        if self.dynamic and self.target is None:
            per_step = elapsed / max(current, 1)
            self._rewrite(f"{count} - {format_duration(elapsed)} {_format_step_time(per_step)}{items}", finalize)
        elif self.dynamic:
            filled = int(self.width * min(current, self.target) / max(self.target, 1))
            bar = "=" * filled
            if current < self.target:
                bar = (bar[:-1] if filled else "") + ">"
            bar = f"{count} [{bar:.<{self.width}}]"
            if finalize:
                per_step = elapsed / max(current, 1)
                line = f"{bar} - {format_duration(elapsed)} {_format_step_time(per_step)}{items}"
            else:
                eta = elapsed / max(current, 1) * (self.target - current)
                line = f"{bar} - ETA: {format_duration(eta)}{items}"
            self._rewrite(line, finalize)
        else:
            per_step = elapsed / max(current, 1)
            self.stream.write(f"{count} - {format_duration(elapsed)} - {_format_step_time(per_step)}{items}\n")
            self._done = True
        self.stream.flush()
