"""What the training loop asks of a way of training: the interface of its engines.

An engine holds one network, its parameters and its optimizer in one graph mode:
:class:`~recognize_digits.static_graph.StaticEngine` (the chapter's programs run by an
executor) and :class:`~recognize_digits.dynamic.DynamicEngine` (a ``paddle.nn.Layer``
run eagerly). The loop in :mod:`.train` gives both the same batches and keeps
everything else (passes, events, validation, the best pass, Ctrl-C) to itself.
"""

import abc
import re

import numpy as np
import paddle

from .data import batches
from .errors import ConfigError

MODEL_PREFIX = "model"  # a saved inference model is model.json and model.pdiparams
TEST_BATCH_SIZE = 1000  # larger test batches only speed up the test pass


def select_place(device="auto"):
    """CPUPlace or CUDAPlace for ``device`` "auto", "cpu" or "gpu"."""
    if device not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"device={device!r}: must be 'auto', 'cpu' or 'gpu'")
    has_gpu = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if device == "gpu" and not has_gpu:
        raise ConfigError("no GPU: this Paddle build has no CUDA or sees no GPU; "
                          "use device='cpu' or device='auto'")
    return paddle.CUDAPlace(0) if has_gpu and device != "cpu" else paddle.CPUPlace()


def mean_over_batches(run_batch, images, labels):
    """Mean cost and accuracy of ``run_batch(x, y) -> (cost, accuracy)`` over all ``images``
    in test batches, each batch weighed by its size; ``(None, None)`` if there are none."""
    if not len(images):
        return None, None
    cost, correct = 0.0, 0
    for x, y in batches(images, labels, TEST_BATCH_SIZE):
        c, a = run_batch(x, y)
        cost, correct = cost + float(c) * len(x), correct + round(float(a) * len(x))
    return cost / len(images), correct / len(images)


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


class Engine(abc.ABC):
    """One way of training. Made inside its :meth:`mode` as
    ``Engine(model, learning_rate, seed, place, onednn, threads, log)``, with its
    parameters initialised from ``seed``."""

    @staticmethod
    @abc.abstractmethod
    def mode():
        """The context (graph mode, scope) the engine is made and used in."""

    @abc.abstractmethod
    def parameters(self):
        """The number of trainable parameters."""

    def describe(self, metrics):
        """Note in ``metrics`` (what metrics.json records) how this engine trains."""
        metrics.update(onednn=False, parameters=self.parameters())

    @abc.abstractmethod
    def step(self, x, y):
        """One optimizer step on a batch; the batch's mean cost and accuracy as floats."""

    def agree(self, cost, acc, stop):
        """The batch's mean cost and accuracy, and whether to stop after it, from this
        process's ``cost``, ``acc`` and ``stop`` (Ctrl-C pressed here): as they are in one
        process; over all of them in several (see :mod:`.distributed`)."""
        return cost, acc, stop

    @abc.abstractmethod
    def test(self, images, labels):
        """Mean cost and accuracy over uint8 ``images`` (see :func:`mean_over_batches`),
        batch norm on its running statistics and no parameter changed."""

    @abc.abstractmethod
    def save_inference_model(self, prefix):
        """Write ``PREFIX.json`` and ``PREFIX.pdiparams``, which :mod:`.infer` serves."""

    @abc.abstractmethod
    def load_parameters(self, values):
        """Take every parameter's value (batch-norm statistics too) from ``values``, by
        name, as a saved model holds them: to go on from it (see :mod:`.finetune`)."""

    @abc.abstractmethod
    def save_checkpoint(self, prefix):
        """Write the parameters and the optimizer's state as files starting with ``prefix``."""

    @abc.abstractmethod
    def load_checkpoint(self, prefix):
        """Read back what :meth:`save_checkpoint` wrote."""
