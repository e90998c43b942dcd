"""Train LeNet-5 on Fashion-MNIST with convforge (the same as ``python -m convforge.train``).

    python examples/train_lenet5.py --epochs 10
    python examples/train_lenet5.py --data ~/mnist          # MNIST IDX files you downloaded
    python examples/train_lenet5.py --help
"""

import sys

from convforge.train import main

if __name__ == "__main__":
    sys.exit(main())
