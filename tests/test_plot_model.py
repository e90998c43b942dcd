"""keras.utils.plot_model / model_to_dot: the graph as Graphviz DOT, rendered by the dot program."""

import os
import stat

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge.utils import model_to_dot, plot_model


def _branchy():
    x = convforge.Input((28, 28, 1), name="image")
    a = layers.Conv2D(8, 3, padding="same", activation="relu", name="wide")(x)
    b = layers.Conv2D(8, 1, name="narrow")(x)
    y = layers.Add(name="sum")([a, b])
    y = layers.GlobalAveragePooling2D(name="gap")(y)
    return convforge.Model(x, layers.Dense(10, activation="softmax", name="classes")(y))


def test_one_box_per_layer_and_one_arrow_per_tensor_read():
    dot = model_to_dot(_branchy(), show_shapes=True, show_layer_activations=True, show_trainable=True)
    assert dot.startswith("digraph model {") and dot.rstrip().endswith("}")
    boxes = [line for line in dot.splitlines() if "[label=" in line]
    assert [line.split('"{')[1].split(" ")[0] for line in boxes] == ["image", "wide", "narrow", "sum", "gap", "classes"]
    arrows = sorted(line.strip() for line in dot.splitlines() if "->" in line)
    assert arrows == ["n0 -> n1;", "n0 -> n2;", "n1 -> n3;", "n2 -> n3;", "n3 -> n4;", "n4 -> n5;"]
    assert "input: [(None, 28, 28, 8), (None, 28, 28, 8)]|output: (None, 28, 28, 8)" in boxes[3]
    assert "activation: relu" in boxes[1] and "activation: linear" in boxes[2] and "activation" not in boxes[3]
    assert "trainable: Y" in boxes[5]


def test_sequential_models_and_layer_names_off():
    model = convforge.Sequential([layers.InputLayer((4,)), layers.Dense(3), layers.Dense(2)])
    dot = model_to_dot(model, show_layer_names=False, rankdir="LR")
    assert 'rankdir="LR"' in dot
    assert [line.split('"{')[1].rstrip('}"];') for line in dot.splitlines() if "[label=" in line] == [
        "InputLayer", "Dense", "Dense"]


def test_plot_model_writes_dot_files(tmp_path):
    model, path = _branchy(), tmp_path / "model.dot"
    assert plot_model(model, to_file=path, show_shapes=True, dpi=96) is None
    # plot_model's default is Keras's show_layer_names=False (model_to_dot's is True).
    assert path.read_text() == model_to_dot(model, show_shapes=True, show_layer_names=False, dpi=96)
    assert "dpi=96" in path.read_text() and "(Conv2D)" not in path.read_text()


def test_images_are_rendered_by_graphviz_dot(tmp_path, monkeypatch):
    """A stand-in for Graphviz's dot (a script that copies its input): the right program, format and file."""
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$1" > "$3"\ncat >> "$3"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    plot_model(_branchy(), to_file=tmp_path / "model.svg")
    written = (tmp_path / "model.svg").read_text()
    assert written.startswith("-Tsvg\ndigraph model {")


def test_without_graphviz_an_image_name_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here
    with pytest.raises(ImportError, match=r"apt-get install graphviz.*to_file='model.dot'"):
        plot_model(_branchy(), to_file=tmp_path / "model.png")
    assert not (tmp_path / "model.png").exists()


def test_bad_arguments_are_named():
    model = _branchy()
    with pytest.raises(ValueError, match="rankdir"):
        model_to_dot(model, rankdir="sideways")
    with pytest.raises(ValueError, match="dpi"):
        model_to_dot(model, dpi=-1)
    with pytest.raises(ValueError, match="to_file must end in"):
        plot_model(model, to_file="model.bmp")
    with pytest.raises(NotImplementedError, match="convforge does not support the model_to_dot argument 'subgraph'"):
        model_to_dot(model, subgraph=True)


def test_labels_escape_graphviz_record_characters():
    x = convforge.Input((3,), name="in")
    model = convforge.Model(x, layers.Dense(2, name="a{b}|c<d>")(x))
    assert r"a\{b\}\|c\<d\>" in model_to_dot(model)
