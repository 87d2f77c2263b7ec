"""MNIST: find it, read it, batch it.

The four IDX files are looked for, in order, in an explicit folder, in the folder
named by ``RECOGNIZE_DIGITS_DATA``, in Paddle's own dataset cache, and otherwise
downloaded from Paddle's mirror into that cache. A small real sample of MNIST ships
with the package (``sample=True``) so that everything works offline.
"""

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

ENV_VAR = "RECOGNIZE_DIGITS_DATA"
PADDLE_CACHE = Path("~/.cache/paddle/dataset/mnist")
MIRROR = "https://dataset.bj.bcebos.com/mnist/"
SAMPLE_DIR = Path(__file__).parent / "sample"

# The official gzip files and their md5 sums, as Paddle's downloader checks them.
FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
# Pixel value -> float32 in [-1, 1], computed as paddle.dataset.mnist does (x / 255 * 2 - 1).
_LEVELS = (np.arange(256) / 255.0 * 2.0 - 1.0).astype(np.float32)


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


def _find(folder, name):
    """The gzip file or its decompressed twin in ``folder``, or None."""
    for candidate in (folder / name, folder / name[: -len(".gz")]):
        if candidate.is_file():
            return candidate
    return None


def _complete(folder):
    return folder is not None and all(_find(Path(folder), name) for name in FILES)


def read_split(folder, split):
    """Images and labels of ``split`` ("train" or "t10k") from ``folder``."""
    images = read_idx(_find(folder, f"{split}-images-idx3-ubyte.gz"))
    labels = read_idx(_find(folder, f"{split}-labels-idx1-ubyte.gz"))
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{folder}: {split} label {labels.max()} is not a digit 0-9")
    return images, labels.astype(np.int64)


def find_data_dir(data_dir=None, download=True, mirror=MIRROR):
    """The folder holding the four MNIST files, downloading them if needed."""
    if data_dir is not None:
        if not _complete(Path(data_dir)):
            raise DataError(f"{data_dir} does not hold the four MNIST files "
                            f"({', '.join(FILES)}); point to the right folder")
        return Path(data_dir)
    env = os.environ.get(ENV_VAR)
    if env:
        if not _complete(Path(env)):
            raise DataError(f"{ENV_VAR}={env} does not hold the four MNIST files; "
                            f"fix or unset the variable")
        return Path(env)
    cache = PADDLE_CACHE.expanduser()
    if _complete(cache):
        return cache
    if not download:
        raise DataError(_no_data_message(cache))
    try:
        return fetch(cache, mirror)
    except OSError as e:
        raise DataError(f"download failed ({e}). " + _no_data_message(cache)) from None


def _no_data_message(cache):
    return (f"MNIST not found. Give its folder with --data-dir / data_dir=, or set {ENV_VAR}, "
            f"or put the files in {cache}, or run 'recognize-digits download' online, "
            f"or use the bundled sample with --sample / sample=True")


def fetch(folder, mirror=MIRROR, files=None):
    """Download ``files`` (name -> md5) from ``mirror`` into ``folder``; keep what is there.

    Each file is written under a temporary name and renamed only once its md5 matches,
    so an interrupted or corrupt download never leaves a file under the final name.
    """
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    for name, md5 in (files or FILES).items():
        target = folder / name
        if target.is_file() and _md5(target) == md5:
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(mirror + name, timeout=60) as r:
                shutil.copyfileobj(r, out)
            if _md5(tmp) != md5:
                raise DataError(f"{mirror + name}: md5 is {_md5(tmp)}, expected {md5}; "
                                f"the mirror sent a wrong file, try again later")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return folder


def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_mnist(data_dir=None, sample=False, download=True):
    """Load MNIST: the bundled sample, or the full set found by :func:`find_data_dir`."""
    folder = SAMPLE_DIR if sample else find_data_dir(data_dir, download)
    train, test = read_split(folder, "train"), read_split(folder, "t10k")
    source = (f"sample ({len(train[0])} train / {len(test[0])} test images bundled "
              f"with the package)") if sample else str(folder)
    return MNIST(*train, *test, source=source)


def normalize(images):
    """uint8 pixels to float32 in [-1, 1], shaped ``[N, 1, 28, 28]``, as ``paddle.dataset.mnist``."""
    return _LEVELS[np.asarray(images, np.uint8)].reshape(-1, 1, 28, 28)


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
