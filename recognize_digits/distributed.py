"""Data-parallel training: several processes, each on its share of every batch.

Paddle's answer to more cores, GPUs or machines than one process can use is
``paddle.distributed``: one process (a *worker*) per core, GPU or machine, each holding
the whole network. Every worker deals the same seeded batches, computes the gradient of
its share of each one, and ``paddle.DataParallel`` averages the gradients of all workers
before the optimizer's step (gloo on CPUs, NCCL on GPUs), so every worker takes the same
step and their parameters stay identical: one training, computed N ways at once.

``train(..., workers=N)`` starts the N workers on this machine (:func:`run_workers`), each
running ``train`` with :class:`DataParallelEngine`, and passes rank 0's events and log
lines on. On several machines, Paddle's launcher starts them instead (see the README):
``train`` sees its place in the environment the launcher sets (:func:`world`).

What is not the same as one process: batch normalisation normalises each worker's share
by that share's own statistics (Paddle's SyncBatchNorm, which would pool them, has no CPU
kernel), and each worker's running statistics follow its own shares; they are averaged
over the workers before every validation, test, save and checkpoint. Networks without
batch normalisation train exactly as one process would, up to floating-point rounding.
"""

import contextlib
import ctypes
import importlib
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait
from pathlib import Path

import numpy as np
import paddle
import paddle.distributed as dist

from .dynamic import DynamicEngine
from .errors import ConfigError, RecognizeDigitsError, one_line
from .models import loss_and_accuracy
from .speed import CORES, available_cores

GRACE_SECONDS = 3  # how long the others get to finish once one worker has stopped


class WorkerError(RecognizeDigitsError, RuntimeError):
    """A worker of a data-parallel training failed or died: every worker was stopped."""


def world():
    """``(rank, size, local_rank, local_size)`` of this process in a data-parallel
    training, from the environment its starter (ours or Paddle's launcher) set; ``(0, 1,
    0, 1)`` in a process of its own."""
    env = os.environ.get
    size = int(env("PADDLE_TRAINERS_NUM", "1"))
    rank = int(env("PADDLE_TRAINER_ID", "0"))
    return rank, size, int(env("PADDLE_LOCAL_RANK", rank)), int(env("PADDLE_LOCAL_SIZE", size))


def share(n, rank, size):
    """The ``(start, stop)`` of worker ``rank``'s part of ``n`` items: contiguous, sizes
    differing by one at most (64 over 3 workers: 21, 21, 22)."""
    return rank * n // size, (rank + 1) * n // size


def shares(n, size):
    """The sizes of the ``size`` parts of ``n`` items."""
    return [b - a for a, b in (share(n, r, size) for r in range(size))]


# ---------------------------------------------------------------------------------------
# the engine: what each worker runs

class DataParallelEngine(DynamicEngine):
    """The dynamic engine, one of ``size`` workers: each step trains on this worker's
    share of the batch, and ``paddle.DataParallel`` averages the gradients."""

    def __init__(self, model, learning_rate, seed, place, onednn=None, threads=None,
                 log=print):
        _pin_to_core()
        if not dist.is_initialized():
            dist.init_parallel_env()
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        super().__init__(model, learning_rate, seed, place, onednn, threads, log)
        # the same seed gives every worker the same start; DataParallel also copies
        # rank 0's parameters to the others
        self.parallel = paddle.DataParallel(self.net)
        self.count = 0  # images in this worker's share of the last batch

    @staticmethod
    def device(place):
        # one GPU a worker: the one its starter chose (FLAGS_selected_gpus)
        return (f"gpu:{dist.ParallelEnv().device_id}"
                if isinstance(place, paddle.CUDAPlace) else "cpu")

    def describe(self, metrics):
        super().describe(metrics)
        metrics["workers"] = self.size

    def step(self, x, y):
        """This worker's share of one Adam step; its own mean cost and accuracy, which
        :meth:`agree` makes the batch's."""
        start, stop = share(len(x), self.rank, self.size)
        self.count = stop - start
        if not self.count:  # a batch smaller than the workers: take part, weigh 0
            start, stop = 0, 1
        cost, acc = loss_and_accuracy(self.parallel(paddle.to_tensor(x[start:stop])),
                                      paddle.to_tensor(y[start:stop]))
        # DataParallel averages the workers' gradients; weighing each share's mean
        # cost by its size makes that average the gradient of the whole batch's mean
        (cost * (self.count * self.size / len(x))).backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        return float(cost), float(acc)

    def _sum(self, values):
        """``values`` summed over every worker (float64)."""
        total = paddle.to_tensor(np.asarray(values, np.float64))
        dist.all_reduce(total)
        return total.numpy()

    def agree(self, cost, acc, stop):
        total_cost, correct, count, stops = self._sum(
            [cost * self.count, acc * self.count, self.count, float(stop)])
        return total_cost / count, correct / count, stops > 0

    def average_statistics(self):
        """Give every worker the mean of their batch-norm running statistics."""
        for statistic in self.net.parameters():
            if statistic.stop_gradient:  # batch norm's running mean and variance
                dist.all_reduce(statistic)
                statistic.set_value(statistic / self.size)

    def test(self, images, labels):
        """Each worker tests its share of ``images``; the mean over all of them."""
        if not len(images):
            return None, None
        self.average_statistics()
        start, stop = share(len(images), self.rank, self.size)
        cost, acc = super().test(images[start:stop], labels[start:stop])
        count = stop - start
        total_cost, correct, count = self._sum(
            [cost * count, round(acc * count), count] if count else [0.0, 0.0, 0.0])
        return total_cost / count, correct / count

    def save_inference_model(self, prefix):
        self.average_statistics()
        super().save_inference_model(prefix)

    def save_checkpoint(self, prefix):
        self.average_statistics()
        super().save_checkpoint(prefix)


def _pin_to_core():
    """Keep this worker on a core of its own when the machine has one for each (the
    workers compute on one thread each; left to float, two can share a core)."""
    _, _, local_rank, local_size = world()
    if CORES and local_size <= len(CORES):
        os.sched_setaffinity(0, {CORES[local_rank]})


# ---------------------------------------------------------------------------------------
# the starter: N workers on this machine

def check_workers(workers, graph, batch_size, gpu):
    """How many workers train: ``workers``, or under Paddle's launcher as many as it
    started. A :class:`ConfigError` for a number that cannot work: with the static graph
    (Paddle's static data parallelism does not run on PIR), more than a batch's images,
    or more than this machine's cores (CPU) or GPUs, one a worker (two on one only take
    turns)."""
    started = world()[1]
    if started > 1:  # under the launcher (or in one of our own workers)
        if workers not in (1, started):
            raise ConfigError(f"workers={workers}, but the launcher started {started} "
                              f"workers; leave workers= out under the launcher")
        workers = started
    if workers > 1 and graph != "dynamic":
        raise ConfigError(f"workers={workers} trains the dynamic graph (Paddle's static data "
                          f"parallelism does not run on the new IR): add graph='dynamic'")
    if workers > batch_size:
        raise ConfigError(f"a batch of {batch_size} cannot be split over {workers} workers; "
                          f"choose workers={batch_size} or fewer")
    if workers > started:  # to be started here
        have, what = ((paddle.device.cuda.device_count(), "GPUs") if gpu else
                      (available_cores(), "cores"))
        if workers > have:
            raise ConfigError(f"workers={workers}: this process may use {have} {what}, one "
                              f"a worker; choose workers={have} or fewer")
    return workers


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


def run_workers(target, kwargs, workers, gpu=False, on_message=None):
    """Run ``target(send, **kwargs)`` (``"module:function"``) in ``workers`` new processes
    on this machine, as one data-parallel job; return the value of each, by rank.

    ``send(message)`` passes a message from rank 0 to ``on_message`` here (the others'
    are dropped). Ctrl-C (or SIGTERM) here is passed on to every worker, which stop
    together (see :mod:`.train`); a second one stops them at once. When a worker fails or
    dies, the others are stopped: its error is raised here (the package's own errors as
    they are, anything else as a :class:`WorkerError` naming the worker), no worker is
    left running.
    """
    folder = Path(tempfile.mkdtemp(prefix="recognize-digits-workers-"))
    procs, readers, logs = [], {}, []
    try:
        (folder / "job.pickle").write_bytes(pickle.dumps((target, kwargs)))
        ports = _free_ports(workers + 1)
        for rank in range(workers):
            reader, writer = Pipe(duplex=False)
            readers[reader] = rank
            logs.append(open(folder / f"worker{rank}.log", "wb"))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "recognize_digits.distributed", str(folder / "job.pickle"),
                 str(writer.fileno())],
                env={**os.environ, **worker_env(rank, workers, ports, gpu)},
                pass_fds=[writer.fileno()], stdin=subprocess.DEVNULL, stdout=logs[-1],
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_new_worker))
            writer.close()
        with _forward_signals(procs):
            results, errors = _collect(procs, dict(readers), on_message)
        if errors:
            rank, (kind, value) = min(errors.items(), key=lambda item: (_blame(*item[1]), item[0]))
            if kind == "error" and isinstance(value, (RecognizeDigitsError, KeyboardInterrupt)):
                raise value
            how = (f"failed: {one_line(value)}" if kind == "error" else
                   f"{value}: {_last_line(folder / f'worker{rank}.log')}")
            raise WorkerError(f"worker {rank} of {workers} {how}; every worker was stopped")
        return [results[r] for r in range(workers)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for f in [*logs, *readers]:
            f.close()
        shutil.rmtree(folder, ignore_errors=True)


def _blame(kind, value):
    """Which of several workers' ends to report (the lowest first): the package's own
    error, which says what to do; a worker killed from outside (a kill, the out-of-memory
    killer); a Python error; last, the ends that follow from another's, such as gloo
    aborting a worker whose peer is gone."""
    if kind == "error":
        return 0 if isinstance(value, (RecognizeDigitsError, KeyboardInterrupt)) else 2
    return 1 if "signal" in value and f"signal {int(signal.SIGABRT)}" not in value else 3


def _collect(procs, readers, on_message):
    """Pass rank 0's messages on until every worker has ended; ``(results, errors)`` by
    rank, an error being ``("error", exception)`` or ``("died", how)``. Once one worker
    fails, the others get :data:`GRACE_SECONDS` to end on their own, then are killed."""
    results, errors, failed_at = {}, {}, None
    while readers or any(p.poll() is None for p in procs):
        for reader in wait(list(readers), timeout=0.2):
            rank = readers[reader]
            try:
                kind, value = reader.recv()
            except (EOFError, OSError):
                del readers[reader]
                continue
            if kind == "result":
                results[rank] = value
            elif kind == "error":
                errors[rank] = ("error", value)
            elif rank == 0 and on_message:
                on_message(kind, value)
        for rank, p in enumerate(procs):
            if p.poll() is not None and p.returncode and rank not in errors:
                errors[rank] = ("died", (f"was killed by signal {-p.returncode}"
                                         if p.returncode < 0 else f"exited with {p.returncode}"))
            elif p.poll() == 0 and rank not in results and not readers:
                errors[rank] = ("died", "ended without a result")
        if errors and failed_at is None:
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > GRACE_SECONDS:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            for p in procs:
                p.wait()
            break
    return results, errors


@contextlib.contextmanager
def _forward_signals(procs):
    """Pass Ctrl-C and SIGTERM on to every worker (they are in sessions of their own, so
    that a terminal's Ctrl-C reaches them once, through here): the first stops them after
    a batch, the second at once; a third stops waiting for them (they are killed)."""
    presses = []

    def forward(signum, frame):
        presses.append(signum)
        if len(presses) > 2:
            raise KeyboardInterrupt
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGINT)
    previous = {}
    with contextlib.suppress(ValueError):  # not the main thread: nothing to forward
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, forward)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)


def _last_line(log):
    """The last line a worker wrote that says something."""
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
        lines = [line for line in lines if line and not line.startswith(("File ", "^", "~"))]
        if lines:
            return lines[-1]
    return "it wrote nothing"


def _worker(job, fd):
    """A worker's life: run the job, send its result or its error, exit."""
    channel = Connection(int(fd), readable=False)
    rank = world()[0]
    send = (lambda message: channel.send(message)) if rank == 0 else (lambda message: None)
    try:
        target, kwargs = pickle.loads(Path(job).read_bytes())
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


def lockstep(model, batches, workers=2, seed=0):
    """Train ``model`` on ``batches`` in one process and in ``workers`` at once, from the
    same start, to compare the two step by step. Returns a dict: ``one`` and ``several``,
    the batch costs of each; ``spread``, after each step, the largest difference of any
    trained parameter between the workers (0.0: identical); ``difference``, the largest
    between the trained parameters of the two trainings at the end. (Batch norm's running
    statistics are each worker's own until :meth:`~DataParallelEngine.average_statistics`.)"""
    with DynamicEngine.mode():
        engine = DynamicEngine(model, 0.001, seed, paddle.CPUPlace())
        one = [engine.step(x, y)[0] for x, y in batches]
        alone = {p.name: p.numpy() for p in engine.net.parameters() if not p.stop_gradient}
    several = run_workers("recognize_digits.distributed:lockstep_worker",
                          {"model": model, "batches": batches, "seed": seed}, workers)[0]
    return {"one": one, "several": several["costs"], "spread": several["spread"],
            "difference": max(float(np.abs(alone[k] - v).max())
                              for k, v in several["parameters"].items())}


def lockstep_worker(send, model, batches, seed):
    """A worker of :func:`lockstep`."""
    with DataParallelEngine.mode():
        engine = DataParallelEngine(model, 0.001, seed, paddle.CPUPlace())
        costs, spread = [], []
        for x, y in batches:
            costs.append(engine.agree(*engine.step(x, y), False)[0])
            trained = [p for p in engine.net.parameters() if not p.stop_gradient]
            flat = paddle.concat([p.flatten() for p in trained])
            high, low = flat.clone(), flat.clone()
            dist.all_reduce(high, op=dist.ReduceOp.MAX)
            dist.all_reduce(low, op=dist.ReduceOp.MIN)
            spread.append(float((high - low).max()))
        return {"costs": costs, "spread": spread,
                "parameters": {p.name: p.numpy() for p in trained}}


@contextlib.contextmanager
def role(save_dir, resume):
    """Where this process writes: ``save_dir`` for rank 0 (or a process of its own), a
    folder of its own for the other workers, which write the same files (the same
    collective steps) but keep none; on ``resume`` it starts with ``save_dir``'s
    checkpoint. Yields ``(save_dir, is rank 0)``."""
    if world()[0] == 0:
        yield save_dir, True
        return
    folder = Path(tempfile.mkdtemp(prefix="recognize-digits-worker-")) / "model"
    try:
        if resume and (Path(save_dir) / "checkpoint").is_dir():
            shutil.copytree(Path(save_dir) / "checkpoint", folder / "checkpoint")
        yield str(folder), False
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


if __name__ == "__main__":
    _worker(*sys.argv[1:3])
