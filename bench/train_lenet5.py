"""LeNet-5 training and inference: convforge vs PyTorch, side by side in one process.

    python bench/train_lenet5.py                  # 2 threads, 3 rounds, SGD + momentum, batch 64
    python bench/train_lenet5.py --threads 1 --rounds 5 --optimizer adam

Each round trains one epoch of convforge, then one epoch of PyTorch, on the same 60,000
Fashion-MNIST images with the same model (61,706 parameters), optimizer, learning rate and batch
size, shuffled each epoch; then both predict the 10,000 test images. On a shared machine the
minimum over rounds is the fairest figure; the median is printed too. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import convforge
from convforge.datasets import fashion_mnist
from convforge.train import lenet5


def _torch_lenet5(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (smoke runs)")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed (pip install torch==2.13.0): nothing to compare with", file=sys.stderr)
        return 1

    convforge.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    (x, y), (x_test, y_test) = fashion_mnist.load_data()
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    x = x[..., None].astype(np.float32) / np.float32(255)
    x_test = x_test[..., None].astype(np.float32) / np.float32(255)
    n, bs = len(x), args.batch_size
    lr = 1e-3 if args.optimizer == "adam" else 0.01

    convforge.seed(0)
    model = lenet5()
    opt = convforge.optimizers.Adam(lr) if args.optimizer == "adam" else convforge.optimizers.SGD(lr, momentum=0.9)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    torch.manual_seed(0)
    net = _torch_lenet5(torch)
    assert sum(p.numel() for p in net.parameters()) == model.count_params() == 61_706
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
    print(f"LeNet-5, {n} images, batch {bs}, {args.optimizer} lr={lr}, {args.threads} threads, "
          f"convforge {convforge.__version__} ({convforge.build_info()['isa']}), torch {torch.__version__}")
    for r in range(args.rounds):
        t = time.perf_counter()
        h = model.fit(x, y, batch_size=bs, epochs=1, verbose=0)
        times["cf_train"].append(time.perf_counter() - t)
        t = time.perf_counter()
        pt_loss, pt_acc = torch_epoch()
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
    for label, a, b in (("train one epoch, s", "cf_train", "pt_train"), ("predict 10k test images, s", "cf_pred", "pt_pred")):
        ca, cb = times[a], times[b]
        print(f"| {label} | {min(ca):.3f} / {statistics.median(ca):.3f} | {min(cb):.3f} / "
              f"{statistics.median(cb):.3f} | {min(ca) / min(cb):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
