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


def run_child(code: str, *, env=None, timeout=120) -> subprocess.CompletedProcess:
    """Run ``code`` (after PRELUDE) in a fresh interpreter; fail on a crash, return the result."""
    full_env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def check_child(code: str, **kwargs) -> str:
    """Run ``code`` in a child that must exit with status 0; its stdout."""
    result = run_child(code, **kwargs)
    assert result.returncode == 0, (
        f"child exited with status {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
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
