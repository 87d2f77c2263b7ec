"""Training: the chapter's loop and its event handler.

As in the chapter: Adam at 0.001, batches of 64, a test pass after every training pass
and the inference model of the best pass saved. Unlike the chapter, the best pass is
chosen on a validation set held out from the training images (the first 1/12 of them:
5,000 of MNIST's 60,000, the usual 55,000 / 5,000 split), so the test set grades the
model without having picked it. What depends on the graph mode is its engine's (see
:mod:`.engine`); the chapter's ``train_program``, ``optimizer_program`` and ``Programs``
belong to the static one and are imported here too.
"""

import inspect
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle

from .augment import augment as augment_batch
from .checkpoint import SETTINGS, Checkpoint, StopOnCtrlC
from .data import batches, load_mnist, validation_size
from .distributed import DataParallelEngine, check_workers, role, run_workers, shares, world
from .dynamic import DynamicEngine
from .engine import MODEL_PREFIX, TEST_BATCH_SIZE, select_place  # noqa: F401 (re-exported)
from .errors import ConfigError, DivergedError, TrainingInterrupted, check_positive
from .models import check_model
from .static_graph import Programs, StaticEngine, optimizer_program, train_program  # noqa: F401
from .storage import check_save_dir, exclusive, write_checksum, write_folder, write_json

DEFAULT_SAVE_DIR = "recognize_digits.inference.model"
ENGINES = {"static": StaticEngine, "dynamic": DynamicEngine}  # the ways of training, by graph


@dataclass
class StepEvent:
    """Sent to the event handler after every training batch."""

    pass_id: int
    batch_id: int
    cost: float
    acc: float
    batches: int = 0  # batches in this pass


@dataclass
class PassEvent:
    """Sent to the event handler after every pass, once the validation and test passes ran.

    ``val_cost`` and ``val_acc`` are None when no validation set is held out.
    """

    pass_id: int
    train_cost: float
    train_acc: float
    val_cost: float | None
    val_acc: float | None
    test_cost: float
    test_acc: float
    seconds: float


def log_every_100(event, log=print):
    """The default event handler: the chapter's log lines."""
    if isinstance(event, StepEvent) and event.batch_id % 100 == 0:
        log(f"Pass {event.pass_id}, Batch {event.batch_id}, Cost {event.cost:.6f}")
    elif isinstance(event, PassEvent):
        validation = ("" if event.val_cost is None else
                      f" (validation: Cost {event.val_cost:.6f}, Acc {event.val_acc:.4f})")
        log(f"Test with Pass {event.pass_id}, Cost {event.test_cost:.6f}, "
            f"Acc {event.test_acc:.4f}{validation}")


def train(model="cnn", epochs=5, batch_size=64, learning_rate=0.001, device="auto",
          data_dir=None, sample=False, data=None, save_dir=DEFAULT_SAVE_DIR, seed=None,
          validation=None, event_handler=None, log=print, onednn=None, threads=None,
          resume=False, augment=False, graph="static", init=None, workers=1):
    """Train ``model`` and keep the inference model of its best pass in ``save_dir``.

    ``data`` (an :class:`~recognize_digits.data.MNIST`) overrides ``data_dir``/``sample``.
    ``validation`` training images (default 1/12 of them) are held out to choose the
    best pass by their cost; with ``validation=0`` all are trained on and the last pass
    is kept. ``augment=True`` trains on randomly moved and re-stroked copies of the
    training digits (see :mod:`.augment`), for a model that reads users' own digits
    better; validation and test digits are never changed (the chapter trains without).
    ``event_handler(event)`` receives a :class:`StepEvent` after each batch and a
    :class:`PassEvent` after each pass; by default the chapter's log lines are printed.
    ``onednn`` and ``threads`` choose the fast CPU path (see :mod:`.speed`; by default
    it is used where it works). Ctrl-C stops training after the current batch (or test
    pass, or save) with a checkpoint in ``save_dir/checkpoint``; ``resume=True``
    continues from it, with the settings it was started with (any other given is
    refused), exactly as if it had not stopped. ``graph="dynamic"`` trains the same
    network as a ``paddle.nn.Layer`` run eagerly (see :mod:`.dynamic`), everything else
    alike. ``init`` (name: value, a saved model's parameters) starts from those instead
    of random ones (see :mod:`.finetune`). ``workers=N`` (dynamic graph only) trains in
    N processes at once, each on its share of every batch (see :mod:`.distributed`).
    Returns the metrics also written to ``save_dir/metrics.json``.
    """
    save_dir = os.path.realpath(save_dir)  # through links: the real folder is locked, replaced
    with role(save_dir, resume) as (save_dir, first):  # a data-parallel worker's place
        if not first:  # rank 0 alone reports
            log = event_handler = (lambda *_: None)
        run = prepare(model, epochs, batch_size, learning_rate, seed, validation, device,
                      threads, data or (data_dir, sample), save_dir, resume, augment, graph,
                      workers)
        handler = event_handler or (lambda event: log_every_100(event, log))
        if run.workers > world()[1]:  # this process starts the workers, which come back here
            log(f"Training in {run.workers} worker processes, each batch of {run.batch_size} "
                f"split into {', '.join(map(str, shares(run.batch_size, run.workers)))} images")
            settings = dict(model=model, epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate, device=device, data=run.data,
                            save_dir=save_dir, seed=run.seed, validation=validation,
                            onednn=onednn, threads=threads, resume=resume, augment=augment,
                            graph=graph, init=init, workers=run.workers)
            return run_workers("recognize_digits.train:train_in_worker", settings,
                               run.workers, gpu=not isinstance(run.place, paddle.CPUPlace),
                               on_message=lambda kind, value: (handler if kind == "event"
                                                               else log)(value))[0]
        return run_loop(run, handler, log, onednn, threads, init)


def train_in_worker(send, **settings):
    """What each worker of ``train(..., workers=N)`` runs: ``train``, its events and log
    lines sent to the process that started the workers."""
    return train(**settings, event_handler=lambda event: send(("event", event)),
                 log=lambda line: send(("log", line)))


def run_loop(run, handler, log, onednn, threads, init):
    """Train ``run`` pass after pass (see :func:`train`)."""
    with exclusive(run.save_dir), run.Engine.mode(), StopOnCtrlC() as ctrl_c:
        start(run, onednn, threads, log, init)
        for pass_id in range(run.pass_id, run.epochs):
            train_cost, train_acc = run_pass(run, pass_id, handler, ctrl_c)
            val_cost, val_acc = run.engine.test(*run.validation)
            test_cost, test_acc = run.engine.test(*run.test)
            event = PassEvent(pass_id, train_cost, train_acc, val_cost, val_acc,
                              test_cost, test_acc, time.perf_counter() - run.pass_start)
            keep_best_pass(run, event)
            handler(event)
            pressed = run.engine.agree(0.0, 0.0, ctrl_c.pressed)[2]
            if pressed and pass_id + 1 < run.epochs:  # pressed while testing or saving
                interrupt(run, pass_id + 1, 0, run.rng.bit_generator.state, [[], [], []])
    return finish(run, log)


DEFAULTS = {k: inspect.signature(train).parameters[k].default for k in SETTINGS}


class Run:
    """One training: its settings, data, engine, metrics, and where it has got to."""


def prepare(model, epochs, batch_size, learning_rate, seed, validation, device, threads, data,
            save_dir, resume, augment=False, graph="static", workers=1):
    """Check every setting before any work, load the data and hold out the validation set;
    on ``resume``, take the settings and the position from the checkpoint."""
    run, checkpoint = Run(), Checkpoint(save_dir)
    state = checkpoint.read() if resume else None
    if state:  # settings left at their defaults are taken from the checkpoint
        given = zip(SETTINGS, (model, epochs, batch_size, learning_rate, seed, validation,
                               augment, graph, workers))
        checkpoint.check_settings(state, {k: v for k, v in given if v != DEFAULTS[k]})
        model, epochs, batch_size, learning_rate, seed, validation, augment, graph, workers = (
            state["metrics"][k] for k in SETTINGS)
    check_model(model)
    if graph not in ENGINES:
        raise ConfigError(f"graph={graph!r}: must be 'static' or 'dynamic'")
    check_positive(epochs=epochs, batch_size=batch_size, threads=threads, workers=workers)
    check_positive(whole=False, learning_rate=learning_rate)
    if seed is not None and not (isinstance(seed, (int, np.integer)) and 0 <= seed < 2**31):
        raise ConfigError(f"seed={seed!r}: must be a whole number from 0 to {2**31 - 1}")
    run.place = select_place(device)
    workers = check_workers(workers, graph, batch_size, not isinstance(run.place, paddle.CPUPlace))
    check_save_dir(save_dir)
    data = load_mnist(*data) if isinstance(data, tuple) else data
    if state:
        checkpoint.check_data(state, data.source)
    held_out = validation_size(len(data.train_images), validation)
    run.validation = data.train_images[:held_out], data.train_labels[:held_out]
    run.train = data.train_images[held_out:], data.train_labels[held_out:]
    run.test = data.test_images, data.test_labels
    run.data, run.is_sample, run.save_dir = data, data.is_sample, Path(save_dir)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") >> 1
    run.model, run.epochs, run.batch_size, run.learning_rate, run.seed, run.augment, run.graph = (
        model, epochs, batch_size, learning_rate, seed, bool(augment), graph)
    run.workers = workers
    run.Engine, run.checkpoint = DataParallelEngine if workers > 1 else ENGINES[graph], checkpoint
    run.rng, run.state = np.random.default_rng(seed), state
    run.metrics = state["metrics"] if state else {
        "model": model, "epochs": epochs, "batch_size": batch_size,
        "learning_rate": learning_rate, "seed": seed, "validation": held_out,
        "augment": run.augment, "graph": graph, "workers": workers,
        "chosen_by": "validation cost" if held_out else "last pass",
        "device": str(run.place), "data": data.source, "passes": [], "best_pass": None}
    run.pass_id = state["pass_id"] if state else 0
    return run


def start(run, onednn, threads, log, init=None):
    """Make the engine (programs or Layer, on the fast path where it works, parameters
    initialised, or taken from ``init``), and on resume load its parameters and Adam's
    moments from the checkpoint."""
    run.engine = run.Engine(run.model, run.learning_rate, run.seed, run.place, onednn, threads,
                            log)
    run.engine.describe(run.metrics)
    if init is not None:
        run.engine.load_parameters(init)
    if run.state:
        run.checkpoint.load_into(run.engine)
        run.rng.bit_generator.state = run.state["rng"]
        log(f"Resuming {run.model} at pass {run.pass_id}, batch {run.state['batch_id']}")


def run_pass(run, pass_id, handler, ctrl_c):
    """Train on every batch of one pass; return the pass's mean cost and accuracy."""
    pass_rng = run.rng.bit_generator.state  # to deal this pass's batches again on resume
    resumed = run.state if run.state and run.state["pass_id"] == pass_id else None
    costs, accs, sizes = resumed["partial"] if resumed else ([], [], [])
    run.pass_start = time.perf_counter() - (resumed["seconds"] if resumed else 0)
    images, labels = run.train
    count = -(-len(images) // run.batch_size)
    for batch_id, (x, y) in enumerate(batches(images, labels, run.batch_size, True, run.rng)):
        if batch_id < len(costs):
            continue  # done before the interruption
        if run.augment:  # its own generator per batch, so a resumed pass draws the same
            x = augment_batch(x, np.random.default_rng([run.seed, pass_id, batch_id]))
        cost, acc, stop = run.engine.agree(*run.engine.step(x, y), ctrl_c.pressed)
        costs.append(cost), accs.append(acc), sizes.append(len(x))
        if diverged(costs):
            best = run.metrics["best_pass"]
            kept = (f"the model of pass {best} stays in {run.save_dir}" if best is not None
                    else "nothing was saved")
            raise DivergedError(
                f"training diverged: the cost is {costs[-1]:.4g} at pass {pass_id}, batch "
                f"{batch_id}; {kept}. Try a smaller learning rate than {run.learning_rate}")
        handler(StepEvent(pass_id, batch_id, costs[-1], accs[-1], count))
        # several workers stop together, after the batch they agreed on; one process also
        # after a Ctrl-C its event handler saw
        if stop or ctrl_c.pressed and run.workers == 1:
            interrupt(run, pass_id, batch_id + 1, pass_rng, [costs, accs, sizes])
    return (float(np.average(costs, weights=sizes)), float(np.average(accs, weights=sizes)))


def keep_best_pass(run, event):
    """Record the pass; save its model if it is the best so far by validation cost (or,
    with no validation set, if it is the last); otherwise only update metrics.json."""
    metrics = run.metrics
    metrics["passes"].append(vars(event))
    best = metrics["best_pass"]
    if event.val_cost is None or best is None or event.val_cost < metrics["passes"][best]["val_cost"]:
        metrics["best_pass"] = event.pass_id
        save_model(run, metrics)
    else:
        write_json(run.save_dir / "metrics.json", metrics)


def finish(run, log):
    """Drop the checkpoint and report the chosen pass's test results."""
    run.checkpoint.remove()
    metrics = run.metrics
    best = metrics["passes"][metrics["best_pass"]]
    how = (f"lowest validation cost, {best['val_cost']:.6f}" if best["val_cost"] is not None
           else "the last, with no validation set")
    log(f"Best pass is {metrics['best_pass']} ({how}), testing Avgcost is {best['test_cost']:.6f}")
    log(f"The classification accuracy is {100 * best['test_acc']:.2f}%"
        + (" (on the bundled sample)" if run.is_sample else ""))
    return metrics


def diverged(costs):
    """Whether a pass's batch costs so far show a run that blew up.

    A cost that is not finite, or the last 20 averaging over ten times the 2.3 of
    guessing uniformly: Paddle's cross entropy clips log(0), so a run that blows up
    shows a cost stuck far above guessing rather than inf.
    """
    return not np.isfinite(costs[-1]) or (
        len(costs) >= 20 and np.mean(costs[-20:]) > 10 * np.log(10) > costs[0])


def interrupt(run, pass_id, batch_id, rng_state, partial):
    """Save a checkpoint to go on from ``batch_id`` of ``pass_id``, then stop."""
    run.checkpoint.write(run.engine, {
        "pass_id": pass_id, "batch_id": batch_id, "rng": rng_state, "partial": partial,
        "seconds": time.perf_counter() - run.pass_start if batch_id else 0,
        "metrics": run.metrics})
    raise TrainingInterrupted(
        f"stopped at pass {pass_id}, batch {batch_id}; a checkpoint is in "
        f"{run.checkpoint.folder}: go on with resume=True and save_dir={str(run.save_dir)!r} "
        f"(and the same data)")


def save_model(run, metrics):
    """Save the inference model and ``metrics.json`` as one: both are written to a new
    folder, which then takes the place of ``run.save_dir`` in one step. Anything else in
    ``save_dir`` is carried over."""
    def fill(folder):
        run.engine.save_inference_model(folder / MODEL_PREFIX)
        write_checksum(folder / f"{MODEL_PREFIX}.pdiparams")
        write_json(folder / "metrics.json", metrics)
    write_folder(run.save_dir, fill, carry=True)
