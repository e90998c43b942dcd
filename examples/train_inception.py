"""Train a small Inception-style network on Fashion-MNIST with convforge's functional API.

    python examples/train_inception.py                  # 15 epochs, SGD + momentum, cosine decay
    python examples/train_inception.py --epochs 2 --limit-train 5000
    python examples/train_inception.py --help

Each block has two branches over the same input (Szegedy et al. 2015, reduced to two): a 1x1
convolution, and a 1x1 reduction followed by a 3x3 convolution; their feature maps are
concatenated along the channels. Blocks alternate with 2x2 max-pooling; global average pooling
and a softmax classifier close the network. The options, progress, metrics, plots and files are
those of examples/train_lenet5.py (convforge.train.run).
"""

from __future__ import annotations

import sys

import convforge
from convforge import layers
from convforge.train import run


def conv_bn_relu(x, filters: int, kernel: int, name: str):
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def inception_block(x, branch1: int, reduce3: int, branch3: int, name: str):
    """Concatenate(1x1 conv, 1x1 reduction -> 3x3 conv): ``branch1 + branch3`` channels."""
    a = conv_bn_relu(x, branch1, 1, f"{name}_1x1")
    b = conv_bn_relu(x, reduce3, 1, f"{name}_3x3_reduce")
    b = conv_bn_relu(b, branch3, 3, f"{name}_3x3")
    return layers.Concatenate(name=f"{name}_concat")([a, b])


def inception(num_classes: int = 10, input_shape=(28, 28, 1)) -> convforge.Model:
    inputs = convforge.Input(shape=input_shape, name="image")
    x = conv_bn_relu(inputs, 32, 3, "stem")  # 28x28x32
    x = inception_block(x, 16, 16, 32, "mixed1")  # 28x28x48
    x = layers.MaxPooling2D(2, name="pool1")(x)  # 14x14x48
    x = inception_block(x, 32, 32, 64, "mixed2")  # 14x14x96
    x = layers.MaxPooling2D(2, name="pool2")(x)  # 7x7x96
    x = inception_block(x, 64, 48, 96, "mixed3")  # 7x7x160
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="output")(x)
    return convforge.Model(inputs, outputs, name="inception")


def main(argv=None) -> int:
    return run(
        argv,
        lambda args, classes: inception(classes),
        name="inception",
        prog="python examples/train_inception.py",
        description="Train a small Inception-style network (two-branch Concatenate blocks) on Fashion-MNIST.",
        epochs=15,
        batch_size=128,
        lr=0.1,
    )


if __name__ == "__main__":
    sys.exit(main())
