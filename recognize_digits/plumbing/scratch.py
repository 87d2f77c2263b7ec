"""Scratch folders in the temporary folder that no dead process leaves behind for long: the
job files of data-parallel workers (the whole of MNIST, pickled), which a starter killed
from outside (a Jupyter kernel restarted) cannot remove itself."""

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from . import storage


# A scratch folder stays locked (this file in it) while the process that made it lives.
_ALIVE = ".alive"


def remove_abandoned(kind):
    """Remove the scratch folders of ``kind`` (see :func:`scratch_folder`) whose process is
    gone: killed before it could remove its own (a Jupyter kernel restarted, a worker killed
    with its starter). A folder in use is locked, so it is left alone."""
    if storage.fcntl is None and storage.msvcrt is None:  # no lock tells them apart
        return
    for folder in Path(tempfile.gettempdir()).glob(f"recognize-digits-{kind}-*"):
        try:
            # a folder without the file is no scratch folder: left alone
            with open(folder / _ALIVE, "rb") as lock:
                if storage._lock(lock.fileno()):
                    shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # being removed by its process, or another user's
            continue


@contextmanager
def scratch_folder(kind):
    """A new folder ``recognize-digits-KIND-...`` in the temporary folder, for this process
    alone, removed at the end; the folders of its kind that dead processes left behind are
    removed first (:func:`remove_abandoned`)."""
    remove_abandoned(kind)
    # locked under a hidden name, then named: another process never sees it unlocked
    born = Path(tempfile.mkdtemp(prefix=f".recognize-digits-{kind}-"))
    folder = born.with_name(born.name[1:])
    lock = open(born / _ALIVE, "wb")
    try:
        storage._lock(lock.fileno())
        born.rename(folder)
        yield folder
    finally:
        lock.close()  # first: Windows removes no open file
        for path in (folder, born):
            shutil.rmtree(path, ignore_errors=True)
