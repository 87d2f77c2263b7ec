"""Training: the programs, the optimizer, and the loop with its event handler.

As in the chapter: Adam at 0.001, batches of 64, a test pass after every training
pass, and the inference model of the best pass (lowest test cost) saved.
"""

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F

from .data import batches, load_mnist
from .errors import ConfigError, DivergedError, TrainingInterrupted
from .models import MODELS, count_parameters
from .storage import exclusive, new_folder, replace_folder, write_json

DEFAULT_SAVE_DIR = "recognize_digits.inference.model"
MODEL_PREFIX = "model"  # the saved files are model.json and model.pdiparams
TEST_BATCH_SIZE = 1000  # larger test batches only speed up the test pass


@dataclass
class StepEvent:
    """Sent to the event handler after every training batch."""

    pass_id: int
    batch_id: int
    cost: float
    acc: float


@dataclass
class PassEvent:
    """Sent to the event handler after every pass, once the test pass has run."""

    pass_id: int
    train_cost: float
    train_acc: float
    test_cost: float
    test_acc: float
    seconds: float


def train_program(model="cnn"):
    """Declare the inputs, the model and its loss; return ``predict, [avg_cost, acc]``.

    ``model`` is a name from :data:`~recognize_digits.models.MODELS` or a builder.
    """
    builder = MODELS[check_model(model)] if isinstance(model, str) else model
    img = paddle.static.data("img", [-1, 1, 28, 28], "float32")
    label = paddle.static.data("label", [-1, 1], "int64")
    predict = builder(img)
    cost = F.cross_entropy(predict, label, use_softmax=False)
    avg_cost = paddle.mean(cost)
    acc = paddle.metric.accuracy(predict, label)
    return predict, [avg_cost, acc]


def optimizer_program(learning_rate=0.001):
    return paddle.optimizer.Adam(learning_rate=learning_rate)


def check_model(name):
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return name


def available_cores():
    """The cores this process may run on (all of them where affinity is unknown)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def select_place(device="auto"):
    """CPUPlace or CUDAPlace for ``device`` "auto", "cpu" or "gpu"."""
    if device not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"unknown device {device!r}; choose auto, cpu or gpu")
    has_gpu = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if device == "gpu" and not has_gpu:
        raise ConfigError("no GPU: this Paddle build has no CUDA or sees no GPU; "
                          "use --device cpu (or auto)")
    return paddle.CUDAPlace(0) if has_gpu and device != "cpu" else paddle.CPUPlace()


class Programs:
    """The training program, its startup program, and a test program sharing its parameters.

    The test program is cloned before the optimizer adds the backward pass and is set to
    test mode, so batch norm uses its running statistics there.
    """

    def __init__(self, model="cnn", learning_rate=0.001, seed=None):
        self.main, self.startup = paddle.static.Program(), paddle.static.Program()
        if seed is not None:
            self.main.random_seed = self.startup.random_seed = seed
        with paddle.static.program_guard(self.main, self.startup):
            self.predict, [self.avg_cost, self.acc] = train_program(model)
            mapping = paddle.pir.IrMapping()
            self.test = self.main.clone(mapping)
            self.test.set_is_test_attr()
            optimizer_program(learning_rate).minimize(self.avg_cost)
        self.test_img = self.test.get_output_value_by_name("img")
        self.test_predict, self.test_cost, self.test_acc = (
            mapping.look_up(v) for v in (self.predict, self.avg_cost, self.acc))


_CONV_ATTRS = ("strides", "paddings", "padding_algorithm", "dilations", "groups", "data_format")


def _onednn_conv_pattern(grad):
    """A rewrite of ``pd_op.conv2d`` (or its gradient) into its oneDNN twin."""
    name = "conv2d_grad" if grad else "conv2d"
    inputs = ["input", "filter", "dout"] if grad else ["input", "filter"]
    outputs = ["dx", "dw"] if grad else ["out"]
    ctx = paddle.pir.DrrPatternContext()
    src = ctx.SourcePattern()
    src.Op(f"pd_op.{name}", {a: src.Attr(a) for a in _CONV_ATTRS})(
        [src.Tensor(t) for t in inputs], [src.Tensor(t) for t in outputs])
    if grad:
        # oneDNN's backward always computes the input gradient too: skip the first
        # convolution, whose input is the image and needs none.
        src.AddConstraint(lambda match: not match.Tensor("input").stop_gradient)
    res = src.ResultPattern()
    attrs = {a: src.Attr(a) for a in _CONV_ATTRS}
    attrs["is_test"] = res.BoolAttr(False)
    if not grad:
        attrs.update(mkldnn_data_type=res.StrAttr("float32"), onednn_data_type=res.StrAttr(""),
                     force_fp32_output=res.BoolAttr(False))
    res.Op(f"onednn_op.{name}", attrs)(
        [res.Tensor(t) for t in inputs], [res.Tensor(t) for t in outputs])
    return ctx


def use_onednn_convolutions(program):
    """Run the convolutions of a training program on oneDNN, every other op as it was.

    oneDNN's convolutions use all cores and make a LeNet-5 step about twice as fast.
    Turning oneDNN on for the whole program (``FLAGS_use_mkldnn``) is not an option in
    Paddle 3.3's PIR training: pool2d_grad crashes, softmax gradients go wrong with the
    in-place pass, and batch-norm statistics are never updated. Paddle inserts the
    layout conversions around the rewritten ops itself; the tests check that losses,
    parameters and batch-norm statistics match the plain kernels. Call it after the
    executor has run once (that registers the oneDNN dialect) and before ``program`` runs.
    """
    passes = paddle.pir.PassManager()
    for grad in (False, True):
        passes.register_pass(f"onednn_conv2d{'_grad' if grad else ''}", _onednn_conv_pattern(grad))
    passes.run(program)
    names = {op.name() for op in program.global_block().ops}
    if "" in names or "onednn_op.conv2d" not in names:
        raise RuntimeError("rewriting the convolutions for oneDNN failed")


def check_save_dir(save_dir):
    """Refuse, before any training, a save directory that cannot hold the model."""
    save_dir = Path(save_dir)
    if save_dir.exists() and not save_dir.is_dir():
        raise ConfigError(f"{save_dir}: is a file, not a folder; choose another --save-dir")
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=save_dir).close()
    except OSError as e:
        raise ConfigError(f"{save_dir}: cannot write the model there ({e.strerror}); "
                          f"choose another --save-dir") from None


def check_positive(**options):
    """Refuse any option that is set (not None) but not > 0."""
    for name, value in options.items():
        if value is not None and not value > 0:
            raise ConfigError(f"{name.replace('_', '-')} must be > 0, got {value}")


def log_every_100(event, log=print):
    """The default event handler: the chapter's log lines."""
    if isinstance(event, StepEvent) and event.batch_id % 100 == 0:
        log(f"Pass {event.pass_id}, Batch {event.batch_id}, Cost {event.cost:.6f}")
    elif isinstance(event, PassEvent):
        log(f"Test with Pass {event.pass_id}, Cost {event.test_cost:.6f}, "
            f"Acc {event.test_acc:.4f}")


def test(exe, programs, images, labels):
    """Mean cost and accuracy of the test program over all ``images``."""
    cost, correct = 0.0, 0
    for x, y in batches(images, labels, TEST_BATCH_SIZE):
        c, a = exe.run(programs.test, feed={"img": x, "label": y},
                       fetch_list=[programs.test_cost, programs.test_acc])
        cost, correct = cost + float(c) * len(x), correct + round(float(a) * len(x))
    return cost / len(images), correct / len(images)


def train(model="cnn", epochs=5, batch_size=64, learning_rate=0.001, device="auto",
          data_dir=None, sample=False, data=None, save_dir=DEFAULT_SAVE_DIR, seed=None,
          event_handler=None, log=print, onednn=None, threads=None, resume=False):
    """Train ``model`` and keep the inference model of its best pass in ``save_dir``.

    ``data`` (an :class:`~recognize_digits.data.MNIST`) overrides ``data_dir``/``sample``.
    ``event_handler(event)`` receives a :class:`StepEvent` after each batch and a
    :class:`PassEvent` after each pass; by default the chapter's log lines are printed.
    ``onednn`` runs the convolutions on oneDNN (see :func:`use_onednn_convolutions`);
    by default it does so on the CPU when Paddle is built with oneDNN, on ``threads``
    threads (default: every core the process may use).
    Ctrl-C stops training after the current batch and saves a checkpoint (parameters,
    optimizer state, position and random state) in ``save_dir/checkpoint``;
    ``resume=True`` continues from it, with the settings it was started with.
    Returns the metrics also written to ``save_dir/metrics.json``.
    """
    state = read_checkpoint(save_dir) if resume else None
    if state:
        model, epochs, batch_size, learning_rate, seed = (
            state["metrics"][k] for k in ("model", "epochs", "batch_size", "learning_rate", "seed"))
    check_model(model)
    check_positive(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                   threads=threads)
    place = select_place(device)
    check_save_dir(save_dir)
    data = data or load_mnist(data_dir, sample)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") >> 1
    handler = event_handler or (lambda event: log_every_100(event, log))

    paddle.enable_static()
    paddle.seed(seed)
    programs = Programs(model, learning_rate, seed)
    has_conv = any(op.name() == "pd_op.conv2d" for op in programs.main.global_block().ops)
    if onednn is None:
        onednn = isinstance(place, paddle.CPUPlace) and paddle.base.core.is_compiled_with_onednn()
    onednn = bool(onednn and has_conv)
    exe = paddle.static.Executor(place)
    scope = paddle.static.Scope()  # a fresh scope: runs in one process never mix parameters
    rng = np.random.default_rng(seed)
    metrics = state["metrics"] if state else {
        "model": model, "epochs": epochs, "batch_size": batch_size,
        "learning_rate": learning_rate, "seed": seed, "device": str(place), "onednn": onednn,
        "data": data.source, "parameters": count_parameters(programs.test), "passes": [],
        "best_pass": None}
    checkpoint = Path(save_dir) / "checkpoint"
    with exclusive(save_dir), paddle.static.scope_guard(scope), StopOnCtrlC() as ctrl_c:
        exe.run(programs.startup)
        if onednn:
            use_onednn_convolutions(programs.main)
            paddle.base.core.set_num_threads(threads or available_cores())
        if state:
            paddle.static.load(programs.main, str(checkpoint / "train"), exe)
            rng.bit_generator.state = state["rng"]
            log(f"Resuming {model} at pass {state['pass_id']}, batch {state['batch_id']}")
        for pass_id in range(state["pass_id"] if state else 0, epochs):
            pass_rng = rng.bit_generator.state  # to deal this pass's batches again on resume
            resumed = state if state and state["pass_id"] == pass_id else None
            costs, accs, sizes = resumed["partial"] if resumed else ([], [], [])
            start = time.perf_counter() - (resumed["seconds"] if resumed else 0)
            for batch_id, (x, y) in enumerate(
                    batches(data.train_images, data.train_labels, batch_size, True, rng)):
                if batch_id < len(costs):
                    continue  # done before the interruption
                cost, acc = exe.run(programs.main, feed={"img": x, "label": y},
                                    fetch_list=[programs.avg_cost, programs.acc])
                costs.append(float(cost)), accs.append(float(acc)), sizes.append(len(x))
                if diverged(costs):
                    best = metrics["best_pass"]
                    kept = (f"the model of pass {best} stays in {save_dir}" if best is not None
                            else "nothing was saved")
                    raise DivergedError(
                        f"training diverged: the cost is {costs[-1]:.4g} at pass {pass_id}, batch "
                        f"{batch_id}; {kept}. Try a smaller learning rate than {learning_rate}")
                handler(StepEvent(pass_id, batch_id, costs[-1], accs[-1]))
                if ctrl_c.pressed:
                    save_checkpoint(checkpoint, exe, programs, {
                        "pass_id": pass_id, "batch_id": batch_id + 1, "rng": pass_rng,
                        "partial": [costs, accs, sizes], "seconds": time.perf_counter() - start,
                        "metrics": metrics})
                    raise TrainingInterrupted(
                        f"stopped at pass {pass_id}, batch {batch_id + 1}; a checkpoint is in "
                        f"{checkpoint}: continue with 'recognize-digits train --resume "
                        f"--save-dir {save_dir}' (the same data options)")
            test_cost, test_acc = test(exe, programs, data.test_images, data.test_labels)
            event = PassEvent(pass_id, float(np.average(costs, weights=sizes)),
                              float(np.average(accs, weights=sizes)), test_cost, test_acc,
                              time.perf_counter() - start)
            metrics["passes"].append(vars(event))
            best = metrics["best_pass"]
            if best is None or test_cost < metrics["passes"][best]["test_cost"]:
                metrics["best_pass"] = pass_id
                save_model(save_dir, exe, programs, metrics)
            else:
                write_json(Path(save_dir) / "metrics.json", metrics)
            handler(event)
    shutil.rmtree(checkpoint, ignore_errors=True)
    best = metrics["passes"][metrics["best_pass"]]
    log(f"Best pass is {metrics['best_pass']}, testing Avgcost is {best['test_cost']:.6f}")
    log(f"The classification accuracy is {100 * best['test_acc']:.2f}%"
        + (" (on the bundled sample)" if data.is_sample else ""))
    return metrics


def diverged(costs):
    """Whether a pass's batch costs so far show a run that blew up.

    A cost that is not finite, or the last 20 averaging over ten times the 2.3 of
    guessing uniformly: Paddle's cross entropy clips log(0), so a run that blows up
    shows a cost stuck far above guessing rather than inf.
    """
    return not np.isfinite(costs[-1]) or (
        len(costs) >= 20 and np.mean(costs[-20:]) > 10 * np.log(10) > costs[0])


class StopOnCtrlC:
    """Within it, a first Ctrl-C only sets ``pressed`` (the loop stops at the next batch,
    after saving a checkpoint); a second one interrupts at once. Main thread only."""

    def __enter__(self):
        self.pressed, self.previous = False, None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._pressed)
        return self

    def _pressed(self, signum, frame):
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def save_checkpoint(folder, exe, programs, state):
    """Parameters, optimizer state and ``state`` (position, random state, metrics)."""
    new = new_folder(folder)
    try:
        paddle.static.save(programs.main, str(new / "train"))
        write_json(new / "state.json", state)
        replace_folder(new, folder)
    finally:
        shutil.rmtree(new, ignore_errors=True)


def read_checkpoint(save_dir):
    path = Path(save_dir) / "checkpoint" / "state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{save_dir}: no checkpoint to resume from; start a new training "
                          f"without --resume") from None


def inference_program(programs, scope):
    """The test program as saved for prediction, its parameters copied into ``scope``.

    Convolution biases train as ``[C, 1, 1]`` (fast to train on the CPU) but are saved
    as ``[1, C, 1, 1]``, the form Paddle's inference passes fuse into the convolution:
    the same values and results, and batch prediction about 1.5x faster.
    """
    mapping = paddle.pir.IrMapping()
    program = programs.test.clone(mapping)
    trained = paddle.static.global_scope()
    for param in program.global_block().all_parameters():
        value = np.array(trained.find_var(param.name).get_tensor())
        if value.ndim == 3:  # a convolution bias
            value = value[None]
            with paddle.static.program_guard(paddle.static.Program()):
                param.set_type(paddle.static.data("shape", value.shape, "float32").type())
        scope.var(param.name).get_tensor().set(value, paddle.CPUPlace())
    return program, mapping.look_up(programs.test_img), mapping.look_up(programs.test_predict)


def save_model(save_dir, exe, programs, metrics):
    """Save the inference model and ``metrics.json`` as one: both are written to a new
    folder, which then takes the place of ``save_dir`` in one step. Anything else in
    ``save_dir`` is carried over (as hard links, not copies)."""
    save_dir = Path(save_dir)
    new = new_folder(save_dir)
    scope = paddle.static.Scope()
    program, img, predict = inference_program(programs, scope)
    try:
        with paddle.static.scope_guard(scope):
            paddle.static.save_inference_model(str(new / MODEL_PREFIX), [img], [predict], exe,
                                               program=program)
        write_json(new / "metrics.json", metrics)
        for entry in save_dir.iterdir() if save_dir.is_dir() else ():
            target = new / entry.name
            if target.exists():
                continue
            if entry.is_dir():
                shutil.copytree(entry, target, copy_function=os.link)
            else:
                os.link(entry, target)
        os.chmod(new, 0o755)
        replace_folder(new, save_dir)
    finally:
        shutil.rmtree(new, ignore_errors=True)
