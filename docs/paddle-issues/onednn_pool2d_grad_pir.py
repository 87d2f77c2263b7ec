"""oneDNN's max-pooling gradient fails in a PIR training program after a oneDNN convolution.

    python docs/paddle-issues/onednn_pool2d_grad_pir.py

A small static program (a 3x3 convolution, 2x2 max pooling, the mean of squares, SGD)
runs one step on the same input and parameters with ops rewritten to their oneDNN twins
by DRR patterns (as recognize_digits.speed rewrites LeNet-5's). Each line prints the
loss and a few values of the filter after the step, or the error the step raised.

Seen with Paddle 3.3.1 (CPU build, oneDNN inside):

    plain kernels                        : loss 0.141821, filter [0.091328, 0.094335, 0.097715]
    pooling (forward and gradient)       : the same to the last digit
    convolution + pooling forward        : the same to the last digit
    convolution + pooling and gradient   : RuntimeError: std::exception
                                           (the log: onednn_op.pool2d_grad raises dnnl::error)

So oneDNN's pooling gradient works on its own, but not fed by a oneDNN convolution (its
input and its forward output then come in oneDNN's layout). The package's workaround:
the pooling's forward runs on oneDNN, its gradient on Paddle's plain kernel
(``recognize_digits.speed.use_onednn_kernels``): the pooling takes 0.3 ms a LeNet-5
step instead of 0.9, with losses equal to the plain kernels'. The oneDNN op also wants attributes its plain twin
does not have (``use_quantizer``, ``mkldnn_data_type``, ``onednn_data_type``,
``is_test``), and its gradient the window as an attribute, not an input.
"""

import numpy as np
import paddle
import paddle.nn.functional as F

POOL = ("strides", "paddings", "ceil_mode", "exclusive", "data_format", "pooling_type",
        "global_pooling", "adaptive", "padding_algorithm")
CONV = ("strides", "paddings", "padding_algorithm", "dilations", "groups", "data_format")


def rewrite(name, attrs, inputs, outputs, extra):
    """A DRR pattern turning ``pd_op.<name>`` into ``onednn_op.<name>``; ``extra(res)``
    gives the attributes only the oneDNN op has; a ``kernel_size`` input it wants as an
    attribute is dropped."""
    ctx = paddle.pir.DrrPatternContext()
    src = ctx.SourcePattern()
    src.Op(f"pd_op.{name}", {a: src.Attr(a) for a in attrs})(
        [src.Tensor(t) for t in inputs], [src.Tensor(t) for t in outputs])
    res = src.ResultPattern()
    new = {a: src.Attr(a) for a in attrs}
    new.update(extra(res))
    kept = [t for t in inputs if not ("kernel_size" in new and t == "window")]
    res.Op(f"onednn_op.{name}", new)([res.Tensor(t) for t in kept],
                                     [res.Tensor(t) for t in outputs])
    return ctx


def pool_extra(res):
    return dict(use_quantizer=res.BoolAttr(False), mkldnn_data_type=res.StrAttr("float32"),
                onednn_data_type=res.StrAttr(""), is_test=res.BoolAttr(False))


PATTERNS = {
    "conv": ("conv2d", CONV, ["input", "filter"], ["out"], lambda res: dict(
        is_test=res.BoolAttr(False), mkldnn_data_type=res.StrAttr("float32"),
        onednn_data_type=res.StrAttr(""), force_fp32_output=res.BoolAttr(False))),
    "pool": ("pool2d", POOL, ["x", "window"], ["out"], pool_extra),
    "pool_grad": ("pool2d_grad", POOL, ["x", "out", "dout", "window"], ["dx"], lambda res: dict(
        pool_extra(res), kernel_size=res.VectorInt64Attr([2, 2]))),
}


def step(rewrites):
    """Loss and filter after one SGD step, with the ops ``rewrites`` on oneDNN."""
    main, startup = paddle.static.Program(), paddle.static.Program()
    with paddle.static.program_guard(main, startup):
        x = paddle.static.data("x", [-1, 2, 10, 10], "float32")
        conv = paddle.nn.Conv2D(2, 4, 3, bias_attr=False, weight_attr=paddle.ParamAttr(
            name="filter", initializer=paddle.nn.initializer.Constant(0.1)))
        h = conv(x * 1.0)  # the product keeps the convolution's input gradient needed
        loss = paddle.mean(F.max_pool2d(h, 2, 2) ** 2)
        paddle.optimizer.SGD(0.1).minimize(loss)
    exe = paddle.static.Executor(paddle.CPUPlace())
    scope = paddle.static.Scope()
    with paddle.static.scope_guard(scope):
        exe.run(startup)
        exe.run(startup)  # running once registers the oneDNN dialect
        passes = paddle.pir.PassManager()
        for name in rewrites:
            passes.register_pass(f"onednn_{name}", rewrite(*PATTERNS[name]))
        passes.run(main)
        wanted = {f"onednn_op.{PATTERNS[n][0]}" for n in rewrites}
        done = {op.name() for op in main.global_block().ops}
        assert wanted <= done, f"not rewritten: {wanted - done}"
        rng = np.random.default_rng(0)
        (value,) = exe.run(main, feed={"x": rng.normal(size=(2, 2, 10, 10)).astype(np.float32)},
                           fetch_list=[loss])
        return float(value), np.array(scope.find_var("filter").get_tensor()).ravel()[:3]


if __name__ == "__main__":
    paddle.enable_static()
    for title, rewrites in (("plain kernels", []), ("pooling (forward and gradient)",
                            ["pool", "pool_grad"]), ("convolution + pooling forward",
                            ["conv", "pool"]), ("convolution + pooling and gradient",
                            ["conv", "pool", "pool_grad"])):
        try:
            loss, w = step(rewrites)
            print(f"{title:37s}: loss {loss:.6f}, filter {np.round(w, 6).tolist()}")
        except Exception as e:  # noqa: BLE001 - the point is to show what fails
            print(f"{title:37s}: {type(e).__name__}: {str(e).strip().splitlines()[0][:120]}")
