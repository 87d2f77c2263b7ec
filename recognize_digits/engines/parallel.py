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
import dataclasses
import os
import shutil
import time
from pathlib import Path

import numpy as np
import paddle
import paddle.distributed as dist

from ..engine import select_place
from ..errors import ConfigError
from ..events import StepEvent
from ..models import loss_and_accuracy
from ..plumbing.fast_cpu import CORES, available_cores
from ..plumbing.scratch import scratch_folder
from ..settings import Settings
from ..training import Training, checkpoint, load, settle
from .dynamic import DynamicEngine


def train_in_parallel(given, data, save_dir, resume, init, handler, log, progress=None):
    """``train(..., workers=N)``: in the process that starts the workers, check everything,
    start them and pass rank 0's events and log lines on; in a worker (ours, or one Paddle's
    launcher started), train its share, and tell ``progress(event)`` of every batch and
    pass (rank 0 alone reports to ``handler`` and ``log``). The value is rank 0's
    metrics."""
    with role(save_dir, resume) as (save_dir, first):
        machine_log = log  # one line on each machine: gloo's interface there
        if not first:  # rank 0 alone reports
            log = handler = (lambda *_: None)
        report = handler if progress is None else (lambda event: (progress(event), handler(event)))
        settings, state = settle(given, save_dir, resume, lambda settings: dataclasses.replace(
            settings, workers=check_workers(settings)))  # before any work, as every setting
        data = load(data, state, save_dir)
        if settings.workers > world()[1]:  # this process starts the workers
            from .workers import run_workers

            log(f"Training in {settings.workers} worker processes, each batch of "
                f"{settings.batch_size} split into "
                f"{', '.join(map(str, shares(settings.batch_size, settings.workers)))} images")
            job = dict(settings=dataclasses.asdict(settings), data=data, save_dir=save_dir,
                       resume=resume, init=init)
            started = time.time()
            return run_workers("recognize_digits.engines.parallel:worker", job, settings.workers,
                               gpu=uses_gpu(settings), on_message=lambda kind, value: (
                                   handler if kind == "event" else log)(value),
                               kept=lambda: kept(save_dir, resume, started))[0]
        join(machine_log if world()[2] == 0 else None)
        return ParallelTraining(settings, data, save_dir, state, DataParallelEngine).run(
            report, log, init)


def worker(send, settings, data, save_dir, resume, init):
    """What each worker started by :func:`train_in_parallel` runs: the training, its
    events and log lines sent to the process that started the workers, and what it last
    did (every worker), for the starter to say should it stop answering."""
    return train_in_parallel(Settings.given(**settings), data, save_dir, resume, init,
                             lambda event: send(("event", event)),
                             lambda line: send(("log", line)),
                             lambda event: send(("progress", (
                                 f"pass {event.pass_id} batch {event.batch_id}"
                                 if isinstance(event, StepEvent) else
                                 f"testing pass {event.pass_id}"))))


class ParallelTraining(Training):
    """A training in several workers keeps a checkpoint after every pass but the last:
    should a worker die or stop answering, the others cannot write one (every save is a
    collective step), and the run goes on from the last pass's (see :func:`kept`)."""

    def keep_best_pass(self, event):
        super().keep_best_pass(event)
        if event.pass_id + 1 < self.settings.epochs:
            checkpoint(self.save_dir).save(self, event.pass_id + 1, 0,
                                           self.rng.bit_generator.state, [[], [], []])


def kept(save_dir, resume, since):
    """What a training the workers left unfinished may go on from: the checkpoint in
    ``save_dir`` written ``since`` (a time), or the one it resumed from."""
    from ..plumbing.checkpoint import Checkpoint

    checkpoint = Checkpoint(save_dir)
    try:
        state = checkpoint.read()
        fresh = resume or (checkpoint.folder / "state.json").stat().st_mtime >= since - 2
    except (ConfigError, OSError):
        fresh = False
    if not fresh:
        return "nothing to go on from (a checkpoint is written after every pass)"
    return (f"the checkpoint of pass {state['pass_id']}, batch {state['batch_id']} is in "
            f"{checkpoint.folder}: {checkpoint.how_to_go_on()}")


def join(log=None):
    """Join the other workers in Paddle's process group. Gloo's interface is chosen first
    (Paddle reads it as the group is made; see :mod:`.network`), and ``log`` is told which
    and why; once every worker has joined, worker 0 binds the store it holds to the
    workers' interface."""
    from . import network

    name, chosen = network.choose_interface()
    if log:
        host, _ = network.master()
        why = ("GLOO_SOCKET_IFNAME names it" if not chosen else
               "every worker is on this machine" if network.on_one_machine() else
               f"this machine reaches the master {host} through it")
        log(f"Workers talk over {name}: {why}" if name else
            f"Workers talk over gloo's default interface: none found that reaches the master "
            f"{host}; if they cannot connect, set GLOO_SOCKET_IFNAME to the one that does")
    dist.init_parallel_env()
    if world()[0] == 0:
        network.keep_store_on(network.workers_interface(), network.master()[1])


def saved_elsewhere(save_dir):
    """What a worker other than 0 says at the end, under Paddle's launcher: worker 0 saved
    the model, on its machine (the first of the launcher's endpoints); None in worker 0
    or a process of its own."""
    rank, size, _, _ = world()
    if rank == 0:
        return None
    host = os.environ.get("PADDLE_TRAINER_ENDPOINTS", "").split(",")[0].rpartition(":")[0]
    return (f"Worker {rank} of {size} finished; worker 0 saved the best pass's inference "
            f"model in {save_dir} on its machine" + (f" ({host})" if host else ""))


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


class DataParallelEngine(DynamicEngine):
    """The dynamic engine, one of ``size`` workers: each step trains on this worker's
    share of the batch, and ``paddle.DataParallel`` averages the gradients."""

    def __init__(self, model, learning_rate, seed, place):
        _pin_to_core()
        if not dist.is_initialized():
            join()
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        super().__init__(model, learning_rate, seed, place)
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


def uses_gpu(settings):
    return not isinstance(select_place(settings.device), paddle.CPUPlace)


def check_workers(settings):
    """How many workers train: ``settings.workers``, or under Paddle's launcher as many as
    it started. A :class:`ConfigError` for a number that cannot work: with the static graph
    (Paddle's static data parallelism does not run on PIR), more than a batch's images, or
    more than this machine's cores (CPU) or GPUs, one a worker (two on one only take
    turns)."""
    workers, graph, batch_size = settings.workers, settings.graph, settings.batch_size
    started = world()[1]
    if started > 1:  # under the launcher (or in one of our own workers)
        if workers not in (1, started):
            raise ConfigError(f"workers={workers}, but the launcher started {started} "
                              f"workers; leave workers= out under the launcher")
        workers = started
    if workers > 1 and graph != "dynamic":
        raise ConfigError(f"workers={workers} trains the dynamic graph (Paddle's static data "
                          f"parallelism does not run on the new IR): add graph='dynamic'")
    limits = [(batch_size, f"a batch of {batch_size} cannot be split over {workers} workers")]
    if workers > started:  # to be started here
        have, what = ((paddle.device.cuda.device_count(), "GPUs") if uses_gpu(settings) else
                      (available_cores(), "cores"))
        limits.append((have, f"workers={workers}: this process may use {have} {what}, one "
                             f"a worker"))
    top, why = min(limits)  # the tighter limit: what it suggests is accepted
    if workers > top:
        raise ConfigError(f"{why}; choose workers={top} or fewer")
    return workers


@contextlib.contextmanager
def role(save_dir, resume):
    """Where this process writes: ``save_dir`` for rank 0 (or a process of its own), a
    folder of its own for the other workers, which write the same files (the same
    collective steps) but keep none; on ``resume`` it starts with ``save_dir``'s
    checkpoint. Yields ``(save_dir, is rank 0)``."""
    if world()[0] == 0:
        yield save_dir, True
        return
    with scratch_folder("worker") as folder:  # removed at the next start if killed
        if resume and (Path(save_dir) / "checkpoint").is_dir():
            shutil.copytree(Path(save_dir) / "checkpoint", folder / "model" / "checkpoint")
        yield str(folder / "model"), False
