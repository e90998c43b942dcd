"""Train LeNet-5 on Fashion-MNIST (or MNIST) from the command line.

:func:`run` is the shared command line of every example (examples/train_resnet.py,
examples/train_inception.py): the same options, progress, metrics, plots and files for
any model.

    python -m convforge.train                      # Fashion-MNIST, 10 epochs, SGD + momentum, cosine decay
    python -m convforge.train --data ~/mnist       # MNIST: a directory with its four IDX files
    python -m convforge.train --classic --optimizer adam --lr 1e-3
    mpirun -n 4 python -m mpi4py -m convforge.train   # data-parallel on 4 ranks (pip install convforge[mpi])

It prints the model summary, a progress bar, per-epoch loss/accuracy, the
final test accuracy, per-class precision/recall/F1 and the confusion matrix,
and saves the trained model (``lenet5.npz``, reload with
``convforge.load_model``) and ``history.json`` to ``--output-dir``. With
matplotlib installed (``pip install convforge[plot]``) it also draws the
training curves, the first layer's filters and the feature maps of one test
image as PNG files there.

Launched by an MPI launcher it trains data-parallel (see
:mod:`convforge.distributed`): ``--batch-size`` is the global batch, and only
rank 0 prints and writes files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import convforge
from convforge import datasets, distributed, layers, metrics

LENET5_PARAMS = 61_706


def lenet5(classic: bool = False, num_classes: int = 10) -> convforge.Sequential:
    """LeNet-5 for 28x28 grey images (LeCun et al. 1998, with the first layer padded by 2).

    The default is the modern variant: ReLU and max-pooling. ``classic=True``
    uses tanh and average pooling as in the paper.
    """
    act = "tanh" if classic else "relu"
    pool = layers.AveragePooling2D if classic else layers.MaxPooling2D
    return convforge.Sequential(
        [
            layers.Conv2D(6, (5, 5), padding="same", activation=act, input_shape=(28, 28, 1), name="c1"),  # 28x28x6
            pool(2, name="s2"),  # 14x14x6
            layers.Conv2D(16, (5, 5), activation=act, name="c3"),  # 10x10x16
            pool(2, name="s4"),  # 5x5x16
            layers.Flatten(name="flatten"),  # 400
            layers.Dense(120, activation=act, name="f5"),
            layers.Dense(84, activation=act, name="f6"),
            layers.Dense(num_classes, activation="softmax", name="output"),
        ],
        name="lenet5_classic" if classic else "lenet5",
    )


def _parser(prog="python -m convforge.train", description=None, name="lenet5", **defaults) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=description or "Train LeNet-5 on Fashion-MNIST (default) or MNIST with convforge's C++ kernels.",
    )
    p.add_argument("--data", metavar="DIR", help="directory with the four IDX files of MNIST (or another "
                   "MNIST-format set); default: Fashion-MNIST from $CONVFORGE_DATA or /usr/share/datasets")
    p.add_argument("--dataset", choices=["fashion-mnist", "mnist"], default=None,
                   help="class names to report (default: fashion-mnist, or mnist with --data)")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training set (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="images per gradient step (default: %(default)s)")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                   help="SGD with momentum (default; 90%% on Fashion-MNIST in 10 epochs here) or Adam")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-3 for adam, 0.03 for sgd)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                   help="learning rate over the run: cosine decay to 0 (default) or constant")
    p.add_argument("--validation-split", type=float, default=0.1,
                   help="fraction of the training images held out to validate after each epoch "
                   "(default: %(default)s; 0 for none)")
    p.add_argument("--threads", type=int, default=None, help="kernel threads (default: all CPUs available)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weights, shuffling and dropout: the same seed gives the same run "
                   "(default: %(default)s)")
    if name == "lenet5":
        p.add_argument("--classic", action="store_true", help="tanh and average pooling, as in the 1998 paper")
    p.add_argument("--limit-train", type=int, default=None, metavar="N", help="train on the first N images only")
    p.add_argument("--limit-test", type=int, default=None, metavar="N", help="evaluate on the first N test images only")
    p.add_argument("--output-dir", default=f"runs/{name}", help="where the model, history and plots go")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots even if matplotlib is installed")
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=None,
                   help="1: progress bar, 2: one line per epoch (default: 1 on a terminal, else 2)")
    p.set_defaults(**defaults)
    return p


def _check_args(args, parser) -> None:
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.lr is not None and not (np.isfinite(args.lr) and args.lr > 0):
        parser.error(f"--lr must be a positive number, got {args.lr}")
    if not 0.0 <= args.validation_split < 1.0:
        parser.error(f"--validation-split must be in [0, 1), got {args.validation_split}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    for option in ("limit_train", "limit_test"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {value}")


def load(args):
    """``((x_train, y_train), (x_test, y_test))`` as float32 in [0, 1], channels-last, and class names."""
    if args.data is not None:
        (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data(path=args.data)
        names = datasets.fashion_mnist.CLASS_NAMES if args.dataset == "fashion-mnist" else datasets.mnist.CLASS_NAMES
    else:
        (x_train, y_train), (x_test, y_test) = datasets.fashion_mnist.load_data()
        names = datasets.mnist.CLASS_NAMES if args.dataset == "mnist" else datasets.fashion_mnist.CLASS_NAMES
    if args.limit_train is not None:
        x_train, y_train = x_train[: args.limit_train], y_train[: args.limit_train]
    if args.limit_test is not None:
        x_test, y_test = x_test[: args.limit_test], y_test[: args.limit_test]
    scale = np.float32(1.0 / 255.0)
    return (x_train[..., None] * scale, y_train), (x_test[..., None] * scale, y_test), list(names)


def curves_figure(h: dict, plt):
    """Loss and accuracy per epoch, readable for any number of epochs: a marker on every point
    (a one-epoch run is one point per curve, which a bare line would not draw), the value
    written next to it when there are few, and whole-number epoch ticks."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for name, label in ((key, "train"), (f"val_{key}", "validation")):
            if name not in h:
                continue
            epochs = list(range(1, len(h[name]) + 1))
            ax.plot(epochs, h[name], marker="o", label=label)
            if len(epochs) <= 3:
                for e, v in zip(epochs, h[name]):
                    ax.annotate(f"{v:.3f}", (e, v), textcoords="offset points", xytext=(6, 4), fontsize=8)
        n = len(h.get(key, [])) or 1
        ax.set_xlim(0.5, n + 0.5)
        if n <= 20:
            ax.set_xticks(range(1, n + 1))  # one tick per epoch (MaxNLocator would add 0.5, 0.6, ... for one)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def _plots(model, history, x_test, out_dir) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    fig = curves_figure(history.history, plt)
    written.append(os.path.join(out_dir, "curves.png"))
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    # Every layer, those of models nested in this one too (model.layers lists such a model once).
    every = model._flat_layers
    first = next(layer for layer in every if isinstance(layer, layers.Conv2D))
    kernel = first.params["kernel"][:16]  # (filters, 1, kh, kw): OIHW, first input channel shown
    fig, axes = plt.subplots(1, kernel.shape[0], figsize=(2 * kernel.shape[0], 2.2))
    for i, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(kernel[i, 0], cmap="gray")
        ax.set_title(f"filter {i}")
        ax.axis("off")
    fig.suptitle(f"first-layer filters ({first.name})")
    written.append(os.path.join(out_dir, f"filters_{first.name}.png"))
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    if hasattr(model, "activations"):
        maps = model.activations(x_test[:1])
        names = [layer.name for layer in every]  # one map per layer, as activations gives them
    else:  # a graph: Keras's feature-map recipe, one model whose outputs are the layers' outputs
        # Each layer's tensor in this graph (its first call here: a nested model's layers too).
        made = [(layer, model._node_ids[id(layer)][0].outputs[0]) for layer in every if id(layer) in model._node_ids]
        made = [(layer, t) for layer, t in made if not isinstance(layer, layers.InputLayer) and len(t.shape) == 4]
        maps = convforge.Model(model.inputs, [t for _, t in made]).predict(x_test[:1], verbose=0)
        names = [layer.name for layer, _ in made]
    shown = [(n, a[0]) for n, a in zip(names, maps) if a.ndim == 4][:12]  # (H, W, C) feature maps
    rows = len(shown) + 1
    cols = min(16, max(a.shape[-1] for _, a in shown))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(x_test[0, :, :, 0], cmap="gray")
    axes[0, 0].set_title("input")
    for r, (name, a) in enumerate(shown, start=1):
        for c in range(min(cols, a.shape[-1])):
            axes[r, c].imshow(a[:, :, c], cmap="viridis")
        axes[r, 0].set_title(name, loc="left")
    fig.tight_layout()
    written.append(os.path.join(out_dir, "feature_maps.png"))
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    return written


def _primary_print(*args, **kwargs) -> None:
    if distributed.is_primary():
        print(*args, **kwargs)


def main(argv=None) -> int:
    """``python -m convforge.train``: LeNet-5."""
    return run(argv, lambda args, classes: lenet5(classic=args.classic, num_classes=classes))


def run(argv, build_model, *, name="lenet5", prog="python -m convforge.train", description=None, add_arguments=None,
        **defaults) -> int:
    """Parse the shared command line, train ``build_model(args, num_classes)`` and report.

    Parameters
    ----------
    build_model : callable
        ``(args, num_classes) -> model`` (uncompiled).
    name : str
        The model file (``<name>.npz``) and default ``--output-dir`` (``runs/<name>``).
    add_arguments : callable, optional
        ``(parser) -> None``: the model's own options (its width, depth...).
    defaults
        Other defaults for the options, e.g. ``epochs=15, batch_size=128``.
    """
    parser = _parser(prog, description, name, **defaults)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    _check_args(args, parser)
    # Joins the MPI job when launched by mpirun (data-parallel fit); a no-op otherwise.
    distributed.init()
    if args.threads is not None:
        convforge.set_num_threads(args.threads)
    convforge.seed(args.seed)
    say = _primary_print  # every rank runs this script; rank 0 reports
    info = convforge.build_info()
    ranks = f", {distributed.size()} ranks" if distributed.size() > 1 else ""
    say(
        f"convforge {info['version']}: {info['isa']} kernels, {convforge.get_num_threads()} threads, "
        f"seed {args.seed}{ranks}"
    )

    try:
        (x_train, y_train), (x_test, y_test), class_names = load(args)
    except datasets.DatasetError as err:
        if distributed.size() > 1:
            raise  # ends the whole job with the message, rather than leaving the other ranks waiting
        _primary_print(f"error: {err}", file=sys.stderr)
        return 2
    say(f"data: {len(x_train)} training and {len(x_test)} test images of {x_train.shape[1:]}")

    model = build_model(args, len(class_names))
    lr = args.lr or (1e-3 if args.optimizer == "adam" else 0.03)
    if args.schedule == "cosine":
        # A fixed-length run ends at a small learning rate: the last epochs settle instead of
        # bouncing around the minimum (+~0.5% test accuracy on Fashion-MNIST here).
        n_fit = len(x_train) - int(len(x_train) * args.validation_split)
        steps = args.epochs * -(-n_fit // args.batch_size)
        lr = convforge.optimizers.CosineDecay(lr, decay_steps=steps)
    if args.optimizer == "adam":
        optimizer = convforge.optimizers.Adam(learning_rate=lr)
    else:
        optimizer = convforge.optimizers.SGD(learning_rate=lr, momentum=args.momentum)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary(print_fn=say)

    t0 = time.perf_counter()
    history = model.fit(
        x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
        validation_split=args.validation_split, verbose="auto" if args.verbose is None else args.verbose,
    )
    train_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    probabilities = model.predict(x_test, batch_size=1000, verbose=0)
    predict_seconds = time.perf_counter() - t0
    predicted = probabilities.argmax(axis=1)
    test_accuracy = metrics.accuracy(y_test, predicted)
    say(f"\ntraining: {train_seconds:.1f} s ({train_seconds / args.epochs:.1f} s/epoch); "
          f"inference on {len(x_test)} test images: {predict_seconds:.2f} s")
    say(f"test accuracy: {test_accuracy:.4f}\n")
    say(metrics.classification_report(y_test, predicted, target_names=class_names, digits=3))
    cm = metrics.confusion_matrix(y_test, predicted, num_classes=len(class_names))
    width = max(5, len(str(cm.max())) + 1)
    say("confusion matrix (rows: true class, columns: predicted)")
    say(" " * 14 + "".join(f"{i:>{width}d}" for i in range(len(class_names))))
    for i, row in enumerate(cm):
        say(f"{i:>2d} {class_names[i][:11]:<11s}" + "".join(f"{v:>{width}d}" for v in row))

    if not distributed.is_primary():
        return 0
    os.makedirs(args.output_dir, exist_ok=True)
    model_path = os.path.join(args.output_dir, f"{name}.npz")
    model.save(model_path)
    summary = {
        "test_accuracy": test_accuracy, "epochs": args.epochs, "seed": args.seed, "batch_size": args.batch_size,
        "optimizer": args.optimizer, "schedule": args.schedule, "classic": getattr(args, "classic", False),
        "model": name, "threads": convforge.get_num_threads(),
        "train_seconds": train_seconds, "predict_seconds": predict_seconds,
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
    }
    history_path = os.path.join(args.output_dir, "history.json")
    with open(history_path + ".tmp", "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(history_path + ".tmp", history_path)
    say(f"\nsaved {model_path} and {history_path}")
    if not args.no_plots:
        # Rank 0 alone here: its feature-map predict must not wait for the other ranks, which
        # have returned (under mpirun it hung the job after the filters' plot).
        with distributed.local():
            for path in _plots(model, history, x_test, args.output_dir):
                say(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
