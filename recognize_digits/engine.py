"""What the training loop asks of a way of training: the interface of its engines.

An engine holds one network, its parameters and its optimizer in one graph mode:
:class:`~recognize_digits.static_graph.StaticEngine` (the chapter's programs run by an
executor) and :class:`~recognize_digits.dynamic.DynamicEngine` (a ``paddle.nn.Layer``
run eagerly). The loop in :mod:`.train` gives both the same batches and keeps
everything else (passes, events, validation, the best pass, Ctrl-C) to itself.
"""

import abc
import contextlib

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


@contextlib.contextmanager
def graph_mode(graph):
    """Run the block in Paddle's ``"static"`` or ``"dynamic"`` mode, then return to the
    mode it found (Paddle starts in the dynamic one)."""
    def switch(dynamic):
        if dynamic:
            paddle.disable_static()
        else:
            paddle.enable_static()
    found = paddle.in_dynamic_mode()
    switch(graph == "dynamic")
    try:
        yield
    finally:
        switch(found)


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


class Engine(abc.ABC):
    """One way of training: made inside its :meth:`mode` by :meth:`make`, with its
    parameters initialised from the settings' seed."""

    @staticmethod
    @abc.abstractmethod
    def mode():
        """The context (graph mode, scope) the engine is made and used in."""

    @classmethod
    def make(cls, settings, log=print):
        """The engine for ``settings`` (see :mod:`.settings`), given what it uses of them."""
        return cls(settings.model, settings.learning_rate, settings.seed,
                   select_place(settings.device))

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
