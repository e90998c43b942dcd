"""fit's adaptive kernel thread count (convforge/threads.py; issue 15 item 9: busy machines).

The governor is driven here by a simulated machine (a fake clock that each step advances by the
time the step would take at the applied thread count), so its decisions are tested without
timing anything. The real-machine figures are in bench/busy_machine.md.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import convforge
from convforge import threads

# Step times (s) of a LeNet-5-like step at 2 and 1 threads, measured on the 2-core machine.
QUIET = {2: 0.0025, 1: 0.0040}
BUSY = {2: 0.0060, 1: 0.0042}  # another process holds a core


class Machine:
    """A fake clock and thread setting: ``step()`` costs ``times[threads]`` (with jitter)."""

    def __init__(self, times, threads_=2, jitter=0.05, seed=0):
        self.times, self.threads, self.now = times, threads_, 0.0
        self.jitter, self.rng = jitter, np.random.default_rng(seed)
        self.log = []  # thread count of each step

    def set(self, n):
        self.threads = n

    def get(self):
        return self.threads

    def clock(self):
        return self.now

    def step(self):
        self.now += self.times[self.threads] * (1 + self.jitter * self.rng.uniform(-1, 1))
        self.log.append(self.threads)


def governor(machine, high=2):
    return threads.ThreadGovernor(high, set_threads=machine.set, get_threads=machine.get, clock=machine.clock)


def run(gov, machine, steps, size=64):
    for _ in range(steps):
        gov.run(machine.step, size)


def test_quiet_machine_stays_at_all_threads_and_probes_rarely():
    m = Machine(QUIET)
    g = governor(m)
    run(g, m, 4000)  # ~10 s of training
    assert g.switches == 0 and g.current == 2
    at_one = m.log.count(1)
    assert 0 < at_one <= 0.01 * len(m.log), at_one  # the probes: under 1% of the steps
    assert g._interval == threads.MAX_INTERVAL_S  # backed off


def test_busy_machine_moves_to_half_the_threads_soon():
    m = Machine(BUSY)
    g = governor(m)
    run(g, m, 400)
    assert g.current == 1
    first_switch = m.log.index(1)  # the first probe, and it switched
    # the first probe: after warm-up, the steps it compares with, and the gap (interval, or 30
    # probes' worth of steps, whichever is longer)
    gap = max(threads.MIN_INTERVAL_S, threads.PROBE_SPACING * threads.PROBE_STEPS * BUSY[2])
    assert first_switch < threads.WARMUP_STEPS + threads.RECENT_STEPS + 1.2 * gap / BUSY[2]
    assert m.log[-100:].count(2) <= threads.PROBE_STEPS  # mostly at one thread from then on


def test_a_competitor_arriving_is_noticed_within_a_few_steps():
    m = Machine(QUIET)
    g = governor(m)
    run(g, m, 3000)  # probes backed off to several seconds
    assert g.current == 2
    m.times = BUSY
    run(g, m, 20)  # the slowdown itself triggers a probe, not the (long) interval
    assert g.current == 1


def test_the_competitor_leaving_brings_all_threads_back():
    m = Machine(BUSY)
    g = governor(m)
    run(g, m, 3000)
    assert g.current == 1
    m.times = QUIET
    start = m.now
    while g.current == 1 and m.now - start < 2 * threads.MAX_INTERVAL_S:
        g.run(m.step, 64)
    assert g.current == 2 and m.now - start <= threads.MAX_INTERVAL_S + 0.1


def test_neither_faster_means_no_switch():
    m = Machine({2: 0.003, 1: 0.003}, jitter=0.05)
    g = governor(m)
    run(g, m, 3000)
    assert g.switches == 0


def test_short_batches_are_not_compared_with_full_ones():
    # A short last batch is fast at either count: it must not look like one thread winning.
    m = Machine(QUIET)
    g = governor(m)
    for _ in range(50):
        run(g, m, 40)
        m.times = {2: QUIET[2] / 20, 1: QUIET[1] / 20}
        g.run(m.step, 3)
        m.times = QUIET
    assert g.switches == 0


def test_a_larger_batch_starts_again_from_all_threads():
    # What was learnt on small batches (a busy machine, or batches too small to split) says
    # nothing about a larger one: predict(10,000 images) after predict(64) runs on all threads.
    m = Machine(BUSY)
    g = governor(m)
    run(g, m, 400, size=64)
    assert g.current == 1 and m.threads == 1
    m.times = QUIET
    g.run(m.step, 10000)
    assert m.log[-1] == 2 and g.current == 2


def test_a_count_set_during_fit_is_followed():
    m = Machine(BUSY)
    g = governor(m)
    run(g, m, 400)
    assert m.threads == 1
    m.times = {**BUSY, 4: 0.007}
    m.set(4)  # a callback called convforge.set_num_threads(4)
    g.run(m.step, 64)
    assert (g.high, g.low) == (4, 2)
    m.set(1)
    g.run(m.step, 64)
    assert not g.active


def test_restore_puts_back_the_count_fit_started_with():
    m = Machine(BUSY)
    g = governor(m)
    run(g, m, 400)
    assert m.threads == 1
    g.restore()
    assert m.threads == 2


@pytest.mark.parametrize("user_count", [3, 1])
def test_a_count_set_after_the_last_step_stands(user_count):
    # A callback's on_train_end (or another thread) sets a count while the governor holds half the
    # threads: restore must leave the user's count, also where it equals the one the governor
    # had applied (1 here), which only convforge.set_num_threads's note tells apart.
    m = Machine(BUSY)
    g = governor(m)
    run(g, m, 400)
    assert m.threads == 1
    m.set(user_count)
    threads.note_user_set()
    g.restore()
    assert m.threads == user_count


def test_set_adaptive_threads_checks_its_argument():
    with pytest.raises(TypeError, match="enabled must be True or False"):
        convforge.set_adaptive_threads("yes")


needs_openmp = pytest.mark.skipif(not convforge.build_info()["openmp"], reason="one thread without OpenMP")


@pytest.fixture
def two_threads_adaptive(monkeypatch):
    """2 kernel threads and adaptation on for the test; the user's settings back afterwards."""
    before = convforge.get_num_threads()
    monkeypatch.setattr(threads, "_enabled", True)
    convforge.set_num_threads(2)
    yield
    convforge.set_num_threads(before)


def _every_probe_switches(monkeypatch):
    # SWITCH_GAIN 1e9: a probe switches even when the probed count ran 10x slower, as 2 threads
    # do on a host whose cores are busy elsewhere (each barrier waits for a descheduled thread):
    # with 10, a CI run beside another test suite switched once to 1 thread and never back.
    for name, value in (("MIN_INTERVAL_S", 0.0), ("MAX_INTERVAL_S", 0.0), ("PROBE_SPACING", 0), ("SWITCH_GAIN", 1e9)):
        monkeypatch.setattr(threads, name, value)


def _lenet(metrics=None):
    from convforge.train import lenet5

    convforge.seed(0)
    model = lenet5()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=metrics)
    return model


@needs_openmp
def test_fit_switching_counts_every_few_steps_trains_the_same_weights(monkeypatch, two_threads_adaptive):
    # Probing after every few steps makes fit alternate between 2 and 1 threads: the weights must
    # be bit-identical to a fit at a fixed count (the kernels' results do not depend on it).
    rng = np.random.default_rng(0)
    x = rng.random((16 * 40, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, len(x))
    monkeypatch.setattr(threads, "_enabled", False)
    fixed = _lenet()
    fixed.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    monkeypatch.setattr(threads, "_enabled", True)
    _every_probe_switches(monkeypatch)
    adaptive = _lenet()
    adaptive.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert adaptive._thread_governors["fit"].switches >= 3
    assert convforge.get_num_threads() == 2  # restored
    for a, b in zip(fixed.get_weights(), adaptive.get_weights()):
        np.testing.assert_array_equal(a, b)


@needs_openmp
def test_predict_and_evaluate_switching_counts_give_the_same_results(monkeypatch, two_threads_adaptive):
    rng = np.random.default_rng(1)
    x = rng.random((8 * 40, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, len(x))
    model = _lenet(metrics=["accuracy"])
    monkeypatch.setattr(threads, "_enabled", False)
    fixed = model.predict(x, batch_size=8, verbose=0), model.evaluate(x, y, batch_size=8, verbose=0)
    monkeypatch.setattr(threads, "_enabled", True)
    _every_probe_switches(monkeypatch)
    adaptive = model.predict(x, batch_size=8, verbose=0), model.evaluate(x, y, batch_size=8, verbose=0)
    assert model._thread_governors["predict"].switches >= 3 and model._thread_governors["evaluate"].switches >= 3
    assert convforge.get_num_threads() == 2
    np.testing.assert_array_equal(fixed[0], adaptive[0])
    assert fixed[1] == adaptive[1]


@needs_openmp
def test_the_count_is_restored_when_fit_raises(monkeypatch, two_threads_adaptive):
    from convforge import callbacks

    counts = []

    class WatchThenRaise(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            counts.append(convforge.get_num_threads())
            if batch == 30:
                raise KeyError("boom")

    _every_probe_switches(monkeypatch)
    monkeypatch.setattr(threads, "PROBE_STEPS", 1)
    monkeypatch.setattr(threads, "RECENT_STEPS", 1)
    rng = np.random.default_rng(2)
    x = rng.random((8 * 40, 28, 28, 1), dtype=np.float32)
    with pytest.raises(KeyError, match="boom"):
        _lenet().fit(x, rng.integers(0, 10, len(x)), batch_size=8, epochs=1, verbose=0, callbacks=[WatchThenRaise()])
    assert 1 in counts  # the governor did lower the count during the fit
    assert convforge.get_num_threads() == 2


@needs_openmp
@pytest.mark.parametrize("user_count", [3, 1])
def test_a_count_set_in_on_train_end_stands(monkeypatch, two_threads_adaptive, user_count):
    # The governor holds 1 thread when the last batch ends (every probe switches, one step each:
    # 2, 1, 2, ... over the 9 batches); the count a callback then sets is the one after fit, as
    # one set mid-fit is followed. Until the twenty-fifth stop fit put back the 2 it started with.
    from convforge import callbacks

    seen = []

    class SetAtEnd(callbacks.Callback):
        def on_train_end(self, logs=None):
            seen.append(convforge.get_num_threads())
            convforge.set_num_threads(user_count)

    _every_probe_switches(monkeypatch)
    monkeypatch.setattr(threads, "PROBE_STEPS", 1)
    monkeypatch.setattr(threads, "RECENT_STEPS", 1)
    rng = np.random.default_rng(2)
    x = rng.random((8 * 9, 28, 28, 1), dtype=np.float32)
    _lenet().fit(x, rng.integers(0, 10, len(x)), batch_size=8, epochs=1, verbose=0, callbacks=[SetAtEnd()])
    assert seen == [1]  # the case under test: the governor had lowered the count
    assert convforge.get_num_threads() == user_count


@needs_openmp
def test_one_governed_loop_at_a_time(two_threads_adaptive):
    # The count is process-wide: while one loop governs it, a loop in another thread (a predict
    # during fit) runs ungoverned, and cannot take a lowered count for the user's.
    import threading

    owner_a, owner_b = {}, {}
    seen = []
    with threads.governed("fit", owner_a, None) as gov_a:
        assert gov_a is not None
        gov_a._apply(1)  # the fit's governor lowered the count

        def other():
            with threads.governed("predict", owner_b, None) as gov_b:
                seen.append(gov_b)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        with threads.governed("evaluate", owner_a, None) as nested:  # fit's validation
            seen.append(nested)
    assert seen == [None, None]
    assert convforge.get_num_threads() == 2  # the governing loop put the user's count back
    with threads.governed("predict", owner_b, None) as gov_b:  # free again
        assert gov_b is not None


def test_environment_variable_turns_it_off():
    code = "import convforge; print(convforge.get_adaptive_threads())"
    env = {**os.environ, "CONVFORGE_ADAPTIVE_THREADS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@needs_openmp
def test_a_models_governor_learns_across_one_batch_calls(two_threads_adaptive):
    # A server predicting one image per call: each call is one batch, so the governor must keep
    # its warm-up count and timings between calls (per model and kind) to ever decide anything.
    owner = {}
    for call in range(threads.WARMUP_STEPS + threads.RECENT_STEPS):
        with threads.governed("predict", owner, None) as gov:
            gov.run(lambda: None, 1)
    assert owner["predict"] is gov and gov._warm == threads.WARMUP_STEPS and len(gov._recent) == threads.RECENT_STEPS
    assert gov._reference is not None  # ready to probe


@needs_openmp
def test_one_batch_predict_goes_through_the_governor(two_threads_adaptive, monkeypatch):
    # predict of one batch runs the compiled plan without the batch loop (trainer._predict_at_once);
    # with 2+ threads and adaptation on it must still be timed by the model's governor, and with
    # adaptation off or one thread it makes none.
    from convforge.train import lenet5

    model = lenet5()
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)  # not a batch kept on one thread
    model.predict(x, verbose=0)
    assert model._whole_plan() is not None  # the one-batch path applies to this model
    assert model._whole_plan().serial_samples < len(x)
    for _ in range(threads.WARMUP_STEPS + 1):
        model.predict(x, verbose=0)
    gov = model._thread_governors["predict"]
    assert gov._warm == threads.WARMUP_STEPS and len(gov._recent) >= 1
    for setting in ("off", "one thread"):
        other = lenet5()
        if setting == "off":
            monkeypatch.setattr(threads, "_enabled", False)
        else:
            monkeypatch.setattr(threads, "_enabled", True)
            convforge.set_num_threads(1)
        other.predict(x, verbose=0)
        assert "predict" not in other._thread_governors, setting


def test_a_step_that_ran_no_batch_is_not_timed():
    # govern_one's predict step returns None where the one-call path declined its input: that
    # call ran nothing, and timing it would put a near-zero step among the real ones.
    m = Machine(QUIET)
    g = governor(m)
    run(g, m, threads.WARMUP_STEPS + 2)
    timed = len(g._recent)
    assert g.run(lambda: None, 64, no_batch=None) is None
    assert len(g._recent) == timed
    g.run(lambda: None, 64)  # by default any result is a batch
    assert len(g._recent) == timed + 1


@needs_openmp
def test_one_call_predict_runs_under_the_governor(two_threads_adaptive, monkeypatch):
    # Under the adaptive count, predict's one-call path (CompiledInference.ready) still runs, and
    # the model's governor times each call once as one batch (threads.govern_one); a call it
    # declines is timed only by the general path that then answers it. (Every call here: the
    # sampling of a decided governor is test_a_decided_governor_times_one_call_in_a_few's.)
    from convforge.train import lenet5

    monkeypatch.setattr(threads, "TIME_ONE_CALL_IN", 1)
    model = lenet5()
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)  # too large to stay on one thread
    first = model.predict(x, verbose=0)
    for _ in range(threads.WARMUP_STEPS + 1):
        model.predict(x, verbose=0)
    compiled = model._compiled_plan()
    ready, calls, timed = compiled.ready, [], []
    assert ready is not None and compiled.serial_samples < len(x)
    compiled.ready = lambda xb, batch_size: calls.append(xb.dtype) or ready(xb, batch_size)
    record = threads.ThreadGovernor._record
    monkeypatch.setattr(threads.ThreadGovernor, "_record", lambda self, dt, now: timed.append(dt) or record(self, dt, now))
    for _ in range(4):
        np.testing.assert_array_equal(model.predict(x, verbose=0), first)
    assert len(calls) == 4 and len(timed) == 4
    np.testing.assert_array_equal(model.predict(x.astype(np.float64), verbose=0), first)  # declined: float64
    assert len(calls) == 5 and len(timed) == 5
    assert not threads._governing  # given back after every call
    assert convforge.get_num_threads() == 2


@needs_openmp
def test_a_decided_governor_times_one_call_in_a_few(two_threads_adaptive, monkeypatch):
    # Once the governor has decided on all its threads (and is not probing), the one-call path
    # times one call in TIME_ONE_CALL_IN and runs the others at the user's count without taking
    # it; while it keeps fewer threads every call is governed, at its count; the user's count is
    # back after each call.
    from convforge.train import lenet5

    model = lenet5()
    x = np.random.default_rng(2).random((8, 28, 28, 1), dtype=np.float32)
    first = model.predict(x, verbose=0)
    for _ in range(threads.WARMUP_STEPS + threads.RECENT_STEPS + 1):
        model.predict(x, verbose=0)
    gov = model._thread_governors["predict"]
    assert gov._reference is not None and gov._probing is None and gov.current == gov.high == 2
    gov._next_probe = float("inf")  # no probe by the clock during the test
    monkeypatch.setattr(threads, "SLOWDOWN", float("inf"))  # nor after a noisy call
    compiled = model._compiled_plan()
    ready, counts, timed, taken = compiled.ready, [], [], []
    compiled.ready = lambda xb, batch_size: counts.append(convforge.get_num_threads()) or ready(xb, batch_size)
    record = threads.ThreadGovernor._record
    monkeypatch.setattr(threads.ThreadGovernor, "_record", lambda self, dt, now: timed.append(dt) or record(self, dt, now))
    take = threads._take_governor
    monkeypatch.setattr(threads, "_take_governor", lambda kind, owner: taken.append(kind) or take(kind, owner))
    n = 3 * threads.TIME_ONE_CALL_IN
    for _ in range(n):
        np.testing.assert_array_equal(model.predict(x, verbose=0), first)
    assert len(timed) == len(taken) == 3 and counts == [2] * n
    gov.current = gov.low  # as after a decision for one thread (a busy machine)
    counts.clear()
    for _ in range(4):
        np.testing.assert_array_equal(model.predict(x, verbose=0), first)
        assert convforge.get_num_threads() == 2
    assert len(timed) == len(taken) == 3 + 4 and counts == [1] * 4
    assert not threads._governing


@needs_openmp
def test_a_batch_on_one_thread_at_any_count_is_not_governed(two_threads_adaptive, monkeypatch):
    # A batch that the plan runs on one thread whatever the count (serial_samples: a one-image
    # LeNet-5) has nothing for the adaptive count to choose: predict, on the one-call path and
    # the general one alike, runs it without the governor; a larger batch is governed.
    from convforge.train import lenet5

    model = lenet5()
    rng = np.random.default_rng(1)
    one = rng.random((1, 28, 28, 1), dtype=np.float32)
    many = rng.random((16, 28, 28, 1), dtype=np.float32)
    expected_one, expected_many = model.predict(one, verbose=0), model.predict(many, verbose=0)
    compiled = model._compiled_plan()
    assert compiled.serial_samples >= 1 and compiled.ready is not None
    taken = []
    take = threads._take_governor
    monkeypatch.setattr(threads, "_take_governor", lambda kind, owner: taken.append(kind) or take(kind, owner))
    for _ in range(3):
        np.testing.assert_array_equal(model.predict(one, verbose=0), expected_one)  # the one-call path
    np.testing.assert_array_equal(model.predict(one.astype(np.float64), verbose=0), expected_one)  # general path
    assert taken == []
    np.testing.assert_array_equal(model.predict(many, verbose=0), expected_many)
    assert taken == ["predict"]
    assert not threads._governing and convforge.get_num_threads() == 2
