"""The worker starter: N processes on this machine as one data-parallel job, watched until
every one has ended, none left behind (see :mod:`.parallel`)."""

import contextlib
import ctypes
import importlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait
from pathlib import Path

from ..errors import RecognizeDigitsError, TrainingInterrupted, WorkerError, one_line
from ..plumbing.fast_cpu import CORES
from ..plumbing.output import last_line
from ..plumbing.signals import handling
from ..plumbing.scratch import scratch_folder
from .parallel import world

GRACE_SECONDS = 3  # how long the others get to finish once one worker has stopped
# How long the workers may all be silent before the run is taken as stuck (a worker
# stopped with SIGSTOP, or waiting for ever on one that is): far above the longest silence
# of a healthy run (starting, or testing a pass, on a busy machine)
SILENT_SECONDS = 60


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def worker_env(rank, size, ports, gpu):
    """The environment Paddle's launcher would give worker ``rank`` of ``size`` on one
    machine: its place, the master's address and the backend (NCCL with one GPU each, or
    gloo), and one computing thread."""
    endpoints = [f"127.0.0.1:{p}" for p in ports[1:]]
    env = {"PADDLE_TRAINER_ID": rank, "PADDLE_TRAINERS_NUM": size, "PADDLE_LOCAL_RANK": rank,
           "PADDLE_LOCAL_SIZE": size, "PADDLE_RANK_IN_NODE": rank,
           "PADDLE_MASTER": f"127.0.0.1:{ports[0]}",
           "PADDLE_TRAINER_ENDPOINTS": ",".join(endpoints),
           "PADDLE_CURRENT_ENDPOINT": endpoints[rank],
           "PADDLE_DISTRI_BACKEND": "nccl" if gpu else "gloo", "OMP_NUM_THREADS": 1}
    if gpu:
        env["FLAGS_selected_gpus"] = rank
    return {k: str(v) for k, v in env.items()}


def _new_worker():
    """In a new worker, before it starts: be killed when the starter dies, however it dies,
    and may run on every core (not only where OpenMP bound the starter's thread; Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if CORES:
        os.sched_setaffinity(0, CORES)


def run_workers(target, kwargs, workers, gpu=False, on_message=None, kept=lambda: None):
    """Run ``target(send, **kwargs)`` (``"module:function"``) in ``workers`` new processes
    on this machine, as one data-parallel job; return the value of each, by rank.

    ``send(message)`` passes a message from rank 0 to ``on_message`` here (the others'
    are dropped), but for ``("progress", what)``: every worker says so what it last did,
    kept here to name it should it stop answering. Ctrl-C (or SIGTERM) here is passed on
    to every worker, which stop together (see :mod:`.train`); a second one stops them at
    once (a :class:`TrainingInterrupted` that blames none). When a worker fails, dies or
    stays silent :data:`SILENT_SECONDS` while none makes progress, the others are
    stopped: its error is raised here (the package's own errors as they are, anything
    else as a :class:`WorkerError` naming the worker and saying what ``kept()`` says was
    kept to go on from), no worker is left running. The job's files are in a scratch
    folder (:func:`scratch_folder`): a starter killed before it removes them leaves them
    to the next one to remove.
    """
    procs, readers, logs = [], {}, []
    with scratch_folder("workers") as folder:
        try:
            (folder / "job.pickle").write_bytes(pickle.dumps((target, kwargs)))
            ports = _free_ports(workers + 1)
            for rank in range(workers):
                reader, writer = Pipe(duplex=False)
                readers[reader] = rank
                logs.append(open(folder / f"worker{rank}.log", "wb"))
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "recognize_digits.engines.workers",
                     str(folder / "job.pickle"), str(writer.fileno())],
                    env={**os.environ, **worker_env(rank, workers, ports, gpu)},
                    pass_fds=[writer.fileno()], stdin=subprocess.DEVNULL, stdout=logs[-1],
                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_new_worker))
                writer.close()
            with _forward_signals(procs) as presses:
                results, errors = _collect(procs, dict(readers), on_message,
                                           folder / "job.pickle", presses)
            if len(presses) > 1 and len(results) < workers:  # stopped at once: none to blame
                kind, value = errors.get(0, (None, None))
                raise value if isinstance(value, TrainingInterrupted) else TrainingInterrupted(
                    "; ".join(filter(None, ["stopped at once by a second Ctrl-C", kept()])))
            if errors:
                rank, (kind, value) = min(errors.items(),
                                          key=lambda item: (_blame(*item[1]), item[0]))
                if kind == "error" and isinstance(value, (RecognizeDigitsError, KeyboardInterrupt)):
                    raise value
                how = (f"failed: {one_line(value)}" if kind == "error" else value
                       if kind == "silent" else _ended(value, folder / f"worker{rank}.log"))
                raise WorkerError("; ".join(filter(None, [
                    f"worker {rank} of {workers} {how}; every worker was stopped", kept()])))
            return [results[r] for r in range(workers)]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
            for f in [*logs, *readers]:
                f.close()


def _blame(kind, value):
    """Which of several workers' ends to report (the lowest first): the package's own
    error, which says what to do; a worker stopped or killed from outside (a kill, the
    out-of-memory killer, SIGSTOP); a Python error; last, the ends that follow from
    another's, such as gloo aborting a worker whose peer is gone."""
    if kind == "error":
        return 0 if isinstance(value, (RecognizeDigitsError, KeyboardInterrupt)) else 2
    return 1 if kind == "silent" or value < 0 and value != -signal.SIGABRT else 3


def _ended(returncode, log):
    """How a worker ended without a word to the starter: "was killed by signal 9
    (SIGKILL)" (sent from outside: nothing it wrote says why), or how it ended and the last
    line it wrote that says something (its own last error)."""
    if returncode == 0:
        return "ended without a result"
    if returncode < 0:
        name = {number.value: number.name for number in signal.Signals}.get(-returncode)
        how = f"was killed by signal {-returncode}" + (f" ({name})" if name else "")
        if -returncode == signal.SIGKILL:
            return how
    else:
        how = f"exited with {returncode}"
    said = _log_end(log)
    return how if said == "no message" else f"{how}: {said}"


def _collect(procs, readers, on_message, job, presses):
    """Pass rank 0's messages on until every worker has ended; ``(results, errors)`` by
    rank, an error being ``("error", exception)``, ``("died", returncode)`` or
    ``("silent", what it last did)``. Once one worker fails, the others get
    :data:`GRACE_SECONDS` to end on their own, then are killed; once none has said
    anything for :data:`SILENT_SECONDS`, the stopped one (or the one silent the longest)
    is blamed and all are killed; after a second Ctrl-C (``presses``), they get as long
    to end. ``job`` is removed once every worker has read it."""
    results, errors, failed_at, loaded = {}, {}, None, set()
    heard, did = [time.monotonic()] * len(procs), [None] * len(procs)
    while readers or any(p.poll() is None for p in procs):
        for reader in wait(list(readers), timeout=0.2):
            rank = readers[reader]
            try:
                kind, value = reader.recv()
            except (EOFError, OSError):
                del readers[reader]
                continue
            heard[rank] = time.monotonic()
            if kind == "result":
                results[rank] = value
            elif kind == "error":
                errors[rank] = ("error", value)
            elif kind == "progress":
                did[rank] = value
            elif kind == "loaded":
                loaded.add(rank)
                if len(loaded) == len(procs):  # the whole of MNIST, maybe: not kept longer
                    job.unlink(missing_ok=True)
            elif rank == 0 and on_message:
                on_message(kind, value)
        for rank, p in enumerate(procs):
            if p.poll() is not None and p.returncode and rank not in errors:
                errors[rank] = ("died", p.returncode)
            elif p.poll() == 0 and rank not in results and not readers:
                errors[rank] = ("died", 0)
        now = time.monotonic()
        if not errors and now - max(heard) > SILENT_SECONDS:
            rank = min(range(len(procs)), key=lambda r: (not _stopped(procs[r].pid), heard[r]))
            errors[rank] = ("silent", f"stopped answering {now - heard[rank]:.0f} s ago, "
                            + (f"after {did[rank]}" if did[rank] else "before its first batch"))
            failed_at = now - GRACE_SECONDS  # stuck waiting for it: no grace
        if (errors or len(presses) > 1) and failed_at is None:
            failed_at = now
        if failed_at is not None and now - failed_at >= GRACE_SECONDS:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            for p in procs:
                p.wait()
            break
    return results, errors


def _stopped(pid):
    """Whether process ``pid`` is stopped (SIGSTOP, a debugger; Linux)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "Tt"
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def _forward_signals(procs):
    """Pass Ctrl-C and SIGTERM on to every worker (they are in sessions of their own, so
    that a terminal's Ctrl-C reaches them once, through here): the first stops them after
    a batch, the second at once; a third stops waiting for them (they are killed). Yields
    the list of signals received."""
    presses = []

    def forward(signum, frame):
        presses.append(signum)
        if len(presses) > 2:
            raise KeyboardInterrupt
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGINT)
    with handling(forward):
        yield presses


def _log_end(log):
    """The last line a worker wrote that says something."""
    try:
        return last_line(log.read_text(errors="replace"))
    except OSError:
        return "no message"


def _worker(job, fd):
    """A worker's life: run the job, send its result or its error, exit."""
    channel = Connection(int(fd), readable=False)
    rank = world()[0]

    def send(message):
        if rank == 0 or message[0] == "progress":
            channel.send(message)
    try:
        target, kwargs = pickle.loads(Path(job).read_bytes())
        channel.send(("loaded", None))
        module, name = target.split(":")
        channel.send(("result", getattr(importlib.import_module(module), name)(send, **kwargs)))
    except BaseException as e:  # noqa: BLE001 - every failure goes to the starter
        try:
            channel.send(("error", e))
        except Exception:  # noqa: BLE001 - an exception that cannot be pickled
            channel.send(("error", WorkerError(f"{type(e).__name__}: {one_line(e)}")))
        if not isinstance(e, (RecognizeDigitsError, KeyboardInterrupt)):
            raise
        sys.exit(1)


if __name__ == "__main__":
    _worker(*sys.argv[1:3])
