"""The checkpoint that Ctrl-C leaves in ``SAVE_DIR/checkpoint`` and ``--resume`` reads,
and the Ctrl-C (or SIGTERM) that waits for it to be written (:class:`StopOnCtrlC`).

A checkpoint holds the engine's parameters and optimizer state (``train.*``, as the
engine writes them) and ``state.json``: where the training stopped (``pass_id``,
``batch_id``), the shuffling generator's state at the start of that pass, the costs,
accuracies and sizes of its batches so far, its seconds, and the training's metrics,
settings included.
"""

import json
import shutil
import signal
import threading
from pathlib import Path

import numpy as np

from .errors import ConfigError, check_positive, one_line
from .models import check_model
from .storage import recover_folder, write_folder, write_json

# the settings a resumed training takes from its checkpoint
SETTINGS = ("model", "epochs", "batch_size", "learning_rate", "seed", "validation", "augment",
            "graph", "workers")


class Checkpoint:
    """The checkpoint folder of the training that saves into ``save_dir``."""

    def __init__(self, save_dir):
        self.save_dir, self.folder = save_dir, Path(save_dir) / "checkpoint"

    def write(self, engine, state):
        """Save ``engine``'s parameters with ``state`` (see above), replacing any
        checkpoint there as a whole."""
        def fill(folder):
            engine.save_checkpoint(folder / "train")
            write_json(folder / "state.json", state)
        write_folder(self.folder, fill)

    def read(self):
        """The ``state.json`` of the checkpoint, checked; a :class:`ConfigError` if there is
        none, or if it is damaged or edited into something no training could have saved."""
        recover_folder(self.folder)  # a swap cut short (see storage)
        try:
            state = json.loads((self.folder / "state.json").read_text())
        except (OSError, ValueError):
            raise ConfigError(f"{self.save_dir}: no checkpoint to resume from; start a new "
                              f"training without resume=True") from None
        try:
            state["metrics"].setdefault("augment", False)  # saved before augmentation existed
            state["metrics"].setdefault("graph", "static")  # and before the dynamic mode
            state["metrics"].setdefault("workers", 1)  # and before data parallelism
            _check_state(state)
        except (ConfigError, KeyError, TypeError, AttributeError, ValueError) as e:
            what = f"no {e}" if isinstance(e, KeyError) else e
            raise ConfigError(f"{self.save_dir}: the checkpoint is damaged ({what}); start a "
                              f"new training without resume=True") from None
        return state

    def check_settings(self, state, given):
        """Refuse ``given`` settings (name: value) that differ from those the checkpoint's
        training started with, naming each: a resumed training goes on with its own."""
        differ = [f"{k}={v!r} (it has {state['metrics'][k]!r})"
                  for k, v in given.items() if v != state["metrics"][k]]
        if differ:
            raise ConfigError(f"{self.save_dir}: resume=True goes on with the settings the "
                              f"training started with, and these differ: {'; '.join(differ)}; "
                              f"leave them out, or start a new training without resume=True")

    def check_data(self, state, source):
        """Refuse to go on with other data than the checkpoint's training had."""
        if source != state["metrics"]["data"]:
            raise ConfigError(f"{self.save_dir}: the training to resume ran on "
                              f"{state['metrics']['data']}, not on {source}; give the data "
                              f"options it started with")

    def load_into(self, engine):
        """Load the checkpoint's parameters and optimizer state into ``engine``."""
        try:
            engine.load_checkpoint(self.folder / "train")
        except Exception as e:  # noqa: BLE001 - a damaged file fails anywhere in Paddle
            raise ConfigError(f"{self.save_dir}: the checkpoint's parameters cannot be loaded "
                              f"({one_line(e)}); start a new training without resume=True") from None

    def remove(self):
        shutil.rmtree(self.folder, ignore_errors=True)


def _check_state(state):
    """Raise ValueError (or KeyError, TypeError) for what a training could not have saved."""
    metrics = state["metrics"]
    check_model(metrics["model"])
    check_positive(epochs=metrics["epochs"], batch_size=metrics["batch_size"],
                   workers=metrics["workers"])
    check_positive(whole=False, learning_rate=metrics["learning_rate"])
    whole = (int, np.integer)
    if metrics["graph"] not in ("static", "dynamic") or not isinstance(metrics["augment"], bool):
        raise ValueError(f"graph {metrics['graph']!r}, augment {metrics['augment']!r}")
    for name, value, top in (("seed", metrics["seed"], 2**31),
                             ("validation", metrics["validation"], None),
                             ("pass_id", state["pass_id"], metrics["epochs"]),
                             ("batch_id", state["batch_id"], None)):
        if isinstance(value, bool) or not isinstance(value, whole) or value < 0 or (
                top is not None and value >= top):
            raise ValueError(f"{name} {value!r}")
    costs, accs, sizes = state["partial"]
    if not len(costs) == len(accs) == len(sizes) == state["batch_id"]:
        raise ValueError(f"{len(costs)} batch costs for batch {state['batch_id']}")
    if len(metrics["passes"]) != state["pass_id"]:
        raise ValueError(f"{len(metrics['passes'])} passes recorded for pass {state['pass_id']}")
    np.random.default_rng().bit_generator.state = state["rng"]  # ValueError, TypeError
    if not isinstance(state["seconds"], (int, float)) or isinstance(state["seconds"], bool):
        raise ValueError(f"seconds {state['seconds']!r}")


class StopOnCtrlC:
    """Within it, a first Ctrl-C (or SIGTERM, as a system's shutdown or ``kill`` sends) only
    sets ``pressed``: training stops after the current batch, test pass or save, with a
    checkpoint; a second one interrupts at once. Main thread only."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        self.pressed, self.previous = False, {}
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self.previous[number] = signal.signal(number, self._pressed)
        return self

    def _pressed(self, signum, frame):
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True

    def __exit__(self, *exc):
        for number, previous in self.previous.items():
            # None: a handler set outside Python (Paddle's own for SIGTERM, which prints a
            # crash report), so the system's default is put back instead
            signal.signal(number, signal.SIG_DFL if previous is None else previous)
