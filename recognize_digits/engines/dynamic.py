"""The same training in dynamic mode: the network's Layer, run eagerly.

Paddle 3 starts in dynamic mode, where each operation runs as Python reaches it, and
today's Paddle code writes networks as ``paddle.nn.Layer`` classes. ``train(...,
graph="dynamic")`` trains the very classes the static builders call (see
:mod:`.models`), with the same loss, optimizer, data and loop: :class:`DynamicEngine`
holds only what the graph mode decides — one training step, a test pass, saving the
inference model (``paddle.jit.save``, in the format the static mode saves) and the
checkpoint. :func:`~.compare.side_by_side` trains both modes from the same parameters.
"""

import contextlib
import functools

import paddle
from paddle.static import InputSpec

from ..engine import Engine, graph_mode, mean_over_batches
from ..plumbing.checkpoint import check_checkpoint, parameters_for
from ..models import LAYERS, loss_and_accuracy

dynamic_mode = functools.partial(graph_mode, "dynamic")


class DynamicEngine(Engine):
    """A Layer and its Adam optimizer, run eagerly on ``place`` (Paddle's dynamic kernels:
    the settings' ``onednn`` and ``threads`` concern the static programs only)."""

    @staticmethod
    @contextlib.contextmanager
    def mode():
        # names made afresh for the training: Adam names its moments when it first steps
        # or loads them (linear_0.w_0_moment1_0, ...), by a counter that an earlier training
        # in this process would have moved on, and a checkpoint loads only under its names
        with dynamic_mode(), paddle.utils.unique_name.guard():
            yield

    def __init__(self, model, learning_rate, seed, place):
        paddle.set_device(self.device(place))
        paddle.seed(seed)
        self.net = LAYERS[model]()  # named afresh (see mode), as the static program is
        self.optimizer = paddle.optimizer.Adam(learning_rate=learning_rate,
                                               parameters=self.net.parameters())

    @staticmethod
    def device(place):
        """The device name ``paddle.set_device`` takes for ``place``."""
        return "gpu" if isinstance(place, paddle.CUDAPlace) else "cpu"

    def parameters(self):
        return int(sum(p.size for p in self.net.parameters() if not p.stop_gradient))

    def step(self, x, y):
        """One Adam step on a batch; its mean cost and accuracy."""
        cost, acc = loss_and_accuracy(self.net(paddle.to_tensor(x)), paddle.to_tensor(y))
        cost.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        return float(cost), float(acc)

    @paddle.no_grad()
    def test(self, images, labels):
        self.net.eval()
        try:
            return mean_over_batches(
                lambda x, y: loss_and_accuracy(self.net(paddle.to_tensor(x)), paddle.to_tensor(y)),
                images, labels)
        finally:
            self.net.train()

    def save_inference_model(self, prefix):
        """``PREFIX.json`` and ``PREFIX.pdiparams``: ``paddle.jit.save`` turns the Layer
        into a static program (``to_static``) for an input of any batch size."""
        self.net.eval()
        paddle.jit.save(self.net, str(prefix),
                        input_spec=[InputSpec([-1, 1, 28, 28], "float32", "img")])
        self.net.train()

    def load_parameters(self, values):
        state = self.net.state_dict().values()
        chosen = parameters_for({p.name: p.shape for p in state}, values)
        for p in state:
            p.set_value(chosen[p.name])

    def save_checkpoint(self, prefix):
        paddle.save(self.net.state_dict(), f"{prefix}.pdparams")
        paddle.save(self.optimizer.state_dict(), f"{prefix}.pdopt")

    def load_checkpoint(self, prefix):
        state = self.net.state_dict()
        check_checkpoint(prefix, {k: v.shape for k, v in state.items()},
                         {v.name: v.shape for v in state.values()})
        self.net.set_state_dict(paddle.load(f"{prefix}.pdparams"))
        self.optimizer.set_state_dict(paddle.load(f"{prefix}.pdopt"))
