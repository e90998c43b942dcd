"""Adaptive kernel thread count for the batch loops (issue 15 item 9: busy machines).

When another process holds a core, a kernel that splits its work over every core waits, at each
of its barriers, for the thread that shares a core with that process: a LeNet-5 step on 2 threads
went from 2.3 ms to 5-10 ms here with one competing process, slower than the same step on one
thread. A fixed thread count cannot be right on both a quiet and a busy machine, so ``fit``,
``evaluate`` and ``predict`` measure: they time their batches at the thread count they run, now
and then run a few at the other candidate (half the threads, or back to all of them), and keep
whichever was faster. Results do not depend on it: the kernels give bit-identical results for
any thread count.

The candidates are the thread count in force when the call starts (``convforge.set_num_threads``,
``$CONVFORGE_NUM_THREADS``, or every core) and half of it; never more than the user's count,
which is put back when the call returns. Probes back off (0.2 s after a decision, doubling to 5 s
while they confirm it, and never closer than 30 probes' length of batches), so on a quiet machine
they cost well under 1% of an epoch; a batch slower than 1.5x the recent ones triggers one at
once (a competitor appearing). One loop governs at a time (the count is process-wide). It is off
in data-parallel runs (a rank's step time includes waiting for the other ranks) and with
``$CONVFORGE_ADAPTIVE_THREADS=0`` or ``convforge.set_adaptive_threads(False)``.

``python bench/busy_machine.py --policies 300000,1000,300000+adaptive`` measures it;
bench/busy_machine.md has the figures.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections import deque

# Seconds (wall time, across the calls of a model) between probes: the first after a decision,
# doubling while probes confirm it.
MIN_INTERVAL_S = 0.2
MAX_INTERVAL_S = 5.0
PROBE_STEPS = 5  # steps timed at the other candidate per probe (their median decides)
RECENT_STEPS = 5  # steps at the current count whose median the probe is compared with
WARMUP_STEPS = 2  # first full steps of a governor (per batch size), not timed (workspaces, caches)
PROBE_SPACING = 30  # at least this many probes' length of steps between two probes
SWITCH_GAIN = 0.8  # switch when the other candidate's median is below this fraction of ours (a clear win)
SLOWDOWN = 1.5  # a recent median this much above the last decision's triggers a probe
# A one-call predict (govern_one) under a decided full count is timed one call in this many: the
# governor's Python was ~3 us of a ~87 us one-image ResNet predict, every call.
TIME_ONE_CALL_IN = 4

_enabled: bool | None = None  # None: from $CONVFORGE_ADAPTIVE_THREADS at first use


def _env_enabled() -> bool:
    text = os.environ.get("CONVFORGE_ADAPTIVE_THREADS", "1").strip().lower()
    return text not in ("0", "false", "no", "off")


def set_adaptive_threads(enabled: bool) -> None:
    """Let ``fit``, ``evaluate`` and ``predict`` lower the kernel thread count when they measure that
    fewer threads are faster (a busy machine), and raise it back (default: on;
    ``$CONVFORGE_ADAPTIVE_THREADS=0`` turns it off at start-up). Off, they run at
    ``convforge.get_num_threads()`` throughout."""
    global _enabled
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    _enabled = enabled


def get_adaptive_threads() -> bool:
    """Whether ``fit``, ``evaluate`` and ``predict`` adapt the kernel thread count (see
    :func:`set_adaptive_threads`)."""
    global _enabled
    if _enabled is None:  # read once: every predict call asks
        _enabled = _env_enabled()
    return _enabled


_NO_RESULT = object()  # ThreadGovernor.run's default no_batch: no result is one

# convforge.set_num_threads calls so far (a governor's own settings are not among them): how a
# governor tells that the user set a count while it held the kernels at another, also where the
# user's count equals the one it had applied.
_user_sets = 0


def note_user_set() -> None:
    """convforge.set_num_threads was called (by the user: a callback, another thread)."""
    global _user_sets
    _user_sets += 1


class ThreadGovernor:
    """Chooses between ``high`` and ``low`` kernel threads from measured step times.

    ``run(step, size)`` calls ``step()`` under the chosen count and times it; only steps of the
    largest ``size`` seen are compared (a short last batch is not a slow step), and a larger
    ``size`` than any before starts again from ``high`` (what was learnt was about other work).
    ``set_threads``/``get_threads`` set and read the kernels' count (``convforge.set_num_threads``
    and ``get_num_threads``); they and ``clock`` are arguments so that tests can drive the
    governor with a simulated machine.
    """

    def __init__(self, high: int, set_threads, get_threads, clock=time.perf_counter):
        self._set, self._get, self._clock = set_threads, get_threads, clock
        self.switches = 0  # decisions that changed the count
        self.probes = 0  # probes run
        self._user_sets = _user_sets  # the user's set_num_threads calls known to this governor
        self._reset(high, high)

    def skips(self, size: int) -> bool:
        """Whether a one-call step of ``size`` samples may run untimed at the count in force (and
        the governor not be taken): it has decided on all its threads and is not probing, the
        size is the one it times, and this is not the call in TIME_ONE_CALL_IN that it times. A
        slowdown is then seen within TIME_ONE_CALL_IN * RECENT_STEPS calls."""
        if self._probing is not None or self.current != self.high or self._reference is None or size != self._size:
            return False
        self._untimed = (self._untimed + 1) % TIME_ONE_CALL_IN
        return self._untimed != 0

    def user_set(self) -> bool:
        """Whether the user set a count since this governor last took or followed one."""
        return _user_sets != self._user_sets

    def take(self) -> None:
        """A new loop starts with this governor: counts the user set before it are known."""
        self._user_sets = _user_sets

    def _reset(self, high: int, applied: int) -> None:
        self.high, self.low = high, max(1, high // 2)
        self.current = high
        self._applied = applied  # the count the kernels run at now
        self._recent: deque = deque(maxlen=RECENT_STEPS)
        self._probe_times: list = []
        self._probing: int | None = None  # the count being probed
        self._reference = None  # median step time at `current` when it was last decided
        self._interval = MIN_INTERVAL_S
        self._next_probe = None
        self._size = 0  # the largest batch seen: only its steps are timed
        self._warm = 0
        self._untimed = 0  # one-call steps run untimed since the last timed one (skips)

    @property
    def active(self) -> bool:
        return self.high > self.low

    def _apply(self, n: int) -> None:
        if n != self._applied:
            self._set(n)
            self._applied = n

    def run(self, step, size: int, no_batch=_NO_RESULT):
        """``step()`` at the chosen count, timed; a result that is ``no_batch`` says it ran no batch
        (predict's one-call path declining its input: None) and is not timed."""
        if not self.active:
            return step()
        now_applied = self._get()
        if now_applied != self._applied or self.user_set():  # the user (a callback) set a count mid-fit: follow it
            self._user_sets = _user_sets
            self._reset(now_applied, now_applied)
            if not self.active:
                return step()
        if size > self._size:  # a larger batch than any so far: what was learnt is not about it
            self._reset(self.high, self._applied)  # back to all threads until measured otherwise
            self._size = size
        if size < self._size or self._warm < WARMUP_STEPS:
            self._warm += size == self._size
            self._apply(self.current)
            return step()
        self._apply(self._probing if self._probing is not None else self.current)
        t0 = self._clock()
        result = step()
        t1 = self._clock()
        if result is not no_batch:
            self._record(t1 - t0, t1)
        return result

    def _record(self, dt: float, now: float) -> None:
        if self._probing is not None:
            self._probe_times.append(dt)
            if len(self._probe_times) == PROBE_STEPS:
                self._decide(now)
            return
        self._recent.append(dt)
        if len(self._recent) < RECENT_STEPS:
            return
        median = statistics.median(self._recent)
        if self._reference is None:
            self._reference, self._next_probe = median, now + self._gap(median)
        elif now >= self._next_probe or median > SLOWDOWN * self._reference:
            self._probing, self._probe_times = (self.low if self.current == self.high else self.high), []
            self.probes += 1

    def _decide(self, now: float) -> None:
        ours, theirs = statistics.median(self._recent), statistics.median(self._probe_times)
        if theirs < SWITCH_GAIN * ours:
            self.current = self._probing
            self.switches += 1
            self._interval = MIN_INTERVAL_S
            self._recent.clear()
            self._recent.extend(self._probe_times)
            self._reference = theirs
        else:
            self._interval = min(MAX_INTERVAL_S, 2 * self._interval)
            self._reference = ours
        self._probing, self._probe_times = None, []
        self._next_probe = now + self._gap(self._reference)

    def _gap(self, step: float) -> float:
        """Seconds to the next probe: the backed-off interval, and at least PROBE_SPACING probes'
        worth of steps, so that probing long steps (a 90 ms predict call) stays a few percent."""
        return max(self._interval, PROBE_SPACING * PROBE_STEPS * step)

    def restore(self) -> None:
        """Put back the count the loop started with, unless the user set one since the last step
        (a callback's ``on_train_end``, another thread): then theirs stands, as it does mid-fit.
        Until the twenty-fifth stop a count set there while the governor held half the threads
        was replaced by the count fit started with."""
        if self.user_set() or self._get() != self._applied:
            self._user_sets = _user_sets
            self._reset(self._get(), self._get())
            return
        self._apply(self.high)


# One governed loop at a time in the process: the thread count is process-wide, so a second loop
# (another thread's predict during a fit, or the validation inside fit) runs ungoverned at the
# count in force, and only the governing loop changes the count and puts the user's back.
_lock = threading.Lock()
_governing = False


_counts = None


def _count_functions():
    """convforge's get_num_threads and its unnoted setter, which a governor uses so that its
    settings are not counted as the user's (note_user_set); this module loads before them;
    imported once, since a predict of one image is ~30 us and ``from . import`` cost 3 of them."""
    global _counts
    if _counts is None:
        from . import _apply_num_threads, get_num_threads

        _counts = (get_num_threads, _apply_num_threads)
    return _counts


def may_govern(strategy) -> bool:
    """Could :func:`governed` make a governor now (adaptive threads on, one process, 2+ threads)?
    Where not, a caller may skip its context manager: a one-image predict spent ~2.5 of its
    ~24 us entering and leaving it to get None."""
    return get_adaptive_threads() and getattr(strategy, "size", 1) <= 1 and _count_functions()[0]() >= 2


def _take_governor(kind: str, owner: dict) -> ThreadGovernor | None:
    """The governor of ``kind`` from ``owner`` (made if missing or for another count), now the
    process's governing one; None where another loop governs or the count is below 2."""
    global _governing
    get_num_threads, set_num_threads = _count_functions()
    with _lock:
        high = get_num_threads()  # again, under the lock: the >= 2 below is the one that counts
        if _governing or high < 2:
            return None
        _governing = True
        gov = owner.get(kind)
        if gov is None or gov.high != high:
            gov = owner[kind] = ThreadGovernor(high, set_num_threads, get_num_threads)
        gov.take()
        return gov


def _give_back(gov: ThreadGovernor) -> None:
    """Put the user's count back and let another loop govern."""
    global _governing
    gov.restore()
    with _lock:
        _governing = False


@contextlib.contextmanager
def governed(kind: str, owner: dict, strategy):
    """The governor of one ``kind`` loop ("fit", "evaluate", "predict") of a model, or None when
    the count stays as it is (off, one thread, data-parallel, or another loop already governs).
    ``owner`` is the model's dict of governors: kept between its calls while the user's thread
    count is the same, timings included, so that a loop of short fits (one epoch each) or of
    one-batch predicts (a server) learns across calls (one per kind and model: a predict batch and
    a training step, or two models' steps, are not comparable). The user's count is
    put back when the loop ends, however it ends."""
    gov = _take_governor(kind, owner) if may_govern(strategy) else None
    try:
        yield gov
    finally:
        if gov is not None:
            _give_back(gov)


def govern_one(kind: str, owner: dict, strategy, step, size: int):
    """``step()`` as a loop of one batch of ``size`` samples under ``kind``'s governor: what
    ``with governed(kind, owner, strategy) as g: run_batch(g, step, size)`` does, as a plain call
    (predict's one-call path: the context manager's generator was ~1.5 us of a one-image
    predict). A step that returns None ran no batch and is not timed. Where the governor keeps
    all its threads, only one call in TIME_ONE_CALL_IN is timed (ThreadGovernor.skips)."""
    if not may_govern(strategy):
        return step()
    known = owner.get(kind)
    if known is not None and known.high == _count_functions()[0]() and known.skips(size):
        return step()  # at the user's count, which the governor keeps: nothing to set or time
    gov = _take_governor(kind, owner)
    if gov is None:
        return step()
    try:
        return gov.run(step, size, no_batch=None)
    finally:
        _give_back(gov)


def run_batch(governor: ThreadGovernor | None, step, size: int):
    """``step()`` through ``governor`` (timed, at its count), or as it is when there is none."""
    return step() if governor is None else governor.run(step, size)
