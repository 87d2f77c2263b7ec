"""The same training in dynamic mode: the network's Layer, run eagerly.

Paddle 3 starts in dynamic mode, where each operation runs as Python reaches it, and
today's Paddle code writes networks as ``paddle.nn.Layer`` classes. ``train(...,
graph="dynamic")`` trains the very classes the static builders call (see
:mod:`.models`), with the same loss, optimizer, data and loop: :class:`DynamicEngine`
holds only what the graph mode decides — one training step, a test pass, saving the
inference model (``paddle.jit.save``, in the format the static mode saves) and the
checkpoint. :func:`side_by_side` trains both modes from the same parameters.
"""

import contextlib
from pathlib import Path

import numpy as np
import paddle
from paddle.static import InputSpec

from .engine import MODEL_PREFIX, Engine, check_checkpoint, mean_over_batches, parameters_for
from .models import LAYERS, loss_and_accuracy
from .static_graph import StaticEngine


@contextlib.contextmanager
def dynamic_mode():
    """Run the block in dynamic mode, then return to the mode it found."""
    static = not paddle.in_dynamic_mode()
    paddle.disable_static()
    try:
        yield
    finally:
        if static:
            paddle.enable_static()


class DynamicEngine(Engine):
    """A Layer and its Adam optimizer, run eagerly on ``place`` (Paddle's dynamic kernels:
    ``onednn`` and ``threads`` concern the static programs only)."""

    mode = staticmethod(dynamic_mode)

    def __init__(self, model, learning_rate, seed, place, onednn=None, threads=None, log=print):
        paddle.set_device(self.device(place))
        paddle.seed(seed)
        # fresh parameter names (linear_0.w_0, ...), the ones the static program gets
        with paddle.utils.unique_name.guard():
            self.net = LAYERS[model]()
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


def side_by_side(model, batches, save_dir, seed=0):
    """Train ``model`` on ``batches`` in both modes from the same initial parameters,
    and save both inference models, in ``save_dir/static`` and ``save_dir/dynamic``.

    The static program is built and initialised first; the Layer takes its values, name
    by name (both get the same names). Returns the two lists of batch costs,
    ``(static, dynamic)``, on Paddle's plain kernels in both: the same numbers up to
    floating-point rounding, because they are the same network, loss and optimizer.
    """
    save_dir = Path(save_dir)
    with StaticEngine.mode():
        static = StaticEngine(model, 0.001, seed, paddle.CPUPlace(), onednn=False)
        scope = paddle.static.global_scope()
        start = {p.name: np.array(scope.find_var(p.name).get_tensor())
                 for p in static.programs.main.global_block().all_parameters()}
        static_costs = [static.step(x, y)[0] for x, y in batches]
        static.save_inference_model(save_dir / "static" / MODEL_PREFIX)
    with DynamicEngine.mode():
        dynamic = DynamicEngine(model, 0.001, seed, paddle.CPUPlace())
        for p in dynamic.net.state_dict().values():
            p.set_value(start[p.name].reshape(p.shape))
        dynamic_costs = [dynamic.step(x, y)[0] for x, y in batches]
        dynamic.save_inference_model(save_dir / "dynamic" / MODEL_PREFIX)
    return static_costs, dynamic_costs
