"""Saving without loss: whole folders swapped in one step, files replaced in one step,
and one writer per save folder at a time."""

import ctypes
import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError

try:
    import fcntl
except ImportError:  # not on Windows: there the lock is skipped
    fcntl = None


def replace_file(path, write):
    """Make ``path`` by ``write(tmp)`` on a temporary file beside it, renamed over it at the end."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj):
    replace_file(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1)))


def new_folder(target):
    """An empty temporary folder beside ``target``, to be filled and then swapped in."""
    target = Path(target)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))


def replace_folder(new, target):
    """Put the folder ``new`` in the place of ``target``, then delete the old one.

    On Linux both are exchanged by one system call, so at every moment ``target`` is
    either the old complete folder or the new one. Elsewhere, two renames.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.rename(new, target)
        return
    if not _exchange(new, target):
        old = new.with_name(new.name + ".old")
        os.rename(target, old)
        os.rename(new, target)
        new = old
    shutil.rmtree(new, ignore_errors=True)


def _exchange(a, b):
    """Swap two paths atomically with renameat2(RENAME_EXCHANGE); False where unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextmanager
def exclusive(folder):
    """Hold ``folder`` for one writer: a second one is refused with a clear error.

    The lock file lies beside the folder (``.NAME.lock``), so swapping the folder
    itself does not drop it. Leftovers of writers that were killed are removed.
    """
    folder = Path(folder)
    lock_path = folder.parent / f".{folder.name}.lock"
    with open(lock_path, "a+") as lock:
        if fcntl is not None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                raise ConfigError(f"{folder}: another training (pid {lock.read().strip() or '?'}) "
                                  f"is saving there; wait for it or choose another --save-dir") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        for stale in folder.parent.glob(f".{folder.name}.new-*"):
            shutil.rmtree(stale, ignore_errors=True)
        yield
