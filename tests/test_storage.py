"""recognize_digits.storage on every system: the Linux calls, and the fallbacks used where they
are missing (Windows, macOS), simulated here by taking the Linux calls away."""

import ctypes
import errno
import fcntl
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest

from recognize_digits.plumbing import storage
from recognize_digits.errors import ConfigError

TESTS = Path(__file__).resolve().parent


def make(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def contents(folder):
    return {p.name: p.read_text() for p in folder.iterdir()}


def hidden(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# --- swapping folders ----------------------------------------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_exchange_swaps_in_one_step_on_linux(tmp_path):
    a, b = make(tmp_path / "a", x="a"), make(tmp_path / "b", x="b")
    if not storage._exchange(a, b):
        pytest.skip("this file system cannot exchange")
    assert (contents(a), contents(b)) == ({"x": "b"}, {"x": "a"})


def cdll_raising(error):
    def cdll(*args, **kwargs):
        raise error
    return cdll


@pytest.mark.parametrize("cdll", [
    cdll_raising(TypeError("NoneType")),  # Windows: ctypes.CDLL(None)
    cdll_raising(OSError("no C library")),
    lambda *args, **kwargs: types.SimpleNamespace(),  # neither renameat2 nor renamex_np
], ids=["windows", "no-libc", "no-swap-call"])
def test_without_a_swap_call_two_renames_replace_the_folder(tmp_path, monkeypatch, cdll):
    monkeypatch.setattr(storage.ctypes, "CDLL", cdll)
    target, new = make(tmp_path / "model", x="old"), make(tmp_path / ".model.new-1", x="new")
    assert storage._exchange(new, target) is False
    storage.replace_folder(new, target)
    assert contents(target) == {"x": "new"}
    assert hidden(tmp_path) == []


def test_macos_renamex_np_is_called_with_rename_swap(tmp_path, monkeypatch):
    calls = []

    def renamex_np(a, b, flags):  # swaps as macOS would
        calls.append((a, b, flags))
        os.rename(a, a + b".tmp")
        os.rename(b, a)
        os.rename(a + b".tmp", b)
        return 0

    macos = types.SimpleNamespace(renamex_np=renamex_np)
    monkeypatch.setattr(storage.ctypes, "CDLL", lambda *args, **kwargs: macos)
    target, new = make(tmp_path / "model", x="old"), make(tmp_path / ".model.new-1", x="new")
    storage.replace_folder(new, target)
    assert calls == [(os.fsencode(new), os.fsencode(target), 2)]  # RENAME_SWAP
    assert contents(target) == {"x": "new"} and hidden(tmp_path) == []


@pytest.mark.parametrize("code", [errno.ENOTSUP, errno.EINVAL, errno.ENOSYS])
def test_a_file_system_that_cannot_swap_gets_two_renames(tmp_path, monkeypatch, code):
    def refuse(*args):
        ctypes.set_errno(code)
        return -1

    libc = types.SimpleNamespace(renameat2=refuse)
    monkeypatch.setattr(storage.ctypes, "CDLL", lambda *args, **kwargs: libc)
    target, new = make(tmp_path / "model", x="old"), make(tmp_path / ".model.new-1", x="new")
    storage.replace_folder(new, target)
    assert contents(target) == {"x": "new"} and hidden(tmp_path) == []


def test_other_swap_errors_are_raised(tmp_path, monkeypatch):
    def refuse(*args):
        ctypes.set_errno(errno.EACCES)
        return -1

    monkeypatch.setattr(storage.ctypes, "CDLL",
                        lambda *args, **kwargs: types.SimpleNamespace(renameat2=refuse))
    with pytest.raises(PermissionError):
        storage._exchange(tmp_path / "a", tmp_path / "b")


def test_a_failed_second_rename_is_undone(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "_exchange", lambda a, b: False)
    target, new = make(tmp_path / "model", x="old"), make(tmp_path / ".model.new-1", x="new")
    rename = os.rename

    def rename_refused_for_new(src, dst):  # as when Windows holds a file of ``new`` open
        if Path(src) == new:
            raise PermissionError(errno.EACCES, "in use", str(src))
        rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_refused_for_new)
    with pytest.raises(PermissionError):
        storage.replace_folder(new, target)
    assert contents(target) == {"x": "old"} and hidden(tmp_path) == [".model.new-1"]


KILLED_DURING_SWAP = """
import os, shutil, signal, sys
from recognize_digits.plumbing import storage

storage._exchange = lambda a, b: False  # two renames, as on Windows
die = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[3] == "between-renames":
    rename = os.rename
    os.rename = lambda src, dst: rename(src, dst) if str(src) == sys.argv[2] else die()
else:  # after both renames, while deleting the old folder
    shutil.rmtree = die
storage.replace_folder(sys.argv[1], sys.argv[2])
"""


@pytest.mark.parametrize("moment, kept", [("between-renames", "old"), ("deleting-old", "new")])
@pytest.mark.parametrize("recover", ["exclusive", "replace_folder"])
def test_killed_during_a_two_rename_swap_the_next_run_recovers(tmp_path, moment, kept, recover):
    target, new = make(tmp_path / "model", x="old"), make(tmp_path / ".model.new-1", x="new")
    proc = subprocess.run([sys.executable, "-c", KILLED_DURING_SWAP, str(new), str(target),
                           moment], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (tmp_path / ".model.old").is_dir()  # the old complete folder, at a known place
    assert target.is_dir() == (moment == "deleting-old")
    if recover == "exclusive":  # where a training starts
        with storage.exclusive(target):
            assert contents(target) == {"x": kept}
        assert hidden(tmp_path) == [".model.lock"]
    else:  # the next save, even without the lock
        storage.replace_folder(make(tmp_path / ".model.new-2", x="newer"), target)
        assert contents(target) == {"x": "newer"}
        assert ".model.old" not in hidden(tmp_path)


# --- carrying files over -------------------------------------------------------------------

def old_and_new(tmp_path):
    old = make(tmp_path / "old", kept="old", replaced="old")
    make(old / "curves", a="a", b="b")
    return old, make(tmp_path / "new", replaced="new")


def test_carry_over_links_where_it_can(tmp_path):
    old, new = old_and_new(tmp_path)
    storage.carry_over(old, new)
    assert sorted(p.name for p in new.iterdir()) == ["curves", "kept", "replaced"]
    assert (new / "replaced").read_text() == "new"  # what the new folder has is kept
    for name in ("kept", "curves/a", "curves/b"):
        assert os.path.samefile(old / name, new / name)


@pytest.mark.parametrize("no_link", ["oserror", "missing"])
def test_carry_over_copies_where_there_are_no_hard_links(tmp_path, monkeypatch, no_link):
    if no_link == "oserror":  # FAT, exFAT, some network drives, another file system
        def link(src, dst, **kwargs):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        monkeypatch.setattr(os, "link", link)
    else:
        monkeypatch.delattr(os, "link")
    old, new = old_and_new(tmp_path)
    storage.carry_over(old, new)
    assert (new / "replaced").read_text() == "new"
    for name, text in (("kept", "old"), ("curves/a", "a"), ("curves/b", "b")):
        assert (new / name).read_text() == text
        assert not os.path.samefile(old / name, new / name)


def test_carry_over_from_nothing(tmp_path):
    new = make(tmp_path / "new", x="new")
    storage.carry_over(tmp_path / "missing", new)
    assert contents(new) == {"x": "new"}


# --- one writer at a time ------------------------------------------------------------------

class FakeMsvcrt:
    """``msvcrt.locking`` as on Windows: a byte range from the current position, non-blocking
    or unlock, EACCES when taken. Made of POSIX record locks, which are held per process, so
    the second writer must be another process, as it is for real."""

    LK_UNLCK, LK_NBLCK = 0, 2
    calls = []

    @classmethod
    def locking(cls, fd, mode, nbytes):
        cls.calls.append((mode, os.lseek(fd, 0, os.SEEK_CUR), nbytes))
        cmd = fcntl.LOCK_UN if mode == cls.LK_UNLCK else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.lockf(fd, cmd, nbytes, 0, os.SEEK_CUR)
        except OSError as error:
            raise PermissionError(errno.EACCES, "Permission denied") from error


def as_on_windows(monkeypatch):
    monkeypatch.setattr(storage, "fcntl", None)
    monkeypatch.setattr(storage, "msvcrt", FakeMsvcrt)
    monkeypatch.setattr(FakeMsvcrt, "calls", [])


HOLDER = """
import sys
from recognize_digits.plumbing import storage

if sys.argv[2] == "windows":
    sys.path.insert(0, sys.argv[3])
    from test_storage import FakeMsvcrt
    storage.fcntl, storage.msvcrt = None, FakeMsvcrt
with storage.exclusive(sys.argv[1]):
    print("holding", flush=True)
    sys.stdin.read()  # until the test lets go
"""


@pytest.mark.parametrize("system", ["linux", "windows"])
def test_a_second_writer_is_refused_while_another_process_holds_the_folder(
        tmp_path, monkeypatch, system):
    if system == "windows":
        as_on_windows(monkeypatch)
    folder = tmp_path / "model"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), system, str(TESTS)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "holding\n"
        message = (rf"another training \(pid {holder.pid}\) is saving there; "
                   rf"wait for it or choose another save_dir=...")
        with pytest.raises(ConfigError, match=message):
            with storage.exclusive(folder):
                pass
        if system == "windows":  # the pid stays readable: it lies before the locked byte
            assert (tmp_path / ".model.lock").stat().st_size < storage._LOCKED_BYTE
    finally:
        holder.communicate("", timeout=60)
    assert holder.returncode == 0
    with storage.exclusive(folder):  # free again
        assert (tmp_path / ".model.lock").read_text() == str(os.getpid())


def test_the_windows_lock_is_taken_and_released_on_one_byte_past_the_pid(tmp_path, monkeypatch):
    as_on_windows(monkeypatch)
    with storage.exclusive(tmp_path / "model"):
        pass
    at = storage._LOCKED_BYTE
    assert FakeMsvcrt.calls == [(FakeMsvcrt.LK_NBLCK, at, 1), (FakeMsvcrt.LK_UNLCK, at, 1)]


def test_without_any_lock_call_training_still_saves(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "fcntl", None)
    monkeypatch.setattr(storage, "msvcrt", None)
    make(tmp_path / ".model.new-1")
    with storage.exclusive(tmp_path / "model"):
        assert hidden(tmp_path) == [".model.lock"]  # leftovers cleared all the same


def test_a_linked_save_folder_is_locked_and_replaced_where_it_points(sample, tmp_path):
    from recognize_digits.errors import ConfigError
    from recognize_digits.training import train

    from conftest import quiet, subset

    real, link = tmp_path / "real", tmp_path / "current"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    train("softmax", epochs=1, data=subset(sample, 300), save_dir=link, seed=0, **quiet())
    assert link.is_symlink() and (real / "model.pdiparams").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".real.lock", "current", "real"]
    with storage.exclusive(real), pytest.raises(ConfigError, match="another training"):
        train("softmax", epochs=1, data=subset(sample, 300), save_dir=link, **quiet())


def test_a_dead_process_s_scratch_folder_is_removed_at_the_next_start_a_live_one_kept(
        tmp_path, monkeypatch):
    import subprocess
    import sys
    import tempfile

    from recognize_digits.plumbing.scratch import remove_abandoned, scratch_folder

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run(  # os._exit: dies as a killed process does, nothing cleaned up
        [sys.executable, "-c", "import os\nfrom recognize_digits.plumbing.scratch import "
         "scratch_folder\nheld = scratch_folder('t')\nprint(held.__enter__(), flush=True)\n"
         "os._exit(0)"],
        capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert Path(dead).is_dir() and Path(dead).parent == tmp_path
    with scratch_folder("t") as mine:
        assert not Path(dead).exists() and mine.is_dir()
        remove_abandoned("t")  # another start meanwhile: this one is alive
        assert mine.is_dir()
    assert not list(tmp_path.iterdir())
