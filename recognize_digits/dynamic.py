"""The same training in dynamic mode: the network's Layer, run eagerly.

Paddle 3 starts in dynamic mode, where each operation runs as Python reaches it, and
today's Paddle code writes networks as ``paddle.nn.Layer`` classes. ``train(...,
graph="dynamic")`` trains the very classes the static builders call (see
:mod:`.models`), with the same loss, optimizer, data and loop: this module holds only
what the graph mode decides — one training step, a test pass, saving the inference
model (``paddle.jit.save``, in the format the static mode saves) and the checkpoint.
"""

import contextlib
from pathlib import Path

import numpy as np
import paddle
from paddle.static import InputSpec

from .data import batches
from .models import LAYERS, loss_and_accuracy


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


class DynamicTraining:
    """A Layer and its Adam optimizer, with what the training loop asks of them."""

    def __init__(self, model, learning_rate, seed, place):
        paddle.set_device("gpu" if isinstance(place, paddle.CUDAPlace) else "cpu")
        paddle.seed(seed)
        # fresh parameter names (linear_0.w_0, ...), the ones the static program gets
        with paddle.utils.unique_name.guard():
            self.net = LAYERS[model]()
        self.optimizer = paddle.optimizer.Adam(learning_rate=learning_rate,
                                               parameters=self.net.parameters())

    def count_parameters(self):
        return int(sum(p.size for p in self.net.parameters() if not p.stop_gradient))

    def step(self, x, y):
        """One Adam step on a batch; its mean cost and accuracy."""
        cost, acc = loss_and_accuracy(self.net(paddle.to_tensor(x)), paddle.to_tensor(y))
        cost.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        return float(cost), float(acc)

    @paddle.no_grad()
    def test(self, images, labels, batch_size):
        """Mean cost and accuracy over ``images``, batch norm on its running statistics."""
        self.net.eval()
        cost, correct = 0.0, 0
        for x, y in batches(images, labels, batch_size):
            c, a = loss_and_accuracy(self.net(paddle.to_tensor(x)), paddle.to_tensor(y))
            cost, correct = cost + float(c) * len(x), correct + round(float(a) * len(x))
        self.net.train()
        return cost / len(images), correct / len(images)

    def save_inference_model(self, prefix):
        """``PREFIX.json`` and ``PREFIX.pdiparams``: ``paddle.jit.save`` turns the Layer
        into a static program (``to_static``) for an input of any batch size."""
        self.net.eval()
        paddle.jit.save(self.net, str(prefix),
                        input_spec=[InputSpec([-1, 1, 28, 28], "float32", "img")])
        self.net.train()

    def save_checkpoint(self, prefix):
        paddle.save(self.net.state_dict(), f"{prefix}.pdparams")
        paddle.save(self.optimizer.state_dict(), f"{prefix}.pdopt")

    def load_checkpoint(self, prefix):
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
    from .train import MODEL_PREFIX, Programs, save_static_model  # train imports this module

    save_dir = Path(save_dir)
    paddle.enable_static()
    programs = Programs(model, seed=seed)
    exe = paddle.static.Executor(paddle.CPUPlace())
    with paddle.static.scope_guard(paddle.static.Scope()):
        scope = paddle.static.global_scope()
        exe.run(programs.startup)
        start = {p.name: np.array(scope.find_var(p.name).get_tensor())
                 for p in programs.main.global_block().all_parameters()}
        static = [float(exe.run(programs.main, feed={"img": x, "label": y},
                                fetch_list=[programs.avg_cost])[0]) for x, y in batches]
        save_static_model(save_dir / "static" / MODEL_PREFIX, exe, programs)
    with dynamic_mode():
        run = DynamicTraining(model, 0.001, seed, paddle.CPUPlace())
        for p in run.net.state_dict().values():
            p.set_value(start[p.name].reshape(p.shape))
        dynamic = [run.step(x, y)[0] for x, y in batches]
        run.save_inference_model(save_dir / "dynamic" / MODEL_PREFIX)
    return static, dynamic
