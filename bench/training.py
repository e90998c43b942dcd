"""Side-by-side training epochs of one model in convforge and PyTorch, in one process (shared by
bench/train_lenet5.py and bench/train_resnet.py).

Each round trains one epoch of convforge, then one epoch of PyTorch, on the same Fashion-MNIST
images with the same model, optimizer, learning rate and batch size, shuffled each epoch; then both
predict the 10,000 test images. On a shared machine the minimum over rounds is the fairest figure;
the median is printed too. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import convforge
from convforge.datasets import fashion_mnist


def parser(description: str, batch_size: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (smoke runs)")
    return p


def setup(args):
    """torch (or None, with a message), and the data as float32 NHWC in [0, 1]."""
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed (pip install torch==2.13.0): nothing to compare with", file=sys.stderr)
        return None, None
    # Both sides at the stated count: fit's adaptive count would react to PyTorch's threads still
    # spinning after its epoch (bench/busy_machine.py measures adaptation).
    convforge.set_adaptive_threads(False)
    convforge.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    (x, y), (x_test, y_test) = fashion_mnist.load_data()
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    x = x[..., None].astype(np.float32) / np.float32(255)
    x_test = x_test[..., None].astype(np.float32) / np.float32(255)
    return torch, (x, y, x_test, y_test)


def compare(args, torch, data, model, net, lr: float, label: str) -> int:
    """Train ``model`` (convforge, uncompiled) and ``net`` (torch.nn) side by side; print the table."""
    x, y, x_test, y_test = data
    n, bs = len(x), args.batch_size
    opt = convforge.optimizers.Adam(lr) if args.optimizer == "adam" else convforge.optimizers.SGD(lr, momentum=0.9)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    topt = torch.optim.Adam(net.parameters(), lr=lr) if args.optimizer == "adam" else torch.optim.SGD(
        net.parameters(), lr=lr, momentum=0.9)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y.astype(np.int64))
    xt_test = torch.from_numpy(np.ascontiguousarray(x_test.transpose(0, 3, 1, 2)))
    gen = torch.Generator().manual_seed(0)

    def torch_epoch():
        net.train()
        perm = torch.randperm(n, generator=gen)
        total = correct = 0.0
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            xb, yb = xt[idx], yt[idx]
            topt.zero_grad()
            out = net(xb)
            loss = torch.nn.functional.cross_entropy(out, yb)
            loss.backward()
            topt.step()
            total += loss.item() * len(idx)
            correct += (out.argmax(1) == yb).sum().item()
        return total / n, correct / n

    def torch_predict():
        net.eval()
        with torch.no_grad():
            return torch.cat([net(xt_test[i : i + 1000]) for i in range(0, len(xt_test), 1000)]).argmax(1).numpy()

    times = {"cf_train": [], "pt_train": [], "cf_pred": [], "pt_pred": []}
    print(f"{label}, {n} images, batch {bs}, {args.optimizer} lr={lr}, {args.threads} threads, "
          f"convforge {convforge.__version__} ({convforge.build_info()['isa']}), torch {torch.__version__}")
    for r in range(args.rounds):
        t = time.perf_counter()
        h = model.fit(x, y, batch_size=bs, epochs=1, verbose=0)
        times["cf_train"].append(time.perf_counter() - t)
        t = time.perf_counter()
        pt_loss, _ = torch_epoch()
        times["pt_train"].append(time.perf_counter() - t)
        t = time.perf_counter()
        cf_test = float(np.mean(model.predict(x_test, batch_size=1000, verbose=0).argmax(1) == y_test))
        times["cf_pred"].append(time.perf_counter() - t)
        t = time.perf_counter()
        pt_test = float(np.mean(torch_predict() == y_test))
        times["pt_pred"].append(time.perf_counter() - t)
        print(f"round {r}: train convforge {times['cf_train'][-1]:.2f} s (loss {h.history['loss'][0]:.3f}, "
              f"test acc {cf_test:.3f})  torch {times['pt_train'][-1]:.2f} s (loss {pt_loss:.3f}, test acc "
              f"{pt_test:.3f}); predict 10k: {times['cf_pred'][-1]:.3f} s vs {times['pt_pred'][-1]:.3f} s",
              flush=True)

    print()
    print("| measure | convforge (min / median) | PyTorch (min / median) | convforge / PyTorch (min) |")
    print("|---|---:|---:|---:|")
    for what, a, b in (("train one epoch, s", "cf_train", "pt_train"), ("predict 10k test images, s", "cf_pred", "pt_pred")):
        ca, cb = times[a], times[b]
        print(f"| {what} | {min(ca):.3f} / {statistics.median(ca):.3f} | {min(cb):.3f} / "
              f"{statistics.median(cb):.3f} | {min(ca) / min(cb):.2f} |")
    return 0
