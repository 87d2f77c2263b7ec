"""MNIST: find it, read it, batch it.

The four IDX files are looked for, in order, in an explicit folder, in the folder
named by ``RECOGNIZE_DIGITS_DATA``, in Paddle's own dataset cache, and otherwise
downloaded into that cache from Paddle's mirror, or from the next mirror when one fails.
A small real sample of MNIST ships with the package (``sample=True``) so that everything
works offline.
"""

import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import ConfigError, DataError

ENV_VAR = "RECOGNIZE_DIGITS_DATA"
PADDLE_CACHE = Path("~/.cache/paddle/dataset/mnist")
# Where the same four gzip files (same md5 sums) are served, tried in this order: Paddle's
# own mirror (paddle.vision.datasets.MNIST.URL_PREFIX), torchvision's
# (torchvision.datasets.MNIST.mirrors), TensorFlow's tutorials' (the CVDF mirror,
# tensorflow/contrib/learn/.../datasets/mnist.py SOURCE_URL), and the original site, which
# torchvision still lists but which often refuses downloads now.
MIRRORS = (
    "https://dataset.bj.bcebos.com/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
TIMEOUT = 30  # seconds a mirror may stay silent before the next one is tried
SAMPLE_DIR = Path(__file__).parent / "sample"

# The official gzip files and their md5 sums, as Paddle's downloader checks them.
FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
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


def _find(folder, name):
    """The gzip file or its decompressed twin in ``folder``, or None."""
    for candidate in (folder / name, folder / name[: -len(".gz")]):
        if candidate.is_file():
            return candidate
    return None


def _complete(folder, files=FILES):
    return folder is not None and all(_find(Path(folder), name) for name in files)


def _files(train=True):
    """The files to find: all four, or the test set's two."""
    return FILES if train else {k: v for k, v in FILES.items() if k.startswith("t10k")}


def read_split(folder, split):
    """Images and labels of ``split`` ("train" or "t10k") from ``folder``."""
    images = read_idx(_find(folder, f"{split}-images-idx3-ubyte.gz"))
    labels = read_idx(_find(folder, f"{split}-labels-idx1-ubyte.gz"))
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{folder}: {split} label {labels.max()} is not a digit 0-9")
    return images, labels.astype(np.int64)


def _found(data_dir=None, files=FILES):
    """The folder holding ``files``: ``data_dir``, else the one the environment names, else
    Paddle's cache if it has them; None if none does."""
    if data_dir is not None:
        if not _complete(data_dir, files):
            raise DataError(f"{data_dir} does not hold the MNIST files ({', '.join(files)}); "
                            f"point data_dir=... to the right folder")
        return Path(data_dir)
    env = os.environ.get(ENV_VAR)
    if env:
        if not _complete(env, files):
            raise DataError(f"{ENV_VAR}={env} does not hold the MNIST files "
                            f"({', '.join(files)}); fix or unset the variable")
        return Path(env)
    cache = PADDLE_CACHE.expanduser()
    return cache if _complete(cache, files) else None


def find_data_dir(data_dir=None, download=True, train=True):
    """The folder holding MNIST (only its test set's files with ``train=False``), downloading
    what is missing into Paddle's cache if ``download``."""
    files = _files(train)
    folder = _found(data_dir, files)
    if folder is not None:
        return folder
    cache = PADDLE_CACHE.expanduser()
    if not download:
        raise DataError(_no_data_message(cache))
    try:
        return fetch(cache, files=files)
    except DataError as e:
        raise DataError(f"{e}. {_no_data_message(cache)}") from None


def download(mirror=None):
    """``recognize-digits download``: the folder that holds MNIST, after downloading it into
    Paddle's cache if no folder has it yet; ``mirror`` (a URL, or a list of them) is tried
    before :data:`MIRRORS`."""
    folder = _found()
    if folder is not None:
        return folder
    try:
        return fetch(PADDLE_CACHE, _mirrors_from(mirror))
    except DataError as e:
        raise DataError(f"{e}; try again later, or give a mirror that serves the four files "
                        f"with mirror=...") from None


def _no_data_message(cache):
    # in the words of the Python API; the command line says them as its options
    return (f"MNIST not found: give its folder with data_dir=..., set {ENV_VAR}, put the "
            f"files in {cache}, download them with 'recognize-digits download' when online, "
            f"or use the bundled sample with sample=True")


def _mirrors_from(first):
    """``first`` (None, a URL or a list of URLs) ahead of :data:`MIRRORS`, each once."""
    first = [first] if isinstance(first, str) else list(first or ())
    # A folder URL without its final slash would otherwise lose a path segment.
    return tuple(dict.fromkeys(m if m.endswith("/") else m + "/" for m in [*first, *MIRRORS]))


def fetch(folder, mirrors=None, files=None, quiet=False):
    """Download ``files`` (name -> md5) into ``folder``, each from the first of ``mirrors``
    (default :data:`MIRRORS`; one URL may be given as a string) that sends it intact.

    A file already there with the right md5 is kept. Each download is written under a
    temporary name and renamed only once its md5 matches, so a failed, interrupted or wrong
    download never leaves a file under the final name. ``quiet`` hides the progress bars
    and the notes on failed mirrors.
    """
    mirrors = (mirrors,) if isinstance(mirrors, str) else tuple(mirrors or MIRRORS)
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    for name, md5 in (files or FILES).items():
        target = folder / name
        if not (target.is_file() and _md5(target) == md5):
            _fetch_one(target, md5, mirrors, quiet)
    return folder


def _fetch_one(target, md5, mirrors, quiet):
    """Download ``target``'s file from the first mirror that sends it with the right md5."""
    failures = []
    for mirror in mirrors:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                _download(mirror + target.name, out, md5, quiet)
            os.replace(tmp, target)
            return
        except (OSError, ValueError, http.client.HTTPException) as e:
            # Connection refused, HTTP errors, timeouts, cut-off or wrong files: next mirror.
            failures.append(f"{mirror}: {_why(e)}")
            if not quiet and mirror != mirrors[-1]:
                # Through tqdm, so that the note never lands in the middle of a bar.
                tqdm.write(f"{target.name}: {failures[-1]}; trying the next mirror",
                           file=sys.stderr)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise DataError(f"{target.name}: download failed from every mirror "
                    f"({'; '.join(failures)})")


def _download(url, out, md5, quiet):
    """Copy ``url`` into the open file ``out`` behind a progress bar of its bytes; raise
    ValueError when what arrived does not have the expected ``md5``."""
    # disable=None: no bar unless stderr is a terminal, so logs and pipes stay clean.
    bar = tqdm(desc=url.rsplit("/", 1)[-1], unit="B", unit_scale=True, unit_divisor=1024,
               disable=True if quiet else None)
    h = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            bar.reset(total=int(response.headers.get("Content-Length") or 0) or None)
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                h.update(chunk)
                bar.update(len(chunk))
        if h.hexdigest() != md5:
            raise ValueError("wrong file (md5 mismatch)")
    except BaseException:
        bar.leave = False  # a failed attempt leaves no half-drawn bar behind
        raise
    finally:
        bar.close()


def _why(error):
    """A few words on why a download failed, fit for a one-line message."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}".rstrip()
    if isinstance(error, urllib.error.URLError):
        error = error.reason  # the OSError (refused, unknown host, timed out) or a text
    if isinstance(error, http.client.IncompleteRead):
        return "connection closed before the end of the file"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_mnist(data_dir=None, sample=False, download=True, train=True):
    """Load MNIST: the bundled sample, or the full set found by :func:`find_data_dir`.
    ``train=False`` loads (and downloads) the test set alone: the training images and
    labels are then empty."""
    folder = SAMPLE_DIR if sample else find_data_dir(data_dir, download, train)
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
