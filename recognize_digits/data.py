"""MNIST: find it, read it, batch it.

The four IDX files are looked for, in order, in an explicit folder, in the folder
named by ``RECOGNIZE_DIGITS_DATA``, in Paddle's own dataset cache, and otherwise
downloaded into that cache (see :mod:`.plumbing.download`). A small real sample of MNIST
ships with the package (``sample=True``) so that everything works offline.
"""

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError

ENV_VAR = "RECOGNIZE_DIGITS_DATA"
SAMPLE_DIR = Path(__file__).parent / "sample"
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
# Pixel value -> float32 in [-1, 1], computed as the chapter's reader (paddle.dataset.mnist)
# does, step by step in float32: x / 255 * 2 - 1. (In float64 a sixth of the values differ
# in the last bit.)
_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255) * np.float32(2) - np.float32(1)


@dataclass
class MNIST:
    """Images as uint8 ``[N, 28, 28]``, labels as int64 ``[N]``, and where they came from."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    @property
    def is_sample(self):
        return self.source.startswith("sample")


def read_idx(path):
    """Read one IDX file (gzip-compressed or raw) into a uint8 array.

    Image files (magic 2051) give ``[N, rows, cols]``, label files (magic 2049) ``[N]``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        with (gzip.open if gzipped else open)(path, "rb") as f:
            buf = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e}); download it again") from None
    if len(buf) < 8:
        raise DataError(f"{path}: too short to be an MNIST IDX file; download it again")
    if buf.lstrip()[:1] == b"<":
        raise DataError(f"{path}: is a web page, not MNIST data (a failed download?); "
                        f"download it again")
    magic, count = np.frombuffer(buf, ">u4", 2)
    if magic == IMAGES_MAGIC:
        if len(buf) < 16:
            raise DataError(f"{path}: image header is truncated; download it again")
        rows, cols = np.frombuffer(buf, ">u4", 2, offset=8)
        if (rows, cols) != (28, 28):
            raise DataError(f"{path}: images are {rows}x{cols}, MNIST's are 28x28")
        shape, offset = (count, rows, cols), 16
    elif magic == LABELS_MAGIC:
        shape, offset = (count,), 8
    else:
        raise DataError(f"{path}: magic number {magic} is not MNIST's (2051 images, "
                        f"2049 labels); is it the right file?")
    size = int(np.prod(shape))
    if len(buf) - offset != size:
        raise DataError(f"{path}: header promises {size} bytes of data, file has "
                        f"{len(buf) - offset}; it is truncated or corrupt, download it again")
    return np.frombuffer(buf, np.uint8, size, offset).reshape(shape)


def find_file(folder, name):
    """The gzip file or its decompressed twin in ``folder``, or None."""
    for candidate in (folder / name, folder / name[: -len(".gz")]):
        if candidate.is_file():
            return candidate
    return None


def read_split(folder, split):
    """Images and labels of ``split`` ("train" or "t10k") from ``folder``."""
    images = read_idx(find_file(folder, f"{split}-images-idx3-ubyte.gz"))
    labels = read_idx(find_file(folder, f"{split}-labels-idx1-ubyte.gz"))
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{folder}: {split} label {labels.max()} is not a digit 0-9")
    return images, labels.astype(np.int64)


def load_mnist(data_dir=None, sample=False, download=True, train=True):
    """Load MNIST: the bundled sample, or the full set found by :func:`find_data_dir`.
    ``train=False`` loads (and downloads) the test set alone: the training images and
    labels are then empty."""
    if sample:
        folder = SAMPLE_DIR
    else:
        from .plumbing.download import find_data_dir

        folder = find_data_dir(data_dir, download, train)
    test = read_split(folder, "t10k")
    training = (read_split(folder, "train") if train else
                (np.empty((0, 28, 28), np.uint8), np.empty(0, np.int64)))
    counts = f"{len(training[0])} train / " if train else ""
    source = (f"sample ({counts}{len(test[0])} test images bundled with the package)"
              if sample else str(folder))
    return MNIST(*training, *test, source=source)


def normalize(images):
    """uint8 pixels to float32 in [-1, 1], shaped ``[N, 1, 28, 28]``, as ``paddle.dataset.mnist``."""
    return _LEVELS[np.asarray(images, np.uint8)].reshape(-1, 1, 28, 28)


def pixels(inputs):
    """What :func:`normalize` made, back as uint8 ``[N, 28, 28]`` pixels (the nearest level)."""
    inputs = np.asarray(inputs, np.float32).reshape(-1, 28, 28)
    return np.clip(np.rint((inputs + 1) * 127.5), 0, 255).astype(np.uint8)


def batches(images, labels, batch_size, shuffle=False, rng=None):
    """Yield ``(float32 [B, 1, 28, 28], int64 [B, 1])`` batches; the last may be smaller.

    With ``shuffle`` the order is a fresh permutation from ``rng`` on every call.
    """
    order = (rng or np.random.default_rng()).permutation(len(images)) if shuffle else None
    for start in range(0, len(images), batch_size):
        if order is None:
            idx = slice(start, start + batch_size)
        else:
            idx = order[start:start + batch_size]
        yield normalize(images[idx]), labels[idx].reshape(-1, 1)


def validation_size(train_count, validation=None):
    """How many training images to hold out: ``validation``, or 1/12 of them by default."""
    if validation is None:
        return train_count // 12
    if not (isinstance(validation, (int, np.integer)) and 0 <= validation < train_count):
        raise ConfigError(f"validation={validation!r}: must be a whole number of images "
                          f"from 0 to {train_count - 1}")
    return int(validation)
