"""Saving without loss: whole folders swapped in one step, files replaced in one step,
and one writer per save folder at a time, on Linux, macOS and Windows alike."""

import ctypes
import errno
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:  # everywhere but Windows
    msvcrt = None

# Windows locks are mandatory (a locked byte cannot even be read): the lock is taken on a
# byte past the end of the pid written at the start of the lock file, which stays readable.
_LOCKED_BYTE = 64


def replace_file(path, write):
    """Make ``path`` by ``write(tmp)`` on a temporary file beside it, renamed over it at the end."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        with _naming(path):
            write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj):
    replace_file(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1)))


def write_checksum(path):
    """Write the SHA-256 of the file ``path`` beside it (``model.pdiparams`` gets
    ``model.sha256``), so that a reader can tell a damaged file from a whole one."""
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_suffix(".sha256").write_text(f"{digest}  {path.name}\n")


def checksum_matches(path):
    """Whether the file ``path`` still has the SHA-256 written beside it (True where
    none was written)."""
    path = Path(path)
    record = path.with_suffix(".sha256")
    if not record.is_file():
        return True
    return record.read_text().split()[:1] == [hashlib.sha256(path.read_bytes()).hexdigest()]


def write_folder(target, fill, carry=False):
    """Make the folder ``target`` by ``fill(folder)`` on a new folder beside it, which then
    takes its place in one step (see :func:`replace_folder`). ``carry=True`` keeps every
    entry of the old ``target`` that ``fill`` did not write."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        with _naming(target, inside=new):
            fill(new)
        if carry and target.is_dir():
            carry_over(target, new)
        os.chmod(new, 0o755)
        replace_folder(new, target)
    finally:
        shutil.rmtree(new, ignore_errors=True)


@contextmanager
def _naming(path, inside=None):
    """Give an OSError that names no file (a full disk while writing, say), or only a file
    of the temporary folder ``inside``, the ``path`` being written: what the user named."""
    try:
        yield
    except OSError as e:
        if e.filename is None or (inside and str(e.filename).startswith(str(inside))):
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def check_save_dir(save_dir):
    """Refuse, before any training, a save folder that cannot hold or be replaced by a model.

    A best pass's model takes the folder's place as a whole (:func:`write_folder`), so
    the folder must be one that can be renamed: not the current folder or one above it,
    not a mount point, in a parent folder that can be written.
    """
    save_dir = Path(save_dir)
    if save_dir.exists() and not save_dir.is_dir():
        raise ConfigError(f"{save_dir}: is a file, not a folder; choose another save_dir=...")
    here, target = Path.cwd().resolve(), save_dir.resolve()
    if target == here or target in here.parents or os.path.ismount(target):
        raise ConfigError(f"{save_dir}: each best pass replaces the save folder as a whole, "
                          f"so it cannot be the current folder, one above it or a mount point; "
                          f"choose a folder of its own, such as save_dir='model'")
    made = not save_dir.exists()
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=save_dir).close()
        os.rmdir(tempfile.mkdtemp(dir=target.parent))
    except OSError as e:
        raise ConfigError(f"{save_dir}: cannot write the model there ({e.strerror}); "
                          f"choose another save_dir=...") from None
    finally:  # a training refused later, before it saves, leaves no empty folder behind
        if made and save_dir.is_dir():
            shutil.rmtree(save_dir, ignore_errors=True)


def replace_folder(new, target):
    """Put the folder ``new`` in the place of ``target``, then delete the old one.

    Where the system swaps two folders in one step (Linux, macOS), ``target`` is at every
    moment the old complete folder or the new one. Elsewhere two renames: ``target`` to
    ``.NAME.old``, then ``new`` to ``target``. If the second fails the first is undone; if
    the process dies between them, :func:`recover_folder` puts the old folder back.
    """
    new, target = Path(new), Path(target)
    recover_folder(target)
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)
        return
    old = _old(target)
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:  # also Ctrl-C in a notebook, which lives on afterwards
        if not target.exists():
            os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def recover_folder(target):
    """Finish a two-rename :func:`replace_folder` cut short by a crash: the old folder goes
    back in place if the new one never got there, and is deleted if it did."""
    target = Path(target)
    old = _old(target)
    if old.exists():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(old, target)


def _old(target):
    return target.with_name(f".{target.name}.old")


def _swap_function():
    """The C library's one-step swap of two paths, as ``f(a, b) -> 0 or -1``; None where
    there is none (``ctypes.CDLL(None)`` raises TypeError on Windows)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if hasattr(libc, "renameat2"):  # Linux, glibc 2.28+
            return lambda a, b: libc.renameat2(-100, a, -100, b, 2)  # AT_FDCWD, RENAME_EXCHANGE
        return lambda a, b, renamex_np=libc.renamex_np: renamex_np(a, b, 2)  # macOS: RENAME_SWAP
    except (OSError, TypeError, AttributeError):
        return None


def _exchange(a, b):
    """Swap two paths in one step; False where the system or the file system cannot."""
    swap = _swap_function()
    if swap is None:
        return False
    if swap(os.fsencode(a), os.fsencode(b)) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def carry_over(old_folder, new_folder):
    """Put into ``new_folder`` every entry of ``old_folder`` it lacks: as hard links, which
    cost neither time nor space, where they can be made, else as copies (FAT and exFAT, some
    network drives, and two folders on different file systems cannot be linked)."""
    old_folder, new_folder = Path(old_folder), Path(new_folder)
    for entry in old_folder.iterdir() if old_folder.is_dir() else ():
        target = new_folder / entry.name
        if target.exists():
            continue
        if entry.is_dir():
            shutil.copytree(entry, target, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, target)


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except (OSError, AttributeError):  # AttributeError: no os.link at all
        shutil.copy2(src, dst)
    return dst


_NESTED = set()  # folders held with nested=True


@contextmanager
def exclusive(folder, nested=False):
    """Hold ``folder`` for one writer: a second one is refused with a clear error.

    The lock file lies beside the folder (``.NAME.lock``), so swapping the folder itself
    does not drop it: ``flock`` where there is one, ``msvcrt.locking`` on Windows, and
    nothing where neither exists. Leftovers of writers that were killed are removed, and a
    swap they cut short is completed. ``nested=True`` lets the training it starts in too.
    """
    folder = Path(folder)
    if folder in _NESTED:
        yield
        return
    with open(folder.parent / f".{folder.name}.lock", "a+") as lock:
        if not _lock(lock.fileno()):
            lock.seek(0)
            raise ConfigError(f"{folder}: another training (pid {lock.read().strip() or '?'}) "
                              f"is saving there; wait for it or choose another save_dir=...")
        try:
            lock.seek(0)
            lock.truncate()
            lock.write(str(os.getpid()))
            lock.flush()
            recover_folder(folder)
            for stale in folder.parent.glob(f".{folder.name}.new-*"):
                shutil.rmtree(stale, ignore_errors=True)
            if nested:
                _NESTED.add(folder)
            yield
        finally:
            _NESTED.discard(folder)
            if fcntl is None and msvcrt is not None:  # closing unlocks only "eventually" there
                os.lseek(lock.fileno(), _LOCKED_BYTE, os.SEEK_SET)
                msvcrt.locking(lock.fileno(), msvcrt.LK_UNLCK, 1)


def _lock(fd):
    """Lock the open file ``fd`` without waiting: False if another writer holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        elif msvcrt is not None:
            os.lseek(fd, _LOCKED_BYTE, os.SEEK_SET)  # msvcrt locks from the current position
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except (BlockingIOError, PermissionError):  # flock: EWOULDBLOCK; msvcrt: EACCES
        return False
    return True
