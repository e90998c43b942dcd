"""ResNet training and inference (examples/train_resnet.py): convforge vs PyTorch, side by side in one process.

    python bench/train_resnet.py                  # 2 threads, 3 rounds, SGD + momentum, batch 128
    python bench/train_resnet.py --rounds 1 --limit 6400

The same network on both sides (stem, one residual block per stage of 16/32/64 channels with
BatchNormalization and 1x1 projection shortcuts, global average pooling; BatchNorm momentum 0.99
in Keras's convention = 0.01 in PyTorch's, epsilon 1e-3), optimizer, learning rate and batch size;
see bench/training.py for how the rounds run. PyTorch's strided 3x3 convolutions pad 1 on every
side where Keras's 'same' pads the bottom/right only: the same cost.
Compare under ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184`` (both sides).
"""

from __future__ import annotations

import os
import sys

import convforge

import training

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from train_resnet import resnet  # noqa: E402


def _torch_resnet(torch, widths=(16, 32, 64)):
    nn = torch.nn

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), bn(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False), bn(cout))
            self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))
                             if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.body(x) + self.shortcut(x))

    blocks, cin = [], widths[0]
    for i, w in enumerate(widths):
        blocks.append(Block(cin, w, 2 if i else 1))
        cin = w
    return nn.Sequential(nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), bn(widths[0]), nn.ReLU(), *blocks,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], 10))


def main(argv=None) -> int:
    args = training.parser(__doc__.splitlines()[0], batch_size=128).parse_args(argv)
    torch, data = training.setup(args)
    if torch is None:
        return 1
    lr = 1e-3 if args.optimizer == "adam" else 0.05
    convforge.seed(0)
    model = resnet()
    torch.manual_seed(0)
    net = _torch_resnet(torch)
    trainable = sum(p.numel() for p in net.parameters())
    assert trainable == sum(layer.count_trainable_params() for layer in model.layers), trainable
    return training.compare(args, torch, data, model, net, lr, "ResNet (16/32/64, BatchNorm)")


if __name__ == "__main__":
    sys.exit(main())
