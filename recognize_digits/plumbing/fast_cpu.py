"""Fast CPU paths, kept apart from the tutorial's code.

Each one is chosen by what this Paddle can do (a name that exists, a probe that runs),
never by its version number, and each falls back to Paddle's plain kernels: a fast path
that is missing or fails costs speed, never a training or a prediction.
"""

import os

import numpy as np
import paddle

from ..errors import ConfigError, check_positive, one_line


# The cores this process may run on (Linux: honours taskset and container limits), read
# when the package is imported: once OpenMP starts, the affinity set in __init__ binds the
# main thread to the first core, and the thread's own affinity then says one.
CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def available_cores():
    """How many cores this process may run on (all of them where affinity is unknown)."""
    return len(CORES) if CORES else os.cpu_count() or 1


def check_threads(threads):  # more than the cores, OpenMP may abort with a C++ trace
    if check_positive(threads=threads) or (threads or 0) > available_cores():
        raise ConfigError(f"threads={threads}: this process may use {available_cores()} cores; "
                          f"choose threads={available_cores()} or fewer")


def onednn_built():
    """Whether this Paddle was built with oneDNN (named MKLDNN before Paddle 3.2)."""
    core = paddle.base.core
    probe = getattr(core, "is_compiled_with_onednn", None) or getattr(
        core, "is_compiled_with_mkldnn", None)
    return bool(probe and probe())


def set_onednn(config, on):
    """Turn oneDNN on or off in a ``paddle.inference.Config`` (either API generation)."""
    name = ("enable_" if on else "disable_") + "onednn"
    method = getattr(config, name, None) or getattr(config, name.replace("onednn", "mkldnn"), None)
    if method is not None:
        method()
    elif on:
        raise RuntimeError("this Paddle's inference Config cannot turn oneDNN on")


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


_POOL_ATTRS = ("strides", "paddings", "ceil_mode", "exclusive", "data_format", "pooling_type",
               "global_pooling", "adaptive", "padding_algorithm")


def _onednn_pool_pattern():
    """A rewrite of ``pd_op.pool2d`` into its oneDNN twin (the forward only: oneDNN's
    pooling gradient fails in a PIR program, see docs/paddle-issues)."""
    ctx = paddle.pir.DrrPatternContext()
    src = ctx.SourcePattern()
    src.Op("pd_op.pool2d", {a: src.Attr(a) for a in _POOL_ATTRS})(
        [src.Tensor("x"), src.Tensor("window")], [src.Tensor("out")])
    res = src.ResultPattern()
    attrs = {a: src.Attr(a) for a in _POOL_ATTRS}
    attrs.update(use_quantizer=res.BoolAttr(False), is_test=res.BoolAttr(False),
                 mkldnn_data_type=res.StrAttr("float32"), onednn_data_type=res.StrAttr(""))
    res.Op("onednn_op.pool2d", attrs)([res.Tensor("x"), res.Tensor("window")], [res.Tensor("out")])
    return ctx


def use_onednn_kernels(program):
    """Run a program's convolutions and max pooling on oneDNN, every other op as it was.

    oneDNN's kernels use all cores where Paddle's own run on one: the convolutions make
    a LeNet-5 step about twice as fast, and the pooling takes 0.3 ms a step instead of
    0.9. Turning oneDNN on for the whole program (``FLAGS_use_mkldnn``) is not an option
    in Paddle 3.3's PIR training: the pooling gradient fails, softmax gradients go wrong
    with the in-place pass, and batch-norm statistics are never updated. Paddle inserts the
    layout conversions around the rewritten ops itself; the tests check that losses,
    parameters and batch-norm statistics match the plain kernels. Call it after the
    executor has run once (that registers the oneDNN dialect) and before ``program`` runs.
    """
    passes = paddle.pir.PassManager()
    passes.register_pass("onednn_conv2d", _onednn_conv_pattern(grad=False))
    passes.register_pass("onednn_conv2d_grad", _onednn_conv_pattern(grad=True))
    passes.register_pass("onednn_pool2d", _onednn_pool_pattern())
    passes.run(program)
    names = {op.name() for op in program.global_block().ops}
    if "" in names or "onednn_op.conv2d" not in names:
        raise RuntimeError("rewriting the convolutions for oneDNN failed")


def fast_evaluation(programs):
    """A copy of the test program with its convolutions on oneDNN: ``(program, cost, acc)``.

    The validation and test passes run this copy; the test program itself stays plain,
    for it is what is saved for prediction.
    """
    mapping = paddle.pir.IrMapping()
    program = programs.test.clone(mapping)
    use_onednn_kernels(program)
    return program, mapping.look_up(programs.test_cost), mapping.look_up(programs.test_acc)


def speed_up(programs, exe, threads=None):
    """Put ``programs`` on the fast CPU path; return None, or why it could not be.

    The training program and ``programs.evaluation`` (what the test passes run) are
    rewritten, then each is run once on two blank images in a scratch scope, so a
    rewrite this Paddle accepts but cannot execute is caught before training starts. On
    failure ``programs.main`` may be half rewritten: the caller builds it again.
    """
    if not onednn_built():
        return "this Paddle is built without oneDNN"
    blank = {"img": np.zeros((2, 1, 28, 28), np.float32), "label": np.zeros((2, 1), np.int64)}
    try:
        with paddle.static.scope_guard(paddle.static.Scope()):
            exe.run(programs.startup)
            use_onednn_kernels(programs.main)
            exe.run(programs.main, feed=blank, fetch_list=[programs.avg_cost])
            evaluation = fast_evaluation(programs)
            exe.run(evaluation[0], feed=blank, fetch_list=list(evaluation[1:]))
    except Exception as e:  # noqa: BLE001 - whatever breaks, the plain kernels remain
        return f"{type(e).__name__}: {one_line(e)}"
    programs.evaluation = evaluation
    paddle.base.core.set_num_threads(threads or available_cores())
    return None
