"""Two ways of computing the same network side by side, to see that they are one: the
static and the dynamic graph (:func:`side_by_side`), one process and several at once
(:func:`lockstep`), and the package's conv-pool block against the chapter's order of the
same layers (:class:`ChapterConvPool`)."""

from pathlib import Path

import numpy as np
import paddle
import paddle.distributed as dist
import paddle.nn.functional as F
from paddle import nn

from ..engine import MODEL_PREFIX
from ..static_graph import StaticEngine
from .dynamic import DynamicEngine
from .parallel import DataParallelEngine
from .workers import run_workers


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


def lockstep(model, batches, workers=2, seed=0):
    """Train ``model`` on ``batches`` in one process and in ``workers`` at once, from the
    same start, to compare the two step by step. Returns a dict: ``one`` and ``several``,
    the batch costs of each; ``spread``, after each step, the largest difference of any
    trained parameter between the workers (0.0: identical); ``difference``, the largest
    between the trained parameters of the two trainings at the end. (Batch norm's running
    statistics are each worker's own until :meth:`~DataParallelEngine.average_statistics`.)"""
    with DynamicEngine.mode():
        engine = DynamicEngine(model, 0.001, seed, paddle.CPUPlace())
        one = [engine.step(x, y)[0] for x, y in batches]
        alone = {p.name: p.numpy() for p in engine.net.parameters() if not p.stop_gradient}
    several = run_workers("recognize_digits.engines.compare:lockstep_worker",
                          {"model": model, "batches": batches, "seed": seed}, workers)[0]
    return {"one": one, "several": several["costs"], "spread": several["spread"],
            "difference": max(float(np.abs(alone[k] - v).max())
                              for k, v in several["parameters"].items())}


def lockstep_worker(send, model, batches, seed):
    """A worker of :func:`lockstep`."""
    with DataParallelEngine.mode():
        engine = DataParallelEngine(model, 0.001, seed, paddle.CPUPlace())
        costs, spread = [], []
        for x, y in batches:
            costs.append(engine.agree(*engine.step(x, y), False)[0])
            trained = [p for p in engine.net.parameters() if not p.stop_gradient]
            flat = paddle.concat([p.flatten() for p in trained])
            high, low = flat.clone(), flat.clone()
            dist.all_reduce(high, op=dist.ReduceOp.MAX)
            dist.all_reduce(low, op=dist.ReduceOp.MIN)
            spread.append(float((high - low).max()))
        return {"costs": costs, "spread": spread,
                "parameters": {p.name: p.numpy() for p in trained}}


class ChapterConvPool(nn.Layer):
    """The block in the chapter's order, from stock layers: ``Conv2D`` with its own bias,
    ReLU, then max pooling. The same numbers as :class:`ConvPool` (the tests compare
    them), slower on the CPU; what the speed benchmarks measure against."""

    def __init__(self, in_channels, num_filters, filter_size=5, pool_size=2, pool_stride=2):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, num_filters, filter_size)
        self.pool = pool_size, pool_stride

    def forward(self, x):
        return F.max_pool2d(F.relu(self.conv(x)), *self.pool)
