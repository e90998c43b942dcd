"""The models package's seams: saving.py below the models, no import cycle, session attributes,
and the documented internal method gradcheck uses instead of the trainer's privates."""

import ast
import pathlib
import subprocess
import sys

import numpy as np

import convforge
from convforge import callbacks, layers, saving

PACKAGE = pathlib.Path(convforge.__file__).parent


def test_importing_the_file_format_imports_no_model():
    code = "import sys, convforge.saving; print(sorted(m for m in sys.modules if m.startswith('convforge.model')))"
    env_path = str(PACKAGE.parent)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": env_path}
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_submodules_are_attributes_before_they_are_imported():
    # `convforge.saving.ModelFileError` in a script that imported only convforge (Keras's
    # keras.saving idiom) said "convforge does not support convforge.saving".
    code = ("import convforge; print(convforge.saving.ModelFileError.__name__, convforge.onnx.__name__, "
            "convforge.gradcheck.__name__, convforge.models.__name__, 'saving' in dir(convforge))")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(PACKAGE.parent)}
    )
    assert out.stdout.split() == ["ModelFileError", "convforge.onnx", "convforge.gradcheck", "convforge.models",
                                  "True"], out.stdout + out.stderr


def _imports(path: pathlib.Path) -> set[str]:
    """Modules of convforge a source file imports, anywhere in it (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            package = path.parent.relative_to(PACKAGE.parent).parts  # ('convforge', 'models')
            base = package[: len(package) - node.level + 1]
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return {n for n in names if n.startswith("convforge")}


def test_saving_imports_nothing_from_models():
    assert not any(m.startswith("convforge.model") for m in _imports(PACKAGE / "saving.py"))


def test_models_package_has_no_import_cycle():
    graph = {}
    for path in (PACKAGE / "models").glob("*.py"):
        module = "convforge.models" if path.stem == "__init__" else f"convforge.models.{path.stem}"
        graph[module] = {m for m in _imports(path) if m.startswith("convforge.models.")}
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join([*stack, nxt])}"
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_gradcheck_uses_no_private_model_attribute():
    tree = ast.parse((PACKAGE / "gradcheck.py").read_text())
    private = {
        n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "model"
        and n.attr.startswith("_")
    }
    assert private == set(), f"gradcheck.py reaches into the model: {sorted(private)}"


def test_session_attributes_exist_before_fit_and_are_reset_after():
    model = convforge.Sequential([layers.Dense(2, input_shape=(3,))])
    assert (model.current_epoch, model.last_batch, model.fit_callbacks) == (0, None, [])
    assert model.get_compile_config() is None and model.history is None and model.epochs_completed == 0
    seen = []

    class Probe(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((self.model.current_epoch, self.model.last_batch[0].shape, list(self.model.fit_callbacks)))

    probe = Probe()
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    model.fit(np.ones((4, 3)), np.ones((4, 2)), batch_size=4, epochs=2, verbose=0, callbacks=[probe])
    assert seen == [(0, (4, 3), [probe]), (1, (4, 3), [probe])]
    assert (model.current_epoch, model.last_batch, model.fit_callbacks) == (1, None, [])
    assert model.get_compile_config() == {
        "optimizer": convforge.optimizers.serialize(model.optimizer),
        "loss": convforge.losses.serialize(model.loss),
        "metrics": ["mae"],
    }


def test_loss_and_gradients_is_the_training_step_without_the_update():
    convforge.seed(0)
    model = convforge.Sequential(
        [layers.Dense(3, activation="relu", input_shape=(4,)), layers.Dense(2)], dtype="float64"
    )
    model.compile(optimizer=convforge.optimizers.SGD(learning_rate=0.5), loss="mse")
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    before = [w.copy() for w in model.get_weights()]
    loss, grads = model.loss_and_gradients(x, y)
    assert [k for k, _, _ in grads] == ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # no update
    only_loss, none = model.loss_and_gradients(x, y, need_grad=False)
    assert only_loss == loss and all(g is None for _, _, g in none)
    expected = [w - 0.5 * g for (_, w, g) in grads]
    model.fit(x, y, batch_size=5, epochs=1, shuffle=False, verbose=0)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_old_import_paths_still_work():
    from convforge.model import Sequential

    assert Sequential is convforge.Sequential is convforge.models.Sequential
    assert saving.load_model is convforge.load_model
    assert callable(saving.save_model) and callable(saving.restore_training_state)
