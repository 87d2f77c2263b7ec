"""Training: the chapter's loop and its event handler.

As in the chapter: Adam at 0.001, batches of 64, a test pass after every training pass
and the inference model of the best pass saved. Unlike the chapter, the best pass is
chosen on a validation set held out from the training images (the first 1/12 of them:
5,000 of MNIST's 60,000, the usual 55,000 / 5,000 split), so the test set grades the
model without having picked it. What depends on the graph mode is its engine's (see
:mod:`.engine`; the chapter's is :class:`~.static_graph.StaticEngine`).
"""

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from .data import MNIST, batches, load_mnist, validation_size
from .engine import MODEL_PREFIX, select_place
from .errors import DivergedError
from .events import PassEvent, StepEvent, log_every_100
from .plumbing.model_files import load_program, refused_parameter
from .plumbing.signals import StopOnCtrlC
from .plumbing.storage import check_save_dir, exclusive, write_checksum, write_folder, write_json
from .settings import Settings
from .static_graph import StaticEngine

DEFAULT_SAVE_DIR = "recognize_digits.inference.model"


def train(model=None, *, data=None, data_dir=None, sample=False, save_dir=DEFAULT_SAVE_DIR,
          resume=False, init=None, event_handler=None, log=print, **settings):
    """Train ``model`` ("softmax", "mlp" or "cnn") and keep the inference model of its best
    pass in ``save_dir``; return the metrics also written to ``save_dir/metrics.json``.

    ``settings`` are those of :class:`~.settings.Settings`, the chapter's by default
    (``epochs=5``, ``batch_size=64``, ``learning_rate=0.001``, ``seed``, ``validation``,
    ``graph="static"``, ...). ``data`` (an :class:`~.data.MNIST`) overrides
    ``data_dir``/``sample``. ``validation`` training images (default 1/12 of them) are held
    out to choose the best pass by their cost; with ``validation=0`` all are trained on and
    the last pass is kept. ``event_handler(event)`` receives a :class:`StepEvent` after each
    batch and a :class:`PassEvent` after each pass; by default the chapter's log lines are
    printed. Ctrl-C stops training after the current batch (or test pass, or save) with a
    checkpoint in ``save_dir/checkpoint``; ``resume=True`` continues from it, with the
    settings it was started with, exactly as if it had not stopped. ``init`` (name: value,
    a saved model's parameters) starts from those instead of random ones (see
    :mod:`.own_digits.finetune`). ``workers=N`` trains in N processes at once (see
    :mod:`.engines.parallel`).
    """
    given = Settings.given(model=model, **settings)
    save_dir = os.path.realpath(save_dir)  # through links: the real folder is locked, replaced
    handler = event_handler or (lambda event: log_every_100(event, log))
    parallel = given.get("workers", 1) > 1 or int(os.environ.get("PADDLE_TRAINERS_NUM", 1)) > 1
    if not parallel:
        settings, state = settle(given, save_dir, resume)
        parallel = settings.workers > 1  # a checkpoint of several workers goes on in as many
    if parallel:
        from .engines.parallel import train_in_parallel

        return train_in_parallel(given, data or (data_dir, sample), save_dir, resume, init,
                                 handler, log)
    return Training(settings, load(data or (data_dir, sample), state, save_dir), save_dir,
                    state).run(handler, log, init)


def settle(given, save_dir, resume, adjust=None):
    """The training's settings and, on ``resume``, its checkpoint's state, checked before
    any work: the ``given`` settings and the defaults, or the checkpoint's, then
    ``adjust(settings)`` if given; the seed drawn if none is given, to be recorded."""
    state = checkpoint(save_dir).read() if resume else None
    settings = checkpoint(save_dir).settings(state, given) if state else Settings(**given)
    settings = adjust(settings.check()) if adjust else settings.check()
    check_save_dir(save_dir)
    if settings.seed is None:
        seed = int.from_bytes(os.urandom(4), "little") >> 1
        settings = dataclasses.replace(settings, seed=seed)
    return settings, state


def load(data, state, save_dir):
    """The data to train on: ``data``, or found by ``(data_dir, sample)``; on resume, the
    checkpoint's training's own."""
    data = data if isinstance(data, MNIST) else load_mnist(*data)
    if state:
        checkpoint(save_dir).check_data(state, data.source)
    return data


def checkpoint(save_dir):
    """The Ctrl-C checkpoint of the training that saves into ``save_dir`` (its module is
    loaded only when a training resumes or stops)."""
    from .plumbing.checkpoint import Checkpoint

    return Checkpoint(save_dir)


def engine_for(settings):
    """The engine class of ``settings.graph`` (the dynamic one is loaded only if used)."""
    if settings.graph == "dynamic":
        from .engines.dynamic import DynamicEngine

        return DynamicEngine
    return StaticEngine


class Training:
    """One training under way: its settings, data, engine and record (the metrics), and
    where it has got to. ``state`` is the checkpoint's when it resumes."""

    def __init__(self, settings, data, save_dir, state=None, Engine=None):
        held_out = validation_size(len(data.train_images), settings.validation)
        self.settings, self.save_dir, self.state = settings, Path(save_dir), state
        self.Engine = Engine or engine_for(settings)
        self.validation = data.train_images[:held_out], data.train_labels[:held_out]
        self.train = data.train_images[held_out:], data.train_labels[held_out:]
        self.test = data.test_images, data.test_labels
        self.on_sample = data.is_sample
        self.metrics = state["metrics"] if state else {
            **{name: getattr(settings, name) for name in Settings.RESUMED},
            "validation": held_out, "chosen_by": "validation cost" if held_out else "last pass",
            "device": str(select_place(settings.device)), "data": data.source, "passes": [],
            "best_pass": None}
        self.metrics["workers"] = settings.workers  # resumed in another number, the last one
        self.rng = np.random.default_rng(settings.seed)
        if state:
            self.rng.bit_generator.state = state["rng"]
        self.first_pass = state["pass_id"] if state else 0
        self.engine, self.pass_start = None, None  # made, and set, by run

    def run(self, handler, log, init=None):
        """Train pass after pass from where it is; the metrics."""
        with exclusive(self.save_dir), self.Engine.mode(), StopOnCtrlC() as ctrl_c:
            self.start(log, init)
            for pass_id in range(self.first_pass, self.settings.epochs):
                train_cost, train_acc = self.run_pass(pass_id, handler, ctrl_c)
                val_cost, val_acc = self.engine.test(*self.validation)
                test_cost, test_acc = self.engine.test(*self.test)
                event = PassEvent(pass_id, train_cost, train_acc, val_cost, val_acc,
                                  test_cost, test_acc, time.perf_counter() - self.pass_start)
                self.keep_best_pass(event)
                handler(event)
                pressed = self.engine.agree(0.0, 0.0, ctrl_c.pressed)[2]
                if pressed and pass_id + 1 < self.settings.epochs:  # while testing or saving
                    checkpoint(self.save_dir).stop(self, pass_id + 1, 0,
                                                   self.rng.bit_generator.state, [[], [], []])
        return self.finish(log)

    def start(self, log, init):
        """Make the engine (programs or Layer, on the fast path where it works, parameters
        initialised, or taken from ``init``); on resume, load its parameters and Adam's
        moments from the checkpoint."""
        self.engine = self.Engine.make(self.settings, log)
        self.engine.describe(self.metrics)
        if init is not None:
            self.engine.load_parameters(init)
        if self.state:
            checkpoint(self.save_dir).load_into(self.engine)
            log(f"Resuming {self.settings.model} at pass {self.first_pass}, "
                f"batch {self.state['batch_id']}")

    def run_pass(self, pass_id, handler, ctrl_c):
        """Train on every batch of one pass; the pass's mean cost and accuracy."""
        pass_rng = self.rng.bit_generator.state  # to deal this pass's batches again on resume
        resumed = self.state if self.state and self.state["pass_id"] == pass_id else None
        costs, accs, sizes = resumed["partial"] if resumed else ([], [], [])
        self.pass_start = time.perf_counter() - (resumed["seconds"] if resumed else 0)
        images, labels = self.train
        count = -(-len(images) // self.settings.batch_size)
        for batch_id, (x, y) in enumerate(batches(images, labels, self.settings.batch_size,
                                                  True, self.rng)):
            if batch_id < len(costs):
                continue  # done before the interruption
            if self.settings.augment:  # a generator per batch: a resumed pass draws the same
                from .own_digits.augment import augment

                x = augment(x, np.random.default_rng([self.settings.seed, pass_id, batch_id]))
            cost, acc, stop = self.engine.agree(*self.engine.step(x, y), ctrl_c.pressed)
            costs.append(cost), accs.append(acc), sizes.append(len(x))
            if diverged(costs):
                raise self.diverged(f"the cost is {costs[-1]:.4g} at pass {pass_id}, batch "
                                    f"{batch_id}", self.metrics["best_pass"])
            handler(StepEvent(pass_id, batch_id, costs[-1], accs[-1], count))
            # several workers stop together, after the batch they agreed on; one process also
            # after a Ctrl-C its event handler saw
            if stop or ctrl_c.pressed and self.settings.workers == 1:
                checkpoint(self.save_dir).stop(self, pass_id, batch_id + 1, pass_rng,
                                               [costs, accs, sizes])
        return float(np.average(costs, weights=sizes)), float(np.average(accs, weights=sizes))

    def keep_best_pass(self, event):
        """Record the pass; save its model if it is the best so far by validation cost (or,
        with no validation set, if it is the last); otherwise only update metrics.json."""
        metrics = self.metrics
        metrics["passes"].append(vars(event))
        best = metrics["best_pass"]
        if (event.val_cost is None or best is None
                or event.val_cost < metrics["passes"][best]["val_cost"]):
            metrics["best_pass"] = event.pass_id
            self.save_model(kept=best)
        else:
            write_json(self.save_dir / "metrics.json", metrics)

    def save_model(self, kept=None):
        """Save the inference model and ``metrics.json`` as one: both are written to a new
        folder, which then takes the place of the save folder in one step. Anything else in
        it is carried over. Parameters the loader would refuse are a :meth:`diverged` run."""
        def fill(folder):
            self.engine.save_inference_model(folder / MODEL_PREFIX)
            problem = refused_parameter(*load_program(folder / MODEL_PREFIX))
            if problem:
                raise self.diverged(f"after pass {self.metrics['best_pass']}, {problem}", kept)
            write_checksum(folder / f"{MODEL_PREFIX}.pdiparams")
            write_json(folder / "metrics.json", self.metrics)
        write_folder(self.save_dir, fill, carry=True)

    def diverged(self, what, kept):
        """Stop a training that blew up, as ``what`` shows; the folder keeps pass ``kept``'s."""
        return DivergedError(
            f"training diverged: {what}; " + (f"the model of pass {kept} stays in "
                                              f"{self.save_dir}" if kept is not None else
                                              "nothing was saved")
            + f". Try a smaller learning rate than {self.settings.learning_rate}")

    def finish(self, log):
        """Drop the checkpoint and report the chosen pass's test results."""
        if (self.save_dir / "checkpoint").exists():  # this training's, or an earlier one's
            checkpoint(self.save_dir).remove()
        metrics = self.metrics
        best = metrics["passes"][metrics["best_pass"]]
        how = (f"lowest validation cost, {best['val_cost']:.6f}" if best["val_cost"] is not None
               else "the last, with no validation set")
        log(f"Best pass is {metrics['best_pass']} ({how}), testing Avgcost is "
            f"{best['test_cost']:.6f}")
        log(f"The classification accuracy is {100 * best['test_acc']:.2f}%"
            + (" (on the bundled sample)" if self.on_sample else ""))
        return metrics


def diverged(costs):
    """Whether a pass's batch costs so far show a run that blew up, from its first batch
    on (a fine-tuning's pass may have only a few).

    A cost that is not finite, or the last 20 (or all, if fewer) averaging over ten
    times the 2.3 of guessing uniformly when the first was below: Paddle's cross entropy
    clips log(0), so a run that blows up shows a cost far above guessing rather than inf.
    """
    return not np.isfinite(costs[-1]) or np.mean(costs[-20:]) > 10 * np.log(10) > costs[0]
