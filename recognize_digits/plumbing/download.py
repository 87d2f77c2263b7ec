"""Finding MNIST's four files: in a folder given, in the folder ``RECOGNIZE_DIGITS_DATA``
names, in Paddle's own dataset cache, or else downloaded into that cache, each file from
the first mirror that sends it with the right md5, written under a temporary name and
renamed only once it is whole."""

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..data import ENV_VAR, find_file
from ..errors import DataError

PADDLE_CACHE = Path("~/.cache/paddle/dataset/mnist")

# The official gzip files and their md5 sums, as Paddle's downloader checks them.
FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

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


def _complete(folder, files):
    return folder is not None and all(find_file(Path(folder), name) for name in files)


def _files(train=True):
    """The files to find: all four, or the test set's two."""
    return FILES if train else {k: v for k, v in FILES.items() if k.startswith("t10k")}


def found(data_dir=None, files=None):
    """The folder holding ``files`` (default: all four): ``data_dir``, else the one the
    environment names, else Paddle's cache if it has them; None if none does."""
    files = files or FILES
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
    folder = found(data_dir, files)
    if folder is not None:
        return folder
    cache = PADDLE_CACHE.expanduser()
    if not download:
        raise DataError(_no_data_message(cache))
    try:
        return fetch(cache, files=files)
    except DataError as e:
        raise DataError(f"{e}. {_no_data_message(cache)}") from None


def _no_data_message(cache):
    # in the words of the Python API; the command line says them as its options
    return (f"MNIST not found: give its folder with data_dir=..., set {ENV_VAR}, put the "
            f"files in {cache}, download them with 'recognize-digits download' when online, "
            f"or use the bundled sample with sample=True")


def mirrors_from(first):
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


def download(mirror=None):
    """``recognize-digits download``: the folder that holds MNIST, after downloading it into
    Paddle's cache if no folder has it yet; ``mirror`` (a URL, or a list of them) is tried
    before :data:`MIRRORS`."""
    folder = found()
    if folder is not None:
        return folder
    try:
        return fetch(PADDLE_CACHE, mirrors_from(mirror))
    except DataError as e:
        raise DataError(f"{e}; try again later, or give a mirror that serves the four files "
                        f"with mirror=...") from None
