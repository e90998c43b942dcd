"""Hardening round 2 (issue 15): model files, non-finite training, threads at exit, empty batches.

Every adversarial case runs in a child process (:func:`run_child`), so that a crash, an abort or
an allocation the OOM killer would punish fails that one test instead of the whole run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import convforge

PACKAGE_ROOT = os.path.dirname(os.path.dirname(convforge.__file__))

# What every child starts with: a small trained-shape model and the names the cases use.
PRELUDE = """
import os, sys, stat, json, io, zipfile, warnings, threading, resource
import numpy as np
import convforge
from convforge import layers
from convforge.saving import ModelFileError

def small_model(seed=0, compile=True):
    convforge.seed(seed)
    model = convforge.Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(5, activation="softmax"),
    ])
    if compile:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.build()
    return model
"""


def run_child(code: str, *, setup: str = "", env=None, timeout=120) -> subprocess.CompletedProcess:
    """Run ``code`` (after PRELUDE and ``setup``) in a fresh interpreter; return the result."""
    full_env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + setup + "\n" + textwrap.dedent(code) + "\nprint('child: done')\n"],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def check_child(code: str = "", **kwargs) -> str:
    """Run ``code`` in a child that must exit with status 0; its stdout."""
    result = run_child(code, **kwargs)
    assert result.returncode == 0, (
        f"child exited with status {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    # The case's own code ran (not swallowed by an indented block of the setup).
    assert result.stdout.endswith("child: done\n"), result.stdout
    return result.stdout


# ============================================================================ 1. save targets


def test_save_refuses_a_fifo_and_leaves_it_a_fifo(tmp_path):
    check_child(
        f"""
        path = {str(tmp_path / "pipe.npz")!r}
        os.mkfifo(path)
        try:
            small_model().save(path)
        except ValueError as err:
            assert "FIFO" in str(err) and path in str(err), err
        else:
            raise AssertionError("save replaced a FIFO")
        assert stat.S_ISFIFO(os.stat(path).st_mode), "the FIFO was replaced"
        assert os.listdir({str(tmp_path)!r}) == ["pipe.npz"], "a temporary file was left"
        """
    )


def test_save_refuses_a_directory_and_a_device_node(tmp_path):
    check_child(
        f"""
        directory = {str(tmp_path / "dir.npz")!r}
        os.mkdir(directory)
        try:
            small_model().save(directory)
        except ValueError as err:
            assert "a directory" in str(err), err
        else:
            raise AssertionError("save accepted a directory")
        # A character device node (root only): as model.save(os.devnull) would meet /dev/null.
        if os.geteuid() == 0:
            node = {str(tmp_path / "null.npz")!r}
            os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
            try:
                small_model().save_weights(node)
            except ValueError as err:
                assert "character device" in str(err), err
            else:
                raise AssertionError("save replaced a device node")
            assert stat.S_ISCHR(os.stat(node).st_mode)
        """
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_loaders_refuse_a_fifo_a_directory_and_a_device_without_waiting(tmp_path):
    # open() of a named pipe with no writer waits for one: load_model and read_idx hung forever
    # (a child with a timeout: a hang fails the test instead of stopping the suite).
    check_child(
        f"""
        from convforge.datasets.idx import read_idx, DatasetError
        try:
            import onnx  # noqa: F401
            suffixes = [".npz", ".onnx"]
        except ImportError:
            suffixes = [".npz"]
        for suffix in suffixes:
            pipe = os.path.join({str(tmp_path)!r}, "pipe" + suffix)
            os.mkfifo(pipe)
            try:
                convforge.load_model(pipe)
            except ModelFileError as err:
                assert "named pipe" in str(err) and pipe in str(err), err
            else:
                raise AssertionError("load_model read a FIFO")
        pipe = os.path.join({str(tmp_path)!r}, "labels.gz")
        os.mkfifo(pipe)
        for path, kind in ((pipe, "named pipe"), ("/dev/zero", "device"), ({str(tmp_path)!r}, "directory")):
            try:
                read_idx(path)
            except DatasetError as err:
                assert kind in str(err), err
            else:
                raise AssertionError("read_idx read " + path)
        try:
            convforge.load_model({str(tmp_path)!r})
        except ModelFileError as err:
            assert "directory" in str(err), err
        else:
            raise AssertionError("load_model read a directory")
        """,
        timeout=60,
    )


def test_save_through_a_symlink_updates_its_target_and_keeps_the_link(tmp_path):
    check_child(
        f"""
        real = {str(tmp_path / "real.npz")!r}
        link = {str(tmp_path / "link.npz")!r}
        small_model(1).save(real)
        os.symlink("real.npz", link)
        model = small_model(2)
        model.save(link)
        assert os.path.islink(link), "the symlink was replaced by a file"
        got = convforge.load_model(real).get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(got, model.get_weights())), "the target was not updated"
        # A dangling link: the file it names is created.
        os.symlink("new.npz", {str(tmp_path / "dangling.npz")!r})
        model.save({str(tmp_path / "dangling.npz")!r})
        assert os.path.isfile({str(tmp_path / "new.npz")!r})
        """
    )


def test_save_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    check_child(
        f"""
        path = {str(tmp_path / "private.npz")!r}
        model = small_model()
        model.save(path)
        os.chmod(path, 0o600)
        model.save(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, oct(os.stat(path).st_mode)
        os.chmod(path, 0o640)
        model.save_weights(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640, oct(os.stat(path).st_mode)
        # A new file gets the umask's mode, as open() gives.
        os.umask(0o027)
        model.save({str(tmp_path / "new.npz")!r})
        assert stat.S_IMODE(os.stat({str(tmp_path / "new.npz")!r}).st_mode) == 0o640
        """
    )


def test_save_works_at_the_file_name_limit(tmp_path):
    check_child(
        f"""
        directory = {str(tmp_path)!r}
        limit = os.pathconf(directory, "PC_NAME_MAX")
        name = "m" * (limit - 4) + ".npz"          # exactly the longest name the file system takes
        model = small_model()
        for _ in range(2):                          # a new file, then a replacement
            model.save(os.path.join(directory, name))
        assert os.listdir(directory) == [name], os.listdir(directory)
        assert convforge.load_model(os.path.join(directory, name)).count_params() == model.count_params()
        """
    )


# ============================================================================ 4, 5. loading bounded and checked

# In the loading children: address space capped (a forged size becomes a MemoryError, never the OOM
# killer), helpers to rewrite a saved file's description or members, and the peak-memory probe.
LOADING = """
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def members(path):
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}

def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()

def write_members(path, entries, compressed=()):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data, zipfile.ZIP_DEFLATED if name in compressed else zipfile.ZIP_STORED)

def meta_of(path):
    return json.loads(np.load(io.BytesIO(members(path)["__meta__.npy"])).tobytes())

def with_meta(path, meta):
    entries = members(path)
    entries["__meta__.npy"] = npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))
    write_members(path, entries)

def expect_refused(path, match, load=convforge.load_model):
    try:
        load(path)
    except ModelFileError as err:
        assert match in str(err) and str(path) in str(err), err
    else:
        raise AssertionError(f"{path} was loaded")
"""


def test_unlisted_members_are_not_read(tmp_path):
    # A 256 MiB zip bomb beside the real arrays, named by nothing in the description.
    check_child(
        setup=LOADING,
        code=f"""
        path = {str(tmp_path / "m.npz")!r}
        model = small_model()
        model.save(path)
        with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf, zf.open("bomb.npy", "w", force_zip64=True) as f:
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {{"descr": "<f4", "fortran_order": False, "shape": (2**26,)}})
            f.write(header.getvalue())
            for _ in range(256):
                f.write(bytes(2**20))
        assert os.path.getsize(path) < 2**20
        before = peak_mib()
        loaded = convforge.load_model(path)
        assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), model.get_weights()))
        assert peak_mib() - before < 64, f"loading a {{os.path.getsize(path)}}-byte file took {{peak_mib() - before}} MiB"
        """
    )


def test_compressed_listed_member_is_refused(tmp_path):
    check_child(
        setup=LOADING,
        code=f"""
        path = {str(tmp_path / "m.npz")!r}
        small_model().save(path)
        entries = members(path)
        write_members(path, entries, compressed={{"weights/0/kernel.npy"}})
        expect_refused(path, "is compressed")
        """
    )


def test_encrypted_listed_member_is_refused(tmp_path):
    """Found by the file fuzz (seed 32): a byte that sets a member's "encrypted" flag made zipfile
    raise RuntimeError ("password required") out of load_model, not a ModelFileError."""
    path = tmp_path / "m.npz"
    model = convforge.Sequential([convforge.Input((3,)), convforge.layers.Dense(2)])
    model.save(path)
    data = bytearray(path.read_bytes())
    name = b"weights/0/kernel.npy"
    at = data.index(b"PK\x01\x02")
    while True:  # the member's central directory entry: its general-purpose flags at offset 8
        n = int.from_bytes(data[at + 28 : at + 30], "little")
        if data[at + 46 : at + 46 + n] == name:
            data[at + 8] |= 0x1
            break
        at = data.index(b"PK\x01\x02", at + 46)
    path.write_bytes(bytes(data))
    with pytest.raises(convforge.saving.ModelFileError, match=r"array 'weights/0/kernel' is encrypted"):
        convforge.load_model(path)


def test_forged_layer_size_is_refused_before_it_is_built(tmp_path):
    # One edited number: Dense(5) -> Dense(5_000_000) is a 2.8 GB kernel; the file holds 3 KB of weights.
    check_child(
        setup=LOADING,
        code=f"""
        path = {str(tmp_path / "m.npz")!r}
        small_model().save(path)
        meta = meta_of(path)
        meta["model"]["config"]["layers"][3]["config"]["units"] = 5_000_000
        with_meta(path, meta)
        before = peak_mib()
        expect_refused(path, "more weight memory than the file holds")
        assert peak_mib() - before < 64, peak_mib() - before
        """
    )


def test_forged_array_header_and_huge_input_shape_are_refused(tmp_path):
    check_child(
        setup=LOADING,
        code=f"""
        path = {str(tmp_path / "m.npz")!r}
        small_model().save(path)
        # A header (and description) declaring a terabyte array over 20 bytes of data.
        meta = meta_of(path)
        meta["weights"][0]["shape"] = [2**20, 2**20]
        with_meta(path, meta)
        entries = members(path)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {{"descr": "<f4", "fortran_order": False, "shape": (2**20, 2**20)}})
        entries["weights/0/kernel.npy"] = header.getvalue() + bytes(20)
        write_members(path, entries)
        expect_refused(path, "declares 4398046511104 bytes of data")
        # A huge declared input image: the first layer's weights would not be huge, the sample is.
        small_model().save(path)
        meta = meta_of(path)
        meta["model"]["config"]["input_shape"] = [2**20, 2**20, 1]
        with_meta(path, meta)
        expect_refused(path, "cannot rebuild")
        """
    )


def test_load_errors_are_model_file_errors_with_the_path(tmp_path):
    # The exceptions seen before: RecursionError, AttributeError, KeyError, TypeError, bare ValueError.
    check_child(
        setup=LOADING,
        code=f"""
        path = {str(tmp_path / "m.npz")!r}
        cases = {{
            "deep": lambda m: m["model"]["config"].__setitem__("name", "DEEP"),  # nested 50,000 deep below
            "layer-not-dict": lambda m: m["model"]["config"]["layers"].__setitem__(0, 7),
            "config-not-dict": lambda m: m["model"]["config"]["layers"][0].__setitem__("config", [1]),
            "no-class": lambda m: m["model"]["config"]["layers"][0].pop("class_name"),
            "bad-kwarg": lambda m: m["model"]["config"]["layers"][0]["config"].__setitem__("banana", 1),
            "bad-dtype": lambda m: m["model"]["config"].__setitem__("dtype", "banana"),
            "bad-shape": lambda m: m["weights"][0].__setitem__("shape", "x"),
            "neg-shape": lambda m: m["weights"][0].__setitem__("shape", [-1, 3]),
            "optimizer": lambda m: m["compile"]["optimizer"].__setitem__("config", {{"learning_rate": "x"}}),
            "loss": lambda m: m["compile"].__setitem__("loss", [1]),
            "slots": lambda m: m["optimizer"].__setitem__("slots", [{{"variable": 1}}]),
            "history": lambda m: m["training"].__setitem__("history", {{"loss": 3}}),
            "epoch": lambda m: m["training"].__setitem__("epoch", "x"),
        }}
        failures = []
        for name, mutate in cases.items():
            small_model().save(path)
            meta = meta_of(path)
            mutate(meta)
            raw = json.dumps(meta).replace('"DEEP"', "[" * 50000 + "]" * 50000)
            entries = members(path)
            entries["__meta__.npy"] = npy(np.frombuffer(raw.encode(), np.uint8))
            write_members(path, entries)
            try:
                convforge.load_model(path)
                failures.append(f"{{name}}: loaded")
            except ModelFileError as err:
                if path not in str(err):
                    failures.append(f"{{name}}: no path in {{err}}")
            except BaseException as err:
                failures.append(f"{{name}}: {{type(err).__name__}}: {{str(err)[:200]}}")
        assert not failures, "\\n".join(failures)
        """
    )


# The fuzzer's mutations of a description: a random value anywhere in the JSON tree is replaced,
# deleted, or wrapped; values of every JSON kind and of hostile sizes.
FUZZ = """
import copy
import random

HOSTILE = [None, True, -1, 0, 2**31, 2**63, 10**30, -(10**30), 1e308, -0.0, "", "x" * 300, "float64", [], {},
           [0], [-1, 3], [2**40, 2**40], {"a": 1}, [[[[[]]]]], "banana", 3.5]

def paths(tree, prefix=()):
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree[:6]):
            yield from paths(v, prefix + (i,))

def mutate(meta, rng):
    meta = json.loads(json.dumps(meta))
    for _ in range(rng.choice([1, 1, 2, 3])):
        chosen = rng.choice([p for p in paths(meta) if p])
        parent = meta
        for k in chosen[:-1]:
            parent = parent[k]
        key = chosen[-1]
        action = rng.random()
        if action < 0.15 and isinstance(parent, dict):
            del parent[key]
        elif action < 0.25:
            parent[key] = [parent[key]]
        elif action < 0.35 and isinstance(parent[key], int) and not isinstance(parent[key], bool):
            parent[key] = parent[key] * rng.choice([10**6, -1, 2**20]) + rng.choice([0, 1])
        else:
            # A copy: a later mutation of this round may reach inside it, and must not change
            # HOSTILE's own object (a list made to hold itself, which `paths` then never leaves).
            parent[key] = copy.deepcopy(rng.choice(HOSTILE))
    return meta

def flip_bytes(data, rng):
    data = bytearray(data)
    if rng.random() < 0.2:
        return bytes(data[: rng.randrange(len(data))])
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)
"""


def _fuzz_examples() -> int:
    return int(os.environ.get("CONVFORGE_FUZZ_EXAMPLES", "400"))


def test_fuzz_loading_mutated_files_raises_only_model_file_error(tmp_path):
    """load_model and load_weights on mutated descriptions and bytes: a model or a ModelFileError."""
    out = check_child(
        setup=LOADING + FUZZ,
        code=f"""
        path = {str(tmp_path / "m.npz")!r}
        model = small_model()
        x = np.random.default_rng(0).random((16, 8, 8, 1), np.float32)
        y = np.arange(16) % 5
        es = convforge.callbacks.EarlyStopping(monitor="loss", restore_best_weights=True)
        model.fit(x, y, epochs=1, verbose=0, callbacks=[es])
        model._fit_callbacks = [es]           # so that the saved file holds callback state too
        model.save(path)
        model._fit_callbacks = []
        good_bytes = open(path, "rb").read()
        good_meta = meta_of(path)
        rng = random.Random(int(os.environ.get("FUZZ_SEED", "0")))
        outcomes = {{}}
        failures = []
        before = peak_mib()
        for i in range({_fuzz_examples()}):
            if i % 4 == 3:
                with open(path, "wb") as f:
                    f.write(flip_bytes(good_bytes, rng))
                what = "bytes"
            else:
                with open(path, "wb") as f:
                    f.write(good_bytes)
                with_meta(path, mutate(good_meta, rng))
                what = "json"
            for load in (convforge.load_model, small_model(compile=False).load_weights):
                try:
                    load(path)
                    outcome = "loaded"
                except ModelFileError as err:
                    outcome = "ModelFileError"
                    if path not in str(err):
                        failures.append(f"example {{i}} ({{what}}): no path in {{err}}")
                except Warning:
                    outcome = "warning"       # a custom optimizer/learning rate the file does not hold
                except BaseException as err:
                    outcome = type(err).__name__
                    failures.append(f"example {{i}} ({{what}}): {{type(err).__name__}}: {{str(err)[:300]}}")
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        print("fuzz-load:", sorted(outcomes.items()), "peak growth MiB", round(peak_mib() - before))
        assert not failures, "\\n".join(failures[:20])
        assert outcomes.get("ModelFileError", 0) > {_fuzz_examples()} // 2, outcomes
        assert peak_mib() - before < 256, peak_mib() - before
        """,
        timeout=600,
    )
    print(out)


def test_resume_from_a_bad_file_changes_nothing(tmp_path):
    """fit(resume_from=bad) leaves weights, optimizer state, callbacks and the random state alone."""
    check_child(
        setup=LOADING + FUZZ,
        code=f"""
        path = {str(tmp_path / "m.npz")!r}
        x = np.random.default_rng(0).random((16, 8, 8, 1), np.float32)
        y = np.arange(16) % 5
        donor = small_model(1)
        es = convforge.callbacks.EarlyStopping(monitor="loss", patience=5)
        donor.fit(x, y, epochs=2, verbose=0, callbacks=[es])
        donor._fit_callbacks = [es]
        donor.save(path)
        good_meta = meta_of(path)
        good_bytes = open(path, "rb").read()
        model = small_model(2)
        model.fit(x, y, epochs=1, verbose=0)
        rng = random.Random(1)
        refused = 0
        for i in range(60):
            with open(path, "wb") as f:
                f.write(good_bytes)
            meta = mutate(good_meta, rng)
            # The parts read last: random state, callback state, optimizer slots (unless mutate
            # already broke the path there: the file is bad either way; which paths mutate picks
            # depends on how many keys the metadata has).
            try:
                if i % 3 == 0:
                    meta["training"]["rng_state"]["state"]["state"] = rng.choice([-1, "x", None, 2**200])
                elif i % 3 == 1:
                    meta["training"]["callbacks"][0]["state"] = rng.choice([{{}}, {{"wait": "x"}}, None, 3])
            except (KeyError, IndexError, TypeError):
                pass
            with_meta(path, meta)
            weights = model.get_weights()
            iterations, slots = model.optimizer.get_state()
            slots = {{k: v.copy() for k, v in slots.items()}}
            rng_state = convforge.random.get_state()
            callback = convforge.callbacks.EarlyStopping(monitor="loss", patience=5)
            callback_before = dict(vars(callback))
            try:
                model.fit(x, y, epochs=3, verbose=0, callbacks=[callback], resume_from=path)
                model = small_model(2)          # resumed: start again from a fresh model
                model.fit(x, y, epochs=1, verbose=0)
                continue
            except ModelFileError:
                refused += 1
            assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights)), f"example {{i}}: weights"
            it2, slots2 = model.optimizer.get_state()
            assert it2 == iterations and slots2.keys() == slots.keys(), f"example {{i}}: optimizer"
            assert all(np.array_equal(slots[k], slots2[k]) for k in slots), f"example {{i}}: optimizer slots"
            assert convforge.random.get_state() == rng_state, f"example {{i}}: random state"
            assert vars(callback).keys() == callback_before.keys() and all(
                vars(callback)[k] is callback_before[k] or vars(callback)[k] == callback_before[k]
                for k in callback_before
            ), f"example {{i}}: callback state"
        assert refused >= 30, refused
        """,
        timeout=600,
    )


# ============================================================================ 3. exit while a kernel runs

EXIT_WORKLOADS = {
    "functional": """
        from convforge import functional as F
        x = np.random.default_rng(0).random((8, 16, 32, 32), np.float32)
        w = np.random.default_rng(1).random((16, 16, 3, 3), np.float32)
        d = np.random.default_rng(2).random((64, 512), np.float32)
        def work():
            while True:
                y = F.conv2d(x, w, padding=1)
                F.conv2d_backward(y, x, w, padding=1)
                F.max_pool2d(F.relu(y), 2, return_indices=True)
                F.dense(d, d.T.copy())
    """,
    "predict": """
        model = small_model()
        x = np.random.default_rng(0).random((256, 8, 8, 1), np.float32)
        def work():
            while True:
                model.predict(x, verbose=0)
    """,
    "fit": """
        model = small_model()
        x = np.random.default_rng(0).random((256, 8, 8, 1), np.float32)
        y = np.arange(256) % 5
        def work():
            while True:
                model.fit(x, y, epochs=1, verbose=0)
    """,
}


@pytest.mark.parametrize("workload", sorted(EXIT_WORKLOADS))
def test_exit_while_a_daemon_thread_is_inside_a_kernel(workload):
    """The interpreter finalises while daemon threads run kernels: exit status 0, as with NumPy.

    Before the fix: "terminate called without an active exception", status 134 (pybind11's
    gil_scoped_release met CPython's pthread_exit of the thread: csrc/bindings/gil.h).
    """
    for delay in (0.0, 0.02, 0.05, 0.13):
        result = run_child(
            textwrap.dedent(EXIT_WORKLOADS[workload])
            + textwrap.dedent(
                f"""
                import time
                convforge.set_num_threads(2)
                for _ in range(2):
                    threading.Thread(target=work, daemon=True).start()
                time.sleep({delay})
                """
            ),
            timeout=120,
        )
        assert result.returncode == 0 and "terminate" not in result.stderr, (
            f"exit after {delay} s: status {result.returncode}\n{result.stderr[-2000:]}"
        )


# ============================================================================ 9. busy machines; 7. thread settings

needs_openmp = pytest.mark.skipif(not convforge.build_info()["openmp"], reason="a build without OpenMP has no wait policy")


@needs_openmp
@pytest.mark.parametrize("user", [None, {"GOMP_SPINCOUNT": "12345"}, {"OMP_WAIT_POLICY": "passive"}])
def test_openmp_wait_policy_is_the_users_or_libgomps(user):
    """libgomp's own report (OMP_DISPLAY_ENV) shows the spin count it started with.

    convforge leaves libgomp's wait policy alone (its default spin, or the user's choice): a
    short spin (1,000, set while the kernels loaded, until 2026-12-03) helped only a busy machine
    and cost a quiet one; fit's adaptive thread count handles the busy machine instead
    (tests/test_adaptive_threads.py, bench/busy_machine.md).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(user or {})
    env["OMP_DISPLAY_ENV"] = "verbose"
    env["PYTHONPATH"] = PACKAGE_ROOT
    code = "import os, convforge; print('after', os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    spin = [line.split("=")[1].strip() for line in result.stderr.splitlines() if "GOMP_SPINCOUNT" in line]
    if user is None:
        assert spin == ["'300000'"], result.stderr  # libgomp's default
        assert "after None None" in result.stdout
    elif "GOMP_SPINCOUNT" in user:
        assert spin == ["'12345'"], result.stderr
        assert "after 12345 None" in result.stdout
    else:  # OMP_WAIT_POLICY=passive: libgomp does not spin, as the user asked
        assert spin == ["'0'"], result.stderr


@pytest.mark.parametrize("value", ["banana", "4abc", "0", "-2", "+3", "2.5", "", "99999"])
def test_invalid_convforge_num_threads_warns_and_is_ignored(value):
    result = run_child(
        "print('threads', convforge.get_num_threads())", env={"CONVFORGE_NUM_THREADS": value, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr
    assert "RuntimeWarning: CONVFORGE_NUM_THREADS=" in result.stderr and "is ignored" in result.stderr, result.stderr
    assert "threads 1" in result.stdout  # OMP_NUM_THREADS, the next source, not a misread 4 or 3


def test_valid_convforge_num_threads_is_used_silently():
    result = run_child(
        "print('threads', convforge.get_num_threads())", env={"CONVFORGE_NUM_THREADS": " 3 ", "PYTHONWARNINGS": "error"}
    )
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
    assert f"threads {3 if convforge.build_info()['openmp'] else 1}" in result.stdout


# ============================================================================ 2. non-finite weights


def test_overflowing_update_stops_fit_and_keeps_the_good_checkpoint(tmp_path):
    check_child(
        f"""
        path = {str(tmp_path / "ck.npz")!r}
        x = np.random.default_rng(0).random((64, 8, 8, 1), np.float32)
        y = np.arange(64) % 5
        model = small_model()
        model.compile(optimizer=convforge.optimizers.SGD(learning_rate=0.01), loss="sparse_categorical_crossentropy")
        checkpoint = convforge.callbacks.ModelCheckpoint(path, monitor="loss")
        model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
        good = convforge.load_model(path).get_weights()
        model.optimizer.learning_rate = 1e38           # finite gradients, overflowing updates
        x = x * 1000                                   # and large ones
        try:
            model.fit(x, y, epochs=3, verbose=0, callbacks=[checkpoint])
        except FloatingPointError as err:
            message = str(err)
        else:
            raise AssertionError("fit returned normally with non-finite weights")
        assert "became NaN or Inf" in message and "of layer '" in message, message
        # The checkpoint of the good epoch was not overwritten, and still loads.
        loaded = convforge.load_model(path).get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(loaded, good))
        # Saving and loading agree: neither accepts NaN/Inf weights.
        try:
            model.save({str(tmp_path / "bad.npz")!r})
        except ValueError as err:
            assert "NaN or infinite" in str(err) and "layer '" in str(err), err
        else:
            raise AssertionError("a model with non-finite weights was saved")
        assert not os.path.exists({str(tmp_path / "bad.npz")!r})
        """
    )


def test_a_non_finite_batch_is_skipped_with_one_warning_and_counted(tmp_path):
    check_child(
        """
        x = np.random.default_rng(0).random((64, 8, 8, 1), np.float32)
        x[5, 2, 2, 0] = np.nan          # batch 1 of 4
        x[40, 1, 1, 0] = np.inf         # batch 3
        y = np.arange(64) % 5
        model = small_model()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        skipped = [w for w in seen if "was not applied" in str(w.message)]
        assert len(skipped) == 1 and issubclass(skipped[0].category, RuntimeWarning), [str(w.message) for w in seen]
        assert "epoch 1, batch 1" in str(skipped[0].message), skipped[0].message
        assert history.skipped_batches == [2, 2], history.skipped_batches
        assert all(np.isfinite(w).all() for w in model.get_weights())
        """
    )


def test_a_skipped_batch_leaves_batch_norm_moving_statistics_alone(tmp_path):
    # The batch's update was skipped, but the forward pass had already moved BatchNormalization's
    # moving mean and variance to NaN: every later predict was NaN, and ModelCheckpoint refused
    # to save and ended fit.
    check_child(
        f"""
        x = np.random.default_rng(0).random((64, 8, 8, 1), np.float32)
        x[20, 3, 3, 0] = np.nan         # batch 2 of 4
        y = np.arange(64) % 5
        convforge.seed(0)
        model = convforge.Sequential([
            layers.Conv2D(4, 3, input_shape=(8, 8, 1)), layers.BatchNormalization(), layers.ReLU(),
            layers.Flatten(), layers.Dense(5, activation="softmax"),
        ])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        checkpoint = convforge.callbacks.ModelCheckpoint({str(tmp_path / "ck.npz")!r}, monitor="loss")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[checkpoint])
        assert history.skipped_batches == [1, 1], history.skipped_batches
        assert all(np.isfinite(w).all() for w in model.get_weights())
        assert np.isfinite(model.predict(x[:4], verbose=0)).all()
        assert np.isfinite(convforge.load_model({str(tmp_path / "ck.npz")!r}).predict(x[:4], verbose=0)).all()
        # The clean batches still move the statistics (6 of them: 1 - 0.99**6 of the way from the start).
        assert not np.allclose(model.layers[1].get_weights()[2], 0.0)
        """
    )


# ============================================================================ 6. predict during fit


def test_predict_from_another_thread_during_fit_is_safe():
    check_child(
        """
        def model_and_data():
            convforge.seed(0)
            model = convforge.Sequential([
                layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
                layers.MaxPooling2D(2),
                layers.AveragePooling2D(1),
                layers.Flatten(),
                layers.Dropout(0.3),
                layers.Dense(8, activation="relu"),
                layers.Reshape((8,)),
                layers.Dense(5, activation="softmax"),
            ])
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            return model
        x = np.random.default_rng(0).random((512, 8, 8, 1), np.float32)
        y = np.arange(512) % 5
        alone = model_and_data()
        alone.fit(x, y, epochs=3, batch_size=16, verbose=0)

        model = model_and_data()
        errors = []
        started = threading.Event()

        final = []

        class Started(convforge.callbacks.Callback):
            def on_train_begin(self, logs=None):
                started.set()

            def on_train_end(self, logs=None):  # still inside fit: main's refused calls may run after it
                final.append(self.model.get_weights())

        def train():
            try:
                model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[Started()])
            except BaseException as err:
                errors.append(err)
            finally:
                started.set()
        thread = threading.Thread(target=train)
        thread.start()
        started.wait()  # from here on the other thread's fit owns the model
        calls = refused = 0
        while thread.is_alive():
            model.predict(x[:40], verbose=0)
            model(x[:3])
            model.activations(x[:2])
            calls += 1
            for other in (lambda: model.evaluate(x[:8], y[:8], verbose=0), lambda: model.fit(x[:8], y[:8], verbose=0)):
                try:
                    other()
                except RuntimeError as err:
                    assert "another thread" in str(err), err
                    refused += 1
        thread.join()
        assert not errors, errors
        assert calls > 3 and refused > 0, (calls, refused)
        # Inference in between changed nothing: the same weights as a fit alone, bit for bit.
        assert all(np.array_equal(a, b) for a, b in zip(final[0], alone.get_weights()))
        """
    )


def test_calls_sharing_the_metrics_are_refused_while_another_thread_evaluates():
    # evaluate, test_on_batch, train_on_batch and fit all tally into the model's compiled metrics:
    # while one thread's evaluate runs, another thread's such call is refused (two evaluates at
    # once each returned accuracies mixed with the other's samples); predict is not.
    check_child(
        """
        model = small_model()
        x = np.random.default_rng(0).random((64, 8, 8, 1), np.float32)
        y = np.arange(64) % 5
        want = model.evaluate(x, y, batch_size=8, verbose=0)
        inside, release = threading.Event(), threading.Event()

        class Hold(convforge.callbacks.Callback):
            def on_test_batch_end(self, batch, logs=None):
                if batch == 3:
                    inside.set()
                    release.wait(60)

        got = []
        thread = threading.Thread(target=lambda: got.append(
            model.evaluate(x, y, batch_size=8, verbose=0, callbacks=[Hold()])))
        thread.start()
        assert inside.wait(60)
        refused = []
        for name, call in (("evaluate", lambda: model.evaluate(x[:8], y[:8], verbose=0)),
                           ("test_on_batch", lambda: model.test_on_batch(x[:8], y[:8])),
                           ("train_on_batch", lambda: model.train_on_batch(x[:8], y[:8])),
                           ("fit", lambda: model.fit(x[:8], y[:8], verbose=0))):
            try:
                call()
            except RuntimeError as err:
                assert "evaluate runs in another thread" in str(err) and name in str(err), err
                refused.append(name)
        model.predict(x[:4], verbose=0)
        release.set()
        thread.join()
        assert refused == ["evaluate", "test_on_batch", "train_on_batch", "fit"], refused
        assert got == [want], (got, want)
        # and after it, they all run again
        assert model.evaluate(x, y, batch_size=8, verbose=0) == want
        model.fit(x[:8], y[:8], verbose=0)

        # two threads evaluating at once: every answer given is the serial one
        want = model.evaluate(x, y, batch_size=8, verbose=0)
        answers, errors = [], []
        def evaluate_some():
            for _ in range(20):
                try:
                    answers.append(model.evaluate(x, y, batch_size=8, verbose=0))
                except RuntimeError as err:
                    errors.append(str(err))
        threads_ = [threading.Thread(target=evaluate_some) for _ in range(2)]
        for t in threads_:
            t.start()
        for t in threads_:
            t.join()
        assert answers and all(a == want for a in answers), [a for a in answers if a != want][:3]
        assert all("evaluate runs in another thread" in e for e in errors), errors[:3]
        """
    )


def test_a_model_sharing_a_layer_with_one_another_thread_fits_is_refused_training():
    # A layer keeps its training forward's caches for its backward: a fit of a second model that
    # shares it, in another thread, replaced them (wrong-shape errors, "backward() needs a
    # forward first", or with equal batch sizes silently the other model's batch in the
    # gradients). It is refused, naming the layer; predict is not, and the same thread may.
    check_child(
        """
        convforge.seed(0)
        shared = layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1))
        def model_with(head_units):
            model = convforge.Sequential([shared, layers.Flatten(), layers.Dense(head_units, activation="softmax")])
            model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
            return model
        a, b = model_with(5), model_with(5)
        x = np.random.default_rng(0).random((64, 8, 8, 1), np.float32)
        y = np.arange(64) % 5
        inside, release = threading.Event(), threading.Event()

        class Hold(convforge.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch == 1:
                    inside.set()
                    release.wait(60)

        errors = []
        def train_a():
            try:
                a.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[Hold()])
            except BaseException as err:
                errors.append(err)
            finally:
                inside.set()
        thread = threading.Thread(target=train_a)
        thread.start()
        assert inside.wait(60)
        refused = []
        for name, call in (("fit", lambda: b.fit(x, y, batch_size=8, verbose=0)),
                           ("train_on_batch", lambda: b.train_on_batch(x[:8], y[:8]))):
            try:
                call()
            except RuntimeError as err:
                assert name in str(err) and repr(shared.name) in str(err) and "another thread" in str(err), err
                refused.append(name)
        b.predict(x[:4], verbose=0)
        release.set()
        thread.join()
        assert not errors, errors
        assert refused == ["fit", "train_on_batch"], refused
        b.fit(x, y, batch_size=8, verbose=0)  # free again

        class FitOther(convforge.callbacks.Callback):  # the same thread: one step at a time, allowed
            def on_train_batch_end(self, batch, logs=None):
                if batch == 0:
                    b.fit(x[:16], y[:16], batch_size=8, verbose=0)
        a.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[FitOther()])
        """
    )


def test_a_child_forked_while_another_thread_fits_can_fit_and_evaluate():
    # Only the forking thread lives on in the child: the parent's fit in another thread is not
    # running there, so the child's copy of the model must not stay held by it (evaluate and fit
    # raised "fit runs in another thread" in the child forever). A fork from a fit callback
    # (the forking thread's own fit) still holds the model in the child.
    check_child(
        """
        model = small_model()
        x = np.random.default_rng(0).random((256, 8, 8, 1), np.float32)
        y = np.arange(256) % 5
        started, release = threading.Event(), threading.Event()

        class Hold(convforge.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                started.set()
                release.wait(60)

        thread = threading.Thread(target=lambda: model.fit(x, y, epochs=1, batch_size=16, verbose=0,
                                                           callbacks=[Hold()]))
        thread.start()
        assert started.wait(60)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                model.evaluate(x[:16], y[:16], verbose=0)
                model.fit(x[:32], y[:32], epochs=1, verbose=0)
                code = 0
            except BaseException as err:
                print("child:", type(err).__name__, err, flush=True)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        release.set()
        thread.join()
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status

        class ForkInside(convforge.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch:
                    return
                pid = os.fork()
                if pid == 0:
                    try:
                        model.fit(x[:8], y[:8], verbose=0)
                    except RuntimeError as err:
                        os._exit(0 if "inside this model's fit" in str(err) else 2)
                    os._exit(1)
                _, status = os.waitpid(pid, 0)
                assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status

        model.fit(x[:32], y[:32], epochs=1, batch_size=16, verbose=0, callbacks=[ForkInside()])
        """,
        timeout=180,
    )


# ============================================================================ 7. the smaller ones


def test_small_misuses_get_clear_errors():
    check_child(
        """
        def refused(call, kind, *words):
            try:
                call()
            except kind as err:
                assert all(w in str(err) for w in words), (words, str(err))
            else:
                raise AssertionError(f"accepted: {words}")

        # dtype: a bad name was a model of dtype None (np.dtype(None) == float64 compared equal to None)
        for bad in ("banana", 1.5, "float16", "float32\\x00", object()):
            refused(lambda: convforge.Sequential(dtype=bad), ValueError, "dtype must be 'float32' or 'float64'")
        assert convforge.Sequential(dtype=None).dtype == np.float32          # Keras's default
        model = small_model()
        refused(lambda: model.astype("banana"), ValueError, "dtype")
        # mse: NaN targets trained on NaN
        reg = convforge.Sequential([layers.Dense(2, input_shape=(3,))])
        reg.compile(optimizer="sgd", loss="mse")
        y = np.zeros((4, 2)); y[2, 1] = np.nan
        refused(lambda: reg.fit(np.ones((4, 3)), y, verbose=0), ValueError, "targets must be finite", "(2, 1)")
        refused(lambda: reg.evaluate(np.ones((4, 3)), y, verbose=0), ValueError, "targets must be finite")
        # ModelCheckpoint patterns fail at construction, not after an epoch
        for bad in ("ck{0}.npz", "ck{}.npz", "ck{epoch:q}.npz", "ck{epoch"):
            refused(lambda: convforge.callbacks.ModelCheckpoint(bad), ValueError, "not a valid pattern", bad)
        # gradient check steps
        from convforge.gradcheck import check_model_gradients
        for eps in (0, -1e-6, float("nan"), float("inf"), True):
            refused(lambda: check_model_gradients(reg, np.ones((2, 3)), np.zeros((2, 2)), eps=eps), ValueError, "eps")
        # mixed data_format: the message says data_format
        refused(
            lambda: convforge.Sequential([layers.Conv2D(4, 3, input_shape=(8, 8, 1), name="first"),
                                          layers.Conv2D(4, 3, data_format="channels_first", name="second")]),
            ValueError, "data_format='channels_first'", "'second' says so", "'first'",
        )
        refused(
            lambda: convforge.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(4, 3, data_format="channels_first")]),
            ValueError, "data_format='channels_first'", "(channels, height, width)",
        )
        # a huge input_shape: the layer, the weight and its size, not NumPy's bare message
        refused(
            lambda: convforge.Sequential([layers.Flatten(input_shape=(2**40, 2**40, 1)), layers.Dense(2)]),
            ValueError, "layer 'dense", "weight 'kernel'", "GiB", "input_shape",  # dense_N: the process's Nth
        )
        refused(
            lambda: convforge.Sequential([layers.Flatten(input_shape=(10**6, 10**6, 3)), layers.Dense(2)]),
            MemoryError, "layer 'dense", "weight 'kernel'", "GiB",
        )
        """
    )


# ============================================================================ 8. empty batches

import numpy as np  # noqa: E402

from convforge import functional as F  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_functional_op_takes_an_empty_batch(dtype):
    """Zero images in, an empty result of the shape one image gives (with N = 0) out, as PyTorch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x1 = rng.random((1, 3, 9, 9)).astype(dtype)
    w = rng.random((4, 3, 3, 3)).astype(dtype)
    b = rng.random(4).astype(dtype)
    x0 = x1[:0]
    y1 = F.conv2d(x1, w, b, stride=2, padding=1)
    y0 = F.conv2d(x0, w, b, stride=2, padding=1)
    assert y0.shape == (0, *y1.shape[1:]) and y0.dtype == dtype
    t = torch.nn.functional.conv2d(torch.from_numpy(x0), torch.from_numpy(w), torch.from_numpy(b), stride=2, padding=1)
    assert tuple(t.shape) == y0.shape
    dx, dw, db = F.conv2d_backward(y0, x0, w, stride=2, padding=1)
    assert dx.shape == x0.shape and dw.shape == w.shape and db.shape == (4,)
    assert not dw.any() and not db.any()  # a sum over no images
    assert F.conv2d_backward(y0, x0, w, stride=2, padding=1, need_input_grad=False, need_bias_grad=False)[::2] == (None, None)
    p1 = F.max_pool2d(x1, 2, ceil_mode=True)
    p0, i0 = F.max_pool2d(x0, 2, ceil_mode=True, return_indices=True)
    assert p0.shape == (0, *p1.shape[1:]) and i0.shape == p0.shape and i0.dtype == np.int64
    assert tuple(torch.nn.functional.max_pool2d(torch.from_numpy(x0), 2, ceil_mode=True).shape) == p0.shape
    assert F.max_pool2d_backward(p0, i0, x0.shape).shape == x0.shape
    d0, wd = x0.reshape(0, 243), rng.random((243, 5)).astype(dtype)
    assert F.dense(d0, wd).shape == (0, 5)
    ddx, ddw, ddb = F.dense_backward(np.zeros((0, 5), dtype), d0, wd)
    assert ddx.shape == (0, 243) and ddw.shape == wd.shape and not ddw.any() and ddb.shape == (5,)
    assert F.relu(x0).shape == x0.shape and F.relu_backward(x0, x0).shape == x0.shape
    assert F.relu(x0, out=np.empty_like(x0)).shape == x0.shape
    # Only the batch axis may be empty.
    with pytest.raises(ValueError, match="x is empty"):
        F.conv2d(x1[:, :0], w[:, :0])
    with pytest.raises(ValueError, match="w is empty"):
        F.conv2d(x0, w[:0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_per_channel_functional_op_takes_an_empty_batch(dtype):
    """The per-channel ops (batch norm, global pooling, depthwise conv) too: zero images in, an empty
    result out; gradients of weights are sums over nothing (zeros); batch statistics of nothing are NaN."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x0 = rng.random((1, 3, 7, 7)).astype(dtype)[:0]
    g = rng.random(3).astype(dtype) + 0.5
    y, mean, var = F.batch_norm(x0, g, g)
    assert y.shape == x0.shape and y.dtype == dtype and np.isnan(mean).all() and np.isnan(var).all()
    out_mean, out_var = np.zeros(3, dtype), np.zeros(3, dtype)
    assert F.batch_norm(x0, out_mean=out_mean, out_var=out_var)[1] is out_mean and np.isnan(out_var).all()
    assert F.batch_norm_inference(x0, g, g, g, g).shape == x0.shape
    dx, dgamma, dbeta = F.batch_norm_backward(x0, x0, g, g, g)
    assert dx.shape == x0.shape and dgamma.shape == dbeta.shape == (3,) and not dgamma.any() and not dbeta.any()
    assert F.batch_norm_backward(x0, x0, g, g, need_input_grad=False)[0] is None
    assert F.global_avg_pool2d(x0).shape == (0, 3)
    assert F.global_avg_pool2d_backward(np.zeros((0, 3), dtype), x0.shape).shape == x0.shape
    m0, i0 = F.global_max_pool2d(x0, return_indices=True)
    assert m0.shape == i0.shape == (0, 3) and i0.dtype == np.int64
    assert F.global_max_pool2d_backward(m0, i0, x0.shape).shape == x0.shape
    w, b = rng.random((6, 1, 3, 3)).astype(dtype), rng.random(6).astype(dtype)
    y0 = F.depthwise_conv2d(x0, w, b, stride=2, padding=1)
    t = torch.nn.functional.conv2d(torch.from_numpy(x0), torch.from_numpy(w), torch.from_numpy(b), stride=2,
                                   padding=1, groups=3)
    assert y0.shape == tuple(t.shape) == (0, 6, 4, 4)
    dx, dw, db = F.depthwise_conv2d_backward(y0, x0, w, stride=2, padding=1)
    assert dx.shape == x0.shape and dw.shape == w.shape and db.shape == (6,) and not dw.any() and not db.any()
    with pytest.raises(ValueError, match="x is empty"):
        F.global_avg_pool2d(x0.reshape(1, 0, 7, 7))


def test_predict_on_zero_samples_with_per_channel_layers():
    inputs = convforge.layers.Input((8, 8, 2))
    h = convforge.layers.DepthwiseConv2D(3, depth_multiplier=2)(inputs)
    h = convforge.layers.BatchNormalization()(h)
    h = convforge.layers.GlobalAveragePooling2D()(h)
    model = convforge.Model(inputs, convforge.layers.Dense(3)(h))
    model.compile(optimizer="adam", loss="mse")
    assert model.predict(np.zeros((0, 8, 8, 2), np.float32), verbose=0).shape == (0, 3)
    bn = model.layers[2]
    before = [v.copy() for v in bn.get_weights()]
    assert model(np.zeros((0, 8, 8, 2), np.float32), training=True).shape == (0, 3)
    for a, b in zip(bn.get_weights(), before):  # no statistics from no images
        np.testing.assert_array_equal(a, b)


def test_predict_and_evaluate_on_zero_samples():
    model = convforge.Sequential([
        convforge.layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
        convforge.layers.MaxPooling2D(2),
        convforge.layers.Flatten(),
        convforge.layers.Dense(5, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.zeros((0, 8, 8, 1), np.float32)
    y = np.zeros((0,), int)
    assert model.predict(x, verbose=0).shape == (0, 5)
    assert model(x).shape == (0, 5)
    assert [a.shape for a in model.activations(x)] == [(0, 6, 6, 4), (0, 3, 3, 4), (0, 36), (0, 5)]
    loss, accuracy = model.evaluate(x, y, verbose=0)  # means over no samples: NaN, as np.mean([])
    assert np.isnan(loss) and np.isnan(accuracy)
    with pytest.raises(ValueError, match="nothing to train on"):
        model.fit(x, y, verbose=0)


def test_an_npz_whose_array_header_is_cut_off_is_a_model_file_error(tmp_path):
    # NumPy tokenizes a .npy header: one cut off in a tuple raised tokenize.TokenError, which no
    # `except ValueError` (ModelFileError's base) catches.
    import zipfile

    header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (3,"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    path = tmp_path / "cut.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__meta__.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"abc")
    from convforge.saving import ModelFileError

    with pytest.raises(ModelFileError):
        convforge.load_model(path)


@pytest.mark.parametrize("argument", ["scale", "offset"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_rescaling_refuses_a_value_that_is_not_finite(argument, value):
    # Every output was NaN, silently (the compiled plan's own rescale op refused it).
    kwargs = {"scale": 1.0, argument: value}
    with pytest.raises(ValueError, match=rf"Rescaling {argument} must be finite; got {value!r}"):
        convforge.layers.Rescaling(**kwargs)


def test_set_weights_checks_every_array_before_changing_any():
    import numpy as np

    from convforge import layers

    model = convforge.Sequential([layers.Input((4,)), layers.Dense(3), layers.Dense(2)])
    before = model.get_weights()
    dense = model.layers[0]
    cases = [([np.full((4, 3), 7.0), np.array(["a", "b", "c"])], TypeError,
              r"layer 'dense' \(Dense\) weight 'bias' takes real numbers; set_weights got an array of dtype <U1"),
             ([np.full((4, 3), 7.0), np.zeros(3, np.complex64)], TypeError, r"weight 'bias' takes real numbers.*complex64"),
             ([np.full((4, 3), np.nan), np.zeros(3)], ValueError, r"weight 'kernel'.*NaN or infinite"),
             ([np.full((4, 3), 7.0), np.array([0.0, np.inf, 0.0])], ValueError, r"weight 'bias'.*NaN or infinite")]
    for weights, error, message in cases:
        with pytest.raises(error, match=message):
            dense.set_weights(weights)
        for got, expected in zip(model.get_weights(), before):
            np.testing.assert_array_equal(got, expected)  # nothing changed, the kernel included
    # A whole model: the second layer's bad array leaves the first layer as it was.
    with pytest.raises(ValueError, match=r"layer 'dense_1' \(Dense\) weight 'bias'.*NaN"):
        model.set_weights([np.ones((4, 3)), np.ones(3), np.ones((3, 2)), np.array([1.0, np.nan])])
    for got, expected in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, expected)
    model.set_weights([np.ones((4, 3)), np.ones(3), np.ones((3, 2)), np.ones(2)])
    assert all((w == 1).all() for w in model.get_weights())


@pytest.mark.parametrize("make, message", [
    (lambda L: L.ZeroPadding2D(2**40), r"ZeroPadding2D padding must be at most 2\*\*31 - 1 on a side; got 1099511627776"),
    (lambda L: L.ZeroPadding2D(((0, 0), (2**31 - 5, 0))),
     r"layer 'zero_padding2d' \(ZeroPadding2D\) would make \(batch, 8, 8, 3\) into \(batch, 8, 2147483651, 3\)"),
    (lambda L: L.UpSampling2D(2**30), r"layer 'up_sampling2d' \(UpSampling2D\) would make .* an axis longer than"),
    (lambda L: L.Cropping2D(2**40), r"Cropping2D cropping must be at most 2\*\*31 - 1 on a side")])
def test_padding_and_upsampling_bound_their_output(make, message):
    # ZeroPadding2D(2**40) built a model of (batch, 2**40 + 8, ...) images that failed at predict in
    # NumPy's words ("array is too big"), naming no layer.
    from convforge import layers

    with pytest.raises(ValueError, match=message):
        convforge.Sequential([layers.Input((8, 8, 3)), make(layers)])


def test_metrics_bound_their_sizes():
    from convforge import metrics

    with pytest.raises(ValueError, match=r"MeanIoU num_classes must be at most 46340"):
        metrics.MeanIoU(num_classes=2**40)
    with pytest.raises(ValueError, match=r"num_thresholds must be an int in \[2, 2\*\*24\]; got 1099511627776"):
        metrics.AUC(num_thresholds=2**40)
    with pytest.raises(ValueError, match=r"PrecisionAtRecall num_thresholds must be an int in \[1, 2\*\*24\]"):
        metrics.PrecisionAtRecall(0.5, num_thresholds=2**30)
