"""LeNet-5 training and inference: convforge vs PyTorch, side by side in one process.

    python bench/train_lenet5.py                  # 2 threads, 3 rounds, SGD + momentum, batch 64
    python bench/train_lenet5.py --threads 1 --rounds 5 --optimizer adam

The same model (61,706 parameters), optimizer, learning rate and batch size on both sides;
see bench/training.py for how the rounds run.
"""

from __future__ import annotations

import sys

import convforge
from convforge.train import lenet5

import training


def _torch_lenet5(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def main(argv=None) -> int:
    args = training.parser(__doc__.splitlines()[0], batch_size=64).parse_args(argv)
    torch, data = training.setup(args)
    if torch is None:
        return 1
    lr = 1e-3 if args.optimizer == "adam" else 0.01
    convforge.seed(0)
    model = lenet5()
    torch.manual_seed(0)
    net = _torch_lenet5(torch)
    assert sum(p.numel() for p in net.parameters()) == model.count_params() == 61_706
    return training.compare(args, torch, data, model, net, lr, "LeNet-5")


if __name__ == "__main__":
    sys.exit(main())
