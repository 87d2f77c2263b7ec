"""The checkpoint that Ctrl-C leaves in ``SAVE_DIR/checkpoint`` and ``resume=True`` reads,
and the checks that keep another network's saved values out of an engine.

A checkpoint holds the engine's parameters and optimizer state (``train.*``, as the
engine writes them) and ``state.json``: where the training stopped (``pass_id``,
``batch_id``), the shuffling generator's state at the start of that pass, the costs,
accuracies and sizes of its batches so far, its seconds, and the training's metrics,
settings included.
"""

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import paddle

from ..engine import MODEL_PREFIX, graph_mode
from ..errors import ConfigError, ModelError, TrainingInterrupted, one_line
from ..models import LAYERS
from ..settings import Settings
from .model_files import load_program
from .storage import recover_folder, write_folder, write_json


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

    def save(self, training, pass_id, batch_id, rng_state, partial):
        """Save a checkpoint of ``training`` (a :class:`~..training.Training`) to go on from
        ``batch_id`` of ``pass_id`` (``rng_state`` to deal that pass's batches again, and
        ``partial``, the costs, accuracies and sizes of its batches so far)."""
        self.write(training.engine, {
            "pass_id": pass_id, "batch_id": batch_id, "rng": rng_state, "partial": partial,
            "seconds": time.perf_counter() - training.pass_start if batch_id else 0,
            "metrics": training.metrics})

    def stop(self, training, pass_id, batch_id, rng_state, partial):
        """:meth:`save`, then stop the training with :class:`TrainingInterrupted`."""
        self.save(training, pass_id, batch_id, rng_state, partial)
        raise TrainingInterrupted(f"stopped at pass {pass_id}, batch {batch_id}; a checkpoint "
                                  f"is in {self.folder}: {self.how_to_go_on()}")

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

    def settings(self, state, given):
        """The settings of the checkpoint's training, from its ``state``: a resumed training
        goes on with them. ``given`` ones (name: value) may say where it runs (device,
        threads, oneDNN, workers); any other that differs from the checkpoint's is refused,
        named."""
        recorded = state["metrics"]
        differ = [f"{k}={v!r} (it has {recorded[k]!r})" for k, v in given.items()
                  if k in Settings.RESUMED and k not in Settings.MOVABLE and v != recorded[k]]
        if differ:
            raise ConfigError(f"{self.save_dir}: resume=True goes on with the settings the "
                              f"training started with, and these differ: {'; '.join(differ)}; "
                              f"leave them out, or start a new training without resume=True")
        return Settings(**given).resumed(recorded, given)

    def how_to_go_on(self):
        return (f"go on with resume=True and save_dir={str(self.save_dir)!r} (and the same "
                f"data)")

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
    Settings().resumed(metrics).check()
    if metrics["validation"] is None:
        raise ValueError("validation None")
    whole = (int, np.integer)
    for name, value, top in (("pass_id", state["pass_id"], metrics["epochs"]),
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


def check_checkpoint(prefix, parameters, names=None):
    """Refuse checkpoint files (``PREFIX.pdparams`` and ``PREFIX.pdopt``) that do not hold
    the ``parameters`` of this network (key: shape) and Adam's moments of the same shapes
    (by parameter ``names``, name: shape, when they differ from the keys): a ValueError
    naming the first difference. Loading would otherwise take another network's values,
    or fail deep inside Paddle."""
    names = parameters if names is None else names
    saved = {k: list(np.shape(np.asarray(v))) for k, v in paddle.load(f"{prefix}.pdparams").items()}
    if saved.keys() != parameters.keys():
        missing, extra = sorted(parameters.keys() - saved), sorted(saved.keys() - parameters)
        raise ValueError(f"its parameters are another network's (missing {missing[:3]}, "
                         f"unknown {extra[:3]})")
    for key, shape in parameters.items():
        if saved[key] != list(shape):
            raise ValueError(f"parameter {key} has shape {saved[key]}, not {list(shape)}")
    for key, value in paddle.load(f"{prefix}.pdopt").items():
        moment = re.fullmatch(r"(.+)_moment[12]_0", key)
        if moment and (moment.group(1) not in names or
                       list(np.shape(np.asarray(value))) != list(names[moment.group(1)])):
            raise ValueError(f"the optimizer's {key} does not fit this network")


def saved_parameters(model_dir):
    """Every parameter of the model saved in ``model_dir`` (batch-norm statistics too),
    name: value, as a training can start from them (``train(init=...)``)."""
    return load_program(Path(model_dir) / MODEL_PREFIX)[1]


def network_of(values):
    """The name of the network (see :data:`~..models.LAYERS`) whose parameters ``values``
    (name: array, as :func:`saved_parameters` gives them) are, by their names and sizes;
    None for a network of none of them."""
    sizes = {name: np.size(value) for name, value in values.items()}
    for name, layer in LAYERS.items():
        with graph_mode("dynamic"), paddle.utils.unique_name.guard():  # named as when saved
            if {p.name: p.size for p in layer().state_dict().values()} == sizes:
                return name
    return None


def check_network(model_dir, metrics, fix):
    """Refuse a model folder whose ``metrics`` (its metrics.json) name another network
    than the one its parameters are, in one line saying what to do (``fix``): fine-tuned
    or exported, it would be taken for what it is not."""
    named, found = metrics.get("model"), network_of(saved_parameters(model_dir))
    if named != found:
        what = f"those of {found!r}" if found else "of no network this package trains"
        raise ModelError(f"{model_dir}: its metrics.json says the network is {named!r}, but "
                         f"its parameters are {what}, so the two come from different "
                         f"models; {fix}")


def parameters_for(names_and_shapes, values):
    """``values`` (name: array) for each parameter of ``names_and_shapes`` (name: shape),
    reshaped to it (a saved model holds convolution biases as ``[1, C, 1, 1]``); a
    ValueError if the names or sizes are another network's."""
    missing = sorted(set(names_and_shapes) - set(values))
    if missing or len(values) != len(names_and_shapes):
        raise ValueError(f"the saved parameters are another network's (missing "
                         f"{missing[:3]}, {len(values)} saved for {len(names_and_shapes)})")
    chosen = {}
    for name, shape in names_and_shapes.items():
        value = np.asarray(values[name], np.float32)
        if value.size != int(np.prod(shape)):
            raise ValueError(f"parameter {name} has {value.size} values, not {np.prod(shape)}")
        chosen[name] = value.reshape(shape)
    return chosen
