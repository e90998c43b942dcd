"""Data-parallel fit on MPI (convforge.distributed).

The ``mpi`` tests launch 2 real ranks (``mpirun -n 2``, tests/mpi_worker.py) and compare
what each rank wrote with the same run in this process; they skip only when mpirun or
mpi4py is missing (``pip install ".[mpi]"``; CI installs it). The rest run everywhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import convforge
from convforge import callbacks, distributed, layers, saving

import mpi_worker as W

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(os.path.dirname(convforge.__file__))


def _have_mpi() -> bool:
    if shutil.which("mpirun") is None:
        return False
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


mpi = pytest.mark.skipif(not _have_mpi(), reason='needs mpirun and mpi4py: pip install ".[mpi]"')


def launch(args, timeout=60, check=True, ranks=2):
    """Run ``mpirun -n 2 <args>``; the CompletedProcess (stdout and stderr together)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PYTHON_DIR, HERE, env.get("PYTHONPATH", "")])
    for name in [k for k in env if k.startswith(("OMPI_COMM_WORLD", "PMIX_", "PMI_"))]:
        del env[name]  # a pytest itself started by a launcher must not confuse the ranks
    if os.geteuid() == 0:  # Open MPI refuses root unless told
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    command = ["mpirun", "-n", str(ranks)]
    if (os.cpu_count() or 1) < ranks:
        command.append("--oversubscribe")
    proc = subprocess.run(
        command + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"mpirun {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
    return proc


def run_scenario(name, outdir, **kwargs):
    proc = launch([sys.executable, os.path.join(HERE, "mpi_worker.py"), name, str(outdir)], **kwargs)
    if not kwargs.get("check", True):
        return proc
    return proc, [np.load(os.path.join(outdir, f"{name}-rank{r}.npz")) for r in (0, 1)]


def assert_ranks_identical(ranks, prefix="w"):
    keys = [k for k in ranks[0].files if k.startswith(prefix)]
    assert keys
    for k in keys:
        np.testing.assert_array_equal(ranks[0][k], ranks[1][k], err_msg=f"{k} differs between the ranks")


def assert_close_weights(model, saved, prefix="w", atol=1e-4):
    for i, w in enumerate(model.get_weights()):
        np.testing.assert_allclose(saved[f"{prefix}{i}"], w, rtol=0, atol=atol, err_msg=f"weight {i}")


def assert_history_close(single: dict, ranks: dict, rtol=1e-5):
    assert single.keys() == ranks.keys()
    for key in single:
        np.testing.assert_allclose(ranks[key], single[key], rtol=rtol, err_msg=key)


# --------------------------------------------------------------------------- without a launcher


def test_single_process_without_launcher(monkeypatch):
    for name in distributed._LAUNCHER_RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched_by_mpi()
    distributed.init()
    distributed.init()  # idempotent
    assert (distributed.rank(), distributed.size(), distributed.is_primary()) == (0, 1, True)
    distributed.barrier()
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    mean = distributed.allreduce_mean(a)
    assert mean.dtype == np.float64 and np.array_equal(mean, a) and not np.shares_memory(mean, a)
    with pytest.raises(TypeError, match="real-valued"):
        distributed.allreduce_mean(np.array(["a"]))


def test_import_and_fit_never_import_mpi4py():
    code = (
        "import sys, numpy as np, convforge, mpi_worker as W\n"
        "from convforge import distributed\n"
        "distributed.init()\n"
        "x, y = W.data(n=32)\n"
        "W.build().fit(x, y, batch_size=16, verbose=0)\n"
        "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PMI_"))}
    env["PYTHONPATH"] = os.pathsep.join([PYTHON_DIR, HERE])
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def test_without_mpi4py_the_message_says_how_to_install(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails as if not installed
    monkeypatch.setattr(distributed, "_state", dict(distributed._state, initialized=False))
    with pytest.raises(ImportError, match=r'pip install "convforge\[mpi\]"'):
        distributed.init()


def test_fit_under_a_launcher_without_init_warns_that_each_process_trains_alone(monkeypatch, request):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    distributed._launcher_world_size.cache_clear()  # read once per process: read it again, and after
    request.addfinalizer(distributed._launcher_world_size.cache_clear)
    monkeypatch.setattr(distributed, "_state", dict(distributed._state, initialized=False, warned=False))
    x, y = W.data(n=32)
    with pytest.warns(RuntimeWarning, match=r"every process trains alone.*distributed.init\(\)"):
        W.build().fit(x, y, batch_size=16, verbose=0)


def test_one_process_skips_a_batch_whose_gradient_is_not_finite_although_its_loss_is():
    """The local strategy path of the step: hardening's gradient check, without MPI."""
    x, y = W.data(n=64)
    x[20, 0, 0, 0] = W.MARK  # batch 2 of 4
    model = W.build_poisoned()
    with pytest.warns(RuntimeWarning, match=r"epoch 1, batch 2: the gradient of 'poison_gradient\w*/alpha' holds NaN"):
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    assert history.skipped_batches == [1, 1]
    assert model.optimizer.iterations == 6
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert np.isfinite(history.history["loss"]).all()  # the loss was finite: only the gradient was not


def test_terminate_on_nan_does_not_silence_a_non_finite_gradient_behind_a_finite_loss():
    """TerminateOnNaN reports (and stops at) a non-finite loss, so fit does not warn about one; a
    NaN gradient with a finite loss it never sees: that batch was skipped every epoch in silence."""
    x, y = W.data(n=64)
    x[20, 0, 0, 0] = W.MARK  # batch 2 of 4
    model = W.build_poisoned()
    stopper = callbacks.TerminateOnNaN()
    with pytest.warns(RuntimeWarning, match=r"epoch 1, batch 2: the gradient of 'poison_gradient\w*/alpha' holds NaN"):
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False, callbacks=[stopper])
    assert history.skipped_batches == [1, 1] and stopper.message is None  # the loss stayed finite
    # A non-finite loss: TerminateOnNaN's message, no warning from fit.
    x, y = W.data(n=64)
    x[20, 0, 0, 0] = np.nan
    stopper = callbacks.TerminateOnNaN()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        W.build().fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False, callbacks=[stopper])
    assert stopper.message.startswith("Epoch 1, batch 2: invalid loss nan")


def test_shards_cover_the_batch_evenly():
    for lo, hi, parts in [(0, 16, 2), (16, 31, 2), (5, 6, 2), (0, 101, 3), (7, 7, 4)]:
        pieces = [distributed._split(lo, hi, parts, r) for r in range(parts)]
        assert pieces[0][0] == lo and pieces[-1][1] == hi
        assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
        sizes = [b - a for a, b in pieces]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_threads_follow_the_binding_and_never_oversubscribe():
    assert distributed.threads_for(1, 2, 2) == 1  # Open MPI: one core per rank
    assert distributed.threads_for(2, 2, 2) == 1  # --bind-to none on 2 cores: 2 / 2
    assert distributed.threads_for(16, 16, 4) == 4
    assert distributed.threads_for(4, 64, 2) == 4  # bound to 4 cores of a big node
    assert distributed.threads_for(8, 4, 8) == 1  # more ranks than CPUs: still 1


# --------------------------------------------------------------------------- 2 real ranks


@mpi
def test_a_stop_before_the_first_batch_on_one_rank_stops_every_rank(tmp_path):
    # Rank 0 broke out after one batch alone and rank 1 waited in the next allreduce for good.
    _, ranks = run_scenario("stop_before_the_first_batch", tmp_path, timeout=120)
    for saved in ranks:
        assert list(saved["epochs"]) == [0, 1] and int(saved["steps"]) == 20 + 1  # epoch 1 stops after a batch


def test_one_rank_alone_evaluates_and_predicts_within_local(tmp_path):
    _, ranks = run_scenario("alone", tmp_path)
    assert "prediction" in ranks[0].files and "prediction" not in ranks[1].files
    model = W.build(seed=0)
    model.set_weights([ranks[0][f"w{i}"] for i in range(len(model.get_weights()))])
    x, y = W.data()
    np.testing.assert_array_equal(ranks[0]["prediction"], model.predict(x[:5], verbose=0))
    assert json.loads(str(ranks[0]["evaluation"])) == model.evaluate(x, y, verbose=0, return_dict=True)


def test_a_second_fit_keeps_the_ranks_identical_whatever_their_layer_names(tmp_path):
    # Rank 0's optimizer state was broadcast keyed by its layer names; rank 1, which names its
    # layers apart, took fresh moments (or another layer's): its weights drifted, silently.
    _, ranks = run_scenario("second_fit", tmp_path)
    assert json.loads(str(ranks[0]["names"])) != json.loads(str(ranks[1]["names"]))
    assert json.loads(str(ranks[0]["metrics"]))[-1] == "mean_io_u_1" != json.loads(str(ranks[1]["metrics"]))[-1]
    assert_ranks_identical(ranks, "w")
    assert_ranks_identical(ranks, "prediction")
    x, y = W.data()
    model = W.build(seed=0, optimizer="adam", metrics=("accuracy", convforge.metrics.MeanIoU(4, sparse_y_pred=False)))
    for _ in range(2):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert_close_weights(model, ranks[0])
    np.testing.assert_allclose(ranks[0]["evaluation"], model.evaluate(x, y, verbose=0), rtol=1e-4)


def test_two_ranks_train_like_one_process_at_the_same_global_batch(tmp_path):
    _, ranks = run_scenario("equivalence", tmp_path)
    # Every rank holds the same weights and predictions, bit for bit (identical reduced gradients).
    assert_ranks_identical(ranks, "w")
    assert_ranks_identical(ranks, "b")
    assert_ranks_identical(ranks, "prediction")
    assert int(ranks[0]["threads"]) == int(ranks[1]["threads"]) == 1  # bound to one core each

    x, y = W.data()
    model = W.build(seed=100)  # rank 0's seed: training starts from the primary's weights
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert int(ranks[0]["iterations"]) == model.optimizer.iterations == 20
    # 20 steps: within 1e-4 (not bit-identical: each rank sums its 8 samples' gradients in the
    # kernels, then the allreduce adds the two halves; one process sums 16 in another order).
    assert_close_weights(model, ranks[0])
    assert_history_close(history.history, json.loads(str(ranks[0]["history"])))
    assert json.loads(str(ranks[0]["history"]))["accuracy"] == history.history["accuracy"]  # exact counts

    x_eval, y_eval = W.data(n=101, seed=3)
    evaluation = json.loads(str(ranks[0]["evaluation"]))
    single = model.evaluate(x_eval, y_eval, batch_size=10, verbose=0, return_dict=True)
    assert evaluation["accuracy"] == single["accuracy"]
    np.testing.assert_allclose(evaluation["loss"], single["loss"], rtol=1e-4)
    prediction = model.predict(x_eval, batch_size=10, verbose=0)
    assert ranks[0]["prediction"].shape == prediction.shape == (101, 4)
    np.testing.assert_allclose(ranks[0]["prediction"], prediction, atol=1e-4)

    # Unequal shards (global batch 15 = 8 + 7, last batch 5 = 3 + 2), Adam, validation data:
    # accuracy must be the exact global fraction, not a mean of the ranks' fractions.
    model2 = W.build(seed=0, optimizer="adam")
    history2 = model2.fit(x, y, batch_size=15, epochs=2, verbose=0, validation_data=(x_eval, y_eval))
    assert_close_weights(model2, ranks[0], prefix="b")
    ranks_history2 = json.loads(str(ranks[0]["history2"]))
    assert_history_close(history2.history, ranks_history2)
    assert ranks_history2["accuracy"] == history2.history["accuracy"]
    assert ranks_history2["val_accuracy"] == history2.history["val_accuracy"]


@mpi
def test_precision_recall_and_auc_are_made_from_the_counts_of_all_ranks(tmp_path):
    """Not the mean of the ranks' values: a precision of 3/4 on one rank and 1/1 on the other is
    4/5, not 7/8 (fit's logs and evaluate, unequal shards and blocks)."""
    _, ranks = run_scenario("counting_metrics", tmp_path)
    assert_ranks_identical(ranks, "w")
    x, y = W.data()
    model = W.build(metrics=W.counting_metrics())
    history = model.fit(x, y, batch_size=15, epochs=1, verbose=0)
    assert_close_weights(model, ranks[0])
    assert_history_close(history.history, json.loads(str(ranks[0]["history"])), rtol=1e-6)
    x_eval, y_eval = W.data(n=101, seed=3)
    single = model.evaluate(x_eval, y_eval, batch_size=10, verbose=0, return_dict=True)
    for r in ranks:
        evaluation = json.loads(str(r["evaluation"]))
        assert evaluation.keys() == single.keys()
        for key in single:
            np.testing.assert_allclose(evaluation[key], single[key], rtol=1e-6, err_msg=key)


@mpi
def test_batch_norm_moving_statistics_stay_the_same_on_every_rank(tmp_path):
    """Each rank normalises its shard by the shard's statistics (as Keras's MirroredStrategy and
    PyTorch's DDP without SyncBatchNorm), but the moving statistics are the count-weighted mean of
    the ranks' updates: identical on every rank (so evaluate, predict and the primary's files agree
    with the other ranks), and the moving mean is the one of the global batch."""
    _, ranks = run_scenario("batch_norm", tmp_path)
    assert_ranks_identical(ranks, "w")
    assert json.loads(str(ranks[0]["evaluation"])) == json.loads(str(ranks[1]["evaluation"]))
    x, y = W.data()
    single = W.build_batch_norm(learning_rate=0.0)
    single.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(ranks[0]["frozen_moving_mean"], single.layers[1].get_weights()[2], rtol=1e-5, atol=1e-7)


@mpi
def test_each_rank_draws_its_own_dropout_masks(tmp_path):
    """Same seed on every rank: without streams of their own, rank 1's shard got exactly the
    dropout masks of rank 0's (sample i of each shard dropped the same units), a correlation one
    process never has. The primary keeps its stream (the shuffles and checkpoints of one process)."""
    _, ranks = run_scenario("random_streams", tmp_path)
    assert_ranks_identical(ranks, "w")
    draws = [r["draws"] for r in ranks]
    assert len(draws[0]) == len(draws[1]) == 20
    assert not np.intersect1d(draws[0], draws[1]).size, "the ranks drew the same random numbers"
    assert json.loads(str(ranks[0]["state_after"])) != json.loads(str(ranks[1]["state_after"]))


@mpi
def test_sample_and_class_weights_train_like_one_process_and_the_rest_is_refused(tmp_path):
    _, ranks = run_scenario("weighted", tmp_path)
    assert_ranks_identical(ranks, "w")
    x, y = W.data()
    weights = np.linspace(0.2, 2.0, len(x))
    model = W.build(seed=0, optimizer="adam")
    history = model.fit(x, y, batch_size=15, epochs=2, verbose=0, sample_weight=weights, class_weight={0: 3.0, 2: 0.5})
    # Each shard's weighted loss is scaled by its share of the global batch: Keras's global rule.
    assert_close_weights(model, ranks[0])
    assert_history_close(history.history, json.loads(str(ranks[0]["history"])))
    single = model.evaluate(x[:101], y[:101], batch_size=10, verbose=0, sample_weight=weights[:101], return_dict=True)
    evaluation = json.loads(str(ranks[0]["evaluation"]))
    assert evaluation["accuracy"] == single["accuracy"]
    np.testing.assert_allclose(evaluation["loss"], single["loss"], rtol=1e-4)
    for r in (0, 1):
        refused = json.loads(str(ranks[r]["refused"]))
        assert set(refused) == {"train_on_batch", "generator", "evaluate_generator"}
        for name, message in refused.items():
            assert message.startswith("convforge.distributed:") and "not supported" in message, (name, message)


@mpi
def test_a_non_finite_batch_is_skipped_on_every_rank(tmp_path):
    proc, ranks = run_scenario("nan", tmp_path)
    assert_ranks_identical(ranks, "w")
    x, y = W.data()
    x[24, 0, 0, 0] = np.nan  # in rank 1's shard of batch 2 only
    model = W.build()
    with pytest.warns(RuntimeWarning, match="epoch 1, batch 2: its loss is nan; the batch was not applied"):
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert model.optimizer.iterations == 19  # one process skips that batch too
    assert_close_weights(model, ranks[0])
    # Counted on every rank as in one process; one warning, from the primary, naming the rank.
    assert history.skipped_batches == [1] and [r["skipped"].tolist() for r in ranks] == [[1], [1]]
    assert proc.stdout.count("batch 2: on rank 1, its loss is nan; the batch was not applied") == 1, proc.stdout
    assert proc.stdout.count("was not applied") == 2  # this one and the poisoned gradient's below

    # A finite loss but a NaN gradient on rank 1 only: skipped on both ranks too, in both epochs.
    x, y = W.data()
    x[24, 0, 0, 0] = W.MARK
    poisoned = W.build_poisoned()
    with pytest.warns(RuntimeWarning, match=r"epoch 1, batch 2: the gradient of 'poison_gradient\w*/alpha' holds NaN"):
        history = poisoned.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    assert history.skipped_batches == [1, 1] and [r["poisoned_skipped"].tolist() for r in ranks] == [[1, 1]] * 2
    assert [int(r["poisoned_iterations"]) for r in ranks] == [poisoned.optimizer.iterations] * 2 == [38, 38]
    assert_ranks_identical(ranks, "p")
    assert_close_weights(poisoned, ranks[0], prefix="p")
    assert all(np.isfinite(w).all() for w in poisoned.get_weights())
    assert re.search(r"batch 2: on rank 1, the gradient of 'poison_gradient\w*/alpha' holds NaN or Inf", proc.stdout)
    # TerminateOnNaN stops both ranks at batch 2 (one update applied), and the primary
    # reports where rank 1 found the NaN.
    assert [int(r["terminated_iterations"]) for r in ranks] == [1, 1]
    assert [int(r["terminated_epochs"]) for r in ranks] == [1, 1]
    assert proc.stdout.count("invalid loss nan") == 1
    assert "On rank 1: The input batch holds NaN" in proc.stdout


@mpi
def test_a_functional_model_with_two_inputs_and_outputs_trains_like_one_process(tmp_path):
    _, ranks = run_scenario("graph", tmp_path)
    for prefix in ("w", "p_cls", "p_reg", "few_cls", "few_reg"):
        assert_ranks_identical(ranks, prefix)
    x, y = W.graph_data()
    model = W.build_graph(seed=100)
    history = model.fit(x, y, batch_size=15, epochs=2, verbose=0, validation_data=W.graph_data(n=41, seed=5))
    assert_close_weights(model, ranks[0])
    ranks_history = json.loads(str(ranks[0]["history"]))
    assert set(ranks_history) == {
        "loss", "cls_loss", "reg_loss", "cls_accuracy", "cls_sparse_categorical_crossentropy", "reg_mae", "reg_rmse",
        "val_loss", "val_cls_loss", "val_reg_loss", "val_cls_accuracy", "val_cls_sparse_categorical_crossentropy",
        "val_reg_mae", "val_reg_rmse",
    }
    assert_history_close(history.history, ranks_history, rtol=1e-4)
    assert ranks_history["cls_accuracy"] == history.history["cls_accuracy"]  # exact global counts
    assert ranks_history["val_cls_accuracy"] == history.history["val_cls_accuracy"]

    x_eval, y_eval = W.graph_data(n=101, seed=3)
    single = model.evaluate(x_eval, y_eval, batch_size=10, verbose=0, return_dict=True)
    evaluation = json.loads(str(ranks[0]["evaluation"]))
    assert evaluation.keys() == single.keys() and evaluation["cls_accuracy"] == single["cls_accuracy"]
    for key in single:
        np.testing.assert_allclose(evaluation[key], single[key], rtol=1e-4, err_msg=key)
    p_cls, p_reg = model.predict(x_eval, batch_size=10, verbose=0)
    assert ranks[0]["p_cls"].shape == p_cls.shape == (101, 4) and ranks[0]["p_reg"].shape == p_reg.shape == (101, 1)
    np.testing.assert_allclose(ranks[0]["p_cls"], p_cls, atol=1e-4)
    np.testing.assert_allclose(ranks[0]["p_reg"], p_reg, atol=1e-4)
    assert ranks[0]["few_cls"].shape == (1, 4) and ranks[0]["few_reg"].shape == (1, 1)
    np.testing.assert_allclose(ranks[0]["few_cls"], p_cls[:1], atol=1e-4)


@mpi
def test_stopping_is_agreed(tmp_path):
    _, ranks = run_scenario("stop", tmp_path)
    x, y = W.data()
    history = W.build().fit(
        x, y, batch_size=16, epochs=10, verbose=0,
        callbacks=[callbacks.EarlyStopping(monitor="loss", min_delta=1e9, patience=1)],
    )
    assert [int(r["early_epochs"]) for r in ranks] == [len(history.epoch)] * 2 == [2, 2]
    # A callback that stops only rank 1 after epoch 3: rank 0 stops there too.
    assert [int(r["rank_stop_epochs"]) for r in ranks] == [3, 3]
    for r in ranks:  # allreduce_mean of [rank, 2 rank, 5] over ranks 0 and 1
        assert r["mean"].dtype == np.float64 and r["mean"].tolist() == [0.5, 1.0, 5.0]


@mpi
def test_only_the_primary_writes_and_resume_works_across_rank_counts(tmp_path):
    x, y = W.data()
    single = W.build()
    single.fit(x, y, batch_size=16, epochs=1, verbose=0)
    single.save(tmp_path / "single-1.npz")
    proc, ranks = run_scenario("writes", tmp_path)
    written = sorted(os.listdir(tmp_path))
    assert written == [
        "ckpt-1.npz", "ckpt-2.npz", "final-weights.npz", "final.npz", "log.csv", "single-1.npz",
        "writes-rank0.npz", "writes-rank1.npz",
    ]  # one copy of each file, no temporary left over
    assert proc.stdout.count("Epoch 1/2") == 1  # one progress bar
    # CSVLogger(append=True) writes on the primary only: one header and one row per epoch.
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["epoch", "0", "1"], rows

    # A 2-rank checkpoint is the file one process writes: same entries and description,
    # weights within 1e-4, and it resumes in one process.
    meta2, arrays2 = saving.read(tmp_path / "ckpt-1.npz")
    meta1, arrays1 = saving.read(tmp_path / "single-1.npz")
    assert sorted(arrays2) == sorted(arrays1)
    for key in ("model", "weights", "compile"):
        assert meta2[key] == meta1[key]
    assert meta2["training"]["rng_state"] == meta1["training"]["rng_state"]
    assert meta2["training"]["epoch"] == 1 and meta2["optimizer"]["iterations"] == 20
    for key in arrays1:
        np.testing.assert_allclose(arrays2[key], arrays1[key], atol=1e-4, err_msg=key)

    uninterrupted = W.build()
    full = uninterrupted.fit(x, y, batch_size=16, epochs=2, verbose=0)
    resumed_here = W.build(seed=9)
    resumed_here.fit(x, y, batch_size=16, epochs=2, verbose=0, resume_from=tmp_path / "ckpt-1.npz")
    assert_close_weights(resumed_here, {f"w{i}": w for i, w in enumerate(uninterrupted.get_weights())})
    # ... and the 1-process checkpoint resumed on 2 ranks.
    assert_ranks_identical(ranks, "w")
    assert_close_weights(uninterrupted, ranks[0])
    assert_history_close(full.history, json.loads(str(ranks[0]["history"])))


@mpi
@pytest.mark.parametrize("runner", [["-m", "mpi4py"], []], ids=["python-m-mpi4py", "plain-python"])
def test_a_rank_that_raises_ends_the_job_with_its_error(tmp_path, runner):
    start = time.monotonic()
    proc = launch([sys.executable, *runner, os.path.join(HERE, "mpi_worker.py"), "raise", str(tmp_path)],
                  check=False, timeout=60)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert "RuntimeError: boom from rank 1 at batch 4" in proc.stdout
    # The other rank waits in an allreduce that will never complete: only the abort ends it.
    # 50 epochs would take far longer than this; the timeout above is the hang detector.
    assert elapsed < 30, f"the job took {elapsed:.1f} s to end"


@mpi
def test_bad_input_raises_the_same_error_on_every_rank(tmp_path):
    _, ranks = run_scenario("bad_input", tmp_path)
    messages = [json.loads(str(r["messages"])) for r in ranks]
    assert messages[0] == messages[1]
    expected = {
        "sizes": "x shape differs between ranks (rank 0: float32 (320, 8, 8, 1); rank 1: float32 (304, 8, 8, 1))",
        "shapes": "x shape differs between ranks (rank 0: float32 (320, 8, 8, 1); rank 1: float32 (320, 8, 8, 2))",
        "content": "x content (checksum of its first, middle and last samples) differs between ranks",
        "batch": "batch_size is the global batch, split between the 2 ranks: it must be at least 2; got 1",
        "architecture": "model (architecture hash) differs between ranks",
        "predict": "x shape differs between ranks (rank 0: float32 (320, 8, 8, 1); rank 1: float32 (319, 8, 8, 1))",
        "evaluate": "x content (checksum of its first, middle and last samples) differs between ranks",
        # Weights of the loss are data too: a global loss from two different weightings is no one's.
        "evaluate_weights": "sample_weight (checksum) differs between ranks",
        "predict_model_weights": "model (weights checksum; fit broadcasts rank 0's, or use distributed.local()) differs",
        "evaluate_model_weights": "model (weights checksum; fit broadcasts rank 0's, or use distributed.local()) differs",
        "predict_architecture": "model (architecture hash) differs between ranks",
        "steps_per_epoch": "steps_per_epoch differs between ranks (rank 0: 2; rank 1: 3)",
        "validation_steps": "validation_steps differs between ranks (rank 0: 1; rank 1: 4)",
        "batch_hooks": "stop_agreed_each_step differs between ranks (rank 0: True; rank 1: False)",
        "resume_from": "the epoch fit starts at (resume_from's checkpoint, or initial_epoch) differs between ranks "
                       "(rank 0: 1; rank 1: 2)",
        "evaluate_metrics": "model (architecture hash) differs between ranks",
        "validation_weights": "validation_data sample weights (checksum) differs between ranks",
        "f1_fit": "convforge.distributed: F1Score ('f1_score') is not supported in a data-parallel run",
        "f1_evaluate": "convforge.distributed: F1Score ('f1_score') is not supported in a data-parallel run",
        "r2_fit": "convforge.distributed: R2Score ('r2_score') is not supported in a data-parallel run",
    }
    for case, text in expected.items():
        assert text in messages[0][case], (case, messages[0][case])


def _fashion_mnist():
    if not os.path.isdir("/usr/share/datasets/fashion-mnist") and not os.environ.get("CONVFORGE_DATA"):
        pytest.skip("Fashion-MNIST is not installed (dataset-fashion-mnist)")


@mpi
def test_the_training_command_runs_unchanged_under_mpirun(tmp_path):
    """python -m convforge.train on 2 ranks (640 images): one report, one set of files."""
    _fashion_mnist()
    out = tmp_path / "run"
    proc = launch(
        [sys.executable, "-m", "mpi4py", "-m", "convforge.train", "--epochs", "1", "--limit-train", "640",
         "--validation-split", "0.25", "--output-dir", str(out), "--no-plots", "--verbose", "2"],
        timeout=180,
    )
    assert proc.stdout.count("test accuracy:") == 1
    assert ", 2 ranks" in proc.stdout and "1 threads" in proc.stdout
    assert sorted(os.listdir(out)) == ["history.json", "lenet5.npz"]
    history = json.loads((out / "history.json").read_text())
    assert len(history["history"]["val_accuracy"]) == 1


@mpi
def test_a_graph_model_s_plots_under_mpirun_end(tmp_path):
    """examples/train_resnet.py with its plots on 2 ranks: rank 0's feature-map predict waited for
    rank 1, which had returned, and the job hung after the filters' plot."""
    _fashion_mnist()
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    script = os.path.join(os.path.dirname(HERE), "examples", "train_resnet.py")
    proc = launch([sys.executable, "-m", "mpi4py", script, "--epochs", "1", "--limit-train", "256", "--limit-test",
                   "256", "--widths", "4,8", "--blocks", "1", "--output-dir", str(out), "--verbose", "2"], timeout=240)
    assert proc.stdout.count("test accuracy:") == 1
    assert "feature_maps.png" in os.listdir(out)


@mpi
@pytest.mark.slow
def test_one_epoch_on_two_ranks_reaches_the_test_accuracy_of_one_process(tmp_path, request):
    """The issue's target: the same test accuracy within 1% after a full Fashion-MNIST epoch.

    ~10 s on a quiet 2-core machine, minutes on a loaded one: runs when selected (pytest -m slow).
    """
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("real-data training: select it with pytest -m slow")
    _fashion_mnist()
    from convforge import train

    args = ["--epochs", "1", "--no-plots", "--verbose", "2"]
    launch([sys.executable, "-m", "mpi4py", "-m", "convforge.train", *args, "--output-dir", str(tmp_path / "mpi")],
           timeout=600)
    assert train.main([*args, "--output-dir", str(tmp_path / "one")]) == 0
    two = json.loads((tmp_path / "mpi" / "history.json").read_text())
    one = json.loads((tmp_path / "one" / "history.json").read_text())
    assert one["test_accuracy"] > 0.8
    assert abs(two["test_accuracy"] - one["test_accuracy"]) <= 0.01, (two["test_accuracy"], one["test_accuracy"])


def test_the_architecture_digest_ignores_names_and_nothing_else():
    """Ranks compare the digest at fit: the same model must give the same one whatever the
    automatic names (numbered per process), and a different model a different one."""
    from convforge.distributed import architecture_hash

    def build(units=4, activation="softmax"):
        x = convforge.Input((6,))
        h = layers.Dense(8, activation=activation)(x)
        heads = [layers.Softmax()(layers.Dense(units)(h)), layers.Dense(1)(h)]  # a layer named softmax(_N)
        model = convforge.Model(x, heads)
        model.compile("sgd", loss=["categorical_crossentropy", "mse"], metrics=[["accuracy"], ["mae"]])
        return model

    first = architecture_hash(build())
    for _ in range(9):  # the next model's names: softmax_10, dense_30 ... (they sort apart from the first's)
        build()
    assert architecture_hash(build()) == first
    assert architecture_hash(build(units=5)) != first
    assert architecture_hash(build(activation="relu")) != first
