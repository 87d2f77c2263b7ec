"""The chapter's way of training: programs declared first, then run by an executor.

``train_program`` and ``optimizer_program`` are the chapter's own functions;
:class:`Programs` builds the training, startup and test programs from them, and
:class:`StaticEngine` trains them for the loop in :mod:`.train`.
"""

import contextlib

import numpy as np
import paddle

from .engine import Engine, graph_mode, mean_over_batches, select_place
from .models import MODELS, check_model, count_parameters, loss_and_accuracy
from .plumbing import fast_cpu


def train_program(model="cnn"):
    """Declare the inputs, the model and its loss; return ``predict, [avg_cost, acc]``.

    ``model`` is a name from :data:`~recognize_digits.models.MODELS` or a builder.
    """
    builder = MODELS[check_model(model)] if isinstance(model, str) else model
    img = paddle.static.data("img", [-1, 1, 28, 28], "float32")
    label = paddle.static.data("label", [-1, 1], "int64")
    predict = builder(img)
    avg_cost, acc = loss_and_accuracy(predict, label)
    return predict, [avg_cost, acc]


def optimizer_program(learning_rate=0.001):
    return paddle.optimizer.Adam(learning_rate=learning_rate)


class Programs:
    """The training program, its startup program, and a test program sharing its parameters.

    The test program is cloned before the optimizer adds the backward pass and is set to
    test mode, so batch norm uses its running statistics there. Parameter names are made
    afresh (``linear_0.w_0``, ...) whatever the process built before, so a checkpoint
    saved by one training loads into the next, in this process or another.
    """

    def __init__(self, model="cnn", learning_rate=0.001, seed=None):
        self.main, self.startup = paddle.static.Program(), paddle.static.Program()
        if seed is not None:
            self.main.random_seed = self.startup.random_seed = seed
        with paddle.static.program_guard(self.main, self.startup), paddle.utils.unique_name.guard():
            self.predict, [self.avg_cost, self.acc] = train_program(model)
            mapping = paddle.pir.IrMapping()
            self.test = self.main.clone(mapping)
            self.test.set_is_test_attr()
            optimizer_program(learning_rate).minimize(self.avg_cost)
        # found by its op: Paddle 3.0's get_output_value_by_name gives inputs as empty values
        self.test_img = next(op.result(0) for op in self.test.global_block().ops
                             if op.name() == "pd_op.data" and op.attrs()["name"] == "img")
        self.test_predict, self.test_cost, self.test_acc = (
            mapping.look_up(v) for v in (self.predict, self.avg_cost, self.acc))
        self.evaluation = self.test, self.test_cost, self.test_acc  # what the test passes run


def save_static_model(prefix, exe, programs):
    """Write the test program and the trained parameters (in the current scope) as an
    inference model: ``PREFIX.json`` and ``PREFIX.pdiparams``.

    Convolution biases train as ``[C, 1, 1]`` (fast to train on the CPU) but are saved
    as ``[1, C, 1, 1]``, the form Paddle's inference passes fuse into the convolution:
    the same values and results, and batch prediction about 1.5x faster.
    """
    mapping = paddle.pir.IrMapping()
    program = programs.test.clone(mapping)
    trained, scope = paddle.static.global_scope(), paddle.static.Scope()
    for param in program.global_block().all_parameters():
        value = np.array(trained.find_var(param.name).get_tensor())
        if value.ndim == 3:  # a convolution bias
            value = value[None]
            with paddle.static.program_guard(paddle.static.Program()):
                param.set_type(paddle.static.data("shape", value.shape, "float32").type())
        scope.var(param.name).get_tensor().set(value, paddle.CPUPlace())
    with paddle.static.scope_guard(scope):
        paddle.static.save_inference_model(
            str(prefix), [mapping.look_up(programs.test_img)],
            [mapping.look_up(programs.test_predict)], exe, program=program)


class StaticEngine(Engine):
    """:class:`Programs` run by an executor on ``place``, their parameters in the scope of
    :meth:`mode`; on the CPU, LeNet-5 goes on the fast path of :mod:`.plumbing.fast_cpu` where it
    works on this Paddle (``onednn=False`` never tries it)."""

    @staticmethod
    @contextlib.contextmanager
    def mode():
        with graph_mode("static"), paddle.static.scope_guard(paddle.static.Scope()):
            yield

    @classmethod
    def make(cls, settings, log=print):
        return cls(settings.model, settings.learning_rate, settings.seed,
                   select_place(settings.device), settings.onednn, settings.threads, log)

    def __init__(self, model, learning_rate, seed, place, onednn=None, threads=None, log=print):
        paddle.seed(seed)
        self.place, self.exe = place, paddle.static.Executor(place)
        self.programs = Programs(model, learning_rate, seed)
        has_conv = any(op.name() == "pd_op.conv2d" for op in self.programs.main.global_block().ops)
        self.onednn = has_conv and isinstance(place, paddle.CPUPlace) and onednn is not False
        self.onednn_unavailable = None
        if self.onednn:
            self.onednn_unavailable = fast_cpu.speed_up(self.programs, self.exe, threads)
            if self.onednn_unavailable:
                log(f"The oneDNN convolutions do not work on this Paddle "
                    f"({self.onednn_unavailable}); training on Paddle's plain kernels "
                    f"instead (onednn=False skips trying)")
                self.programs, self.onednn = Programs(model, learning_rate, seed), False
        self.exe.run(self.programs.startup)

    def parameters(self):
        return count_parameters(self.programs.test)

    def describe(self, metrics):
        if self.onednn_unavailable:
            metrics["onednn_unavailable"] = self.onednn_unavailable
        elif self.onednn:
            metrics.pop("onednn_unavailable", None)  # noted before a resume
        metrics.update(onednn=self.onednn, parameters=self.parameters())

    def step(self, x, y):
        cost, acc = self.exe.run(self.programs.main, feed={"img": x, "label": y},
                                 fetch_list=[self.programs.avg_cost, self.programs.acc])
        return float(cost), float(acc)

    def test(self, images, labels):
        program, *fetch = self.programs.evaluation
        return mean_over_batches(
            lambda x, y: self.exe.run(program, feed={"img": x, "label": y}, fetch_list=fetch),
            images, labels)

    def save_inference_model(self, prefix):
        save_static_model(prefix, self.exe, self.programs)

    def load_parameters(self, values):
        from .plumbing.checkpoint import parameters_for

        scope = paddle.static.global_scope()
        params = self.programs.main.global_block().all_parameters()
        for name, value in parameters_for({p.name: p.shape for p in params}, values).items():
            scope.find_var(name).get_tensor().set(value, self.place)

    def save_checkpoint(self, prefix):
        paddle.static.save(self.programs.main, str(prefix))

    def load_checkpoint(self, prefix):
        from .plumbing.checkpoint import check_checkpoint

        check_checkpoint(prefix, {p.name: p.shape for p in
                                  self.programs.main.global_block().all_parameters()})
        paddle.static.load(self.programs.main, str(prefix), self.exe)
