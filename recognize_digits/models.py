"""The chapter's three classifiers, as static-graph program builders.

Each builder takes the image input (``float32 [-1, 1, 28, 28]``) inside a
``paddle.static.program_guard`` and returns the softmax probabilities ``[-1, 10]``.
Layers are created anew on every call, so each program gets its own parameters.
"""

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn


def softmax_regression(img):
    """One fully connected layer straight to 10 softmax outputs (7,850 parameters)."""
    return F.softmax(nn.Linear(784, 10)(paddle.flatten(img, 1)))


def multilayer_perceptron(img):
    """Two hidden layers of 200 ReLU units, then softmax (199,210 parameters)."""
    hidden = F.relu(nn.Linear(784, 200)(paddle.flatten(img, 1)))
    hidden = F.relu(nn.Linear(200, 200)(hidden))
    return F.softmax(nn.Linear(200, 10)(hidden))


def conv_pool(x, num_filters, filter_size=5, pool_size=2, pool_stride=2):
    """A 'valid' convolution with bias and ReLU, then max pooling (Fluid's simple_img_conv_pool).

    Computed in a cheaper but equal order: max pooling commutes with adding a per-channel
    constant and with ReLU, so ``relu(max_pool(conv(x)) + bias)`` is
    ``max_pool(relu(conv(x) + bias))`` with the bias and ReLU applied to a quarter of the
    values. The bias lives apart, shaped ``[C, 1, 1]``: the sums are those of Conv2D's own
    ``[1, C, 1, 1]`` bias, but Paddle's CPU kernels add it, and its gradient, far faster.
    """
    conv = nn.Conv2D(x.shape[1], num_filters, filter_size, bias_attr=False)
    # named from the guarded name counter, as layers' parameters are (create_parameter's
    # own names keep counting across programs, and checkpoints load by name)
    name = paddle.utils.unique_name.generate("conv_pool_bias")
    bias = paddle.create_parameter([num_filters, 1, 1], "float32", is_bias=True,
                                   attr=paddle.ParamAttr(name=name))
    return F.relu(F.max_pool2d(conv(x), pool_size, pool_stride) + bias)


def convolutional_neural_network(img):
    """LeNet-5 as in the chapter: two 5x5 conv-pool blocks (20 and 50 filters) with
    batch norm after the first, then softmax (33,620 trainable parameters)."""
    x = conv_pool(img, 20)
    x = nn.BatchNorm2D(20)(x)
    x = conv_pool(x, 50)
    return F.softmax(nn.Linear(50 * 4 * 4, 10)(paddle.flatten(x, 1)))


MODELS = {
    "softmax": softmax_regression,
    "mlp": multilayer_perceptron,
    "cnn": convolutional_neural_network,
}


def count_parameters(program):
    """Number of trainable parameters in a static program (batch-norm statistics excluded)."""
    return int(sum(np.prod(p.shape) for p in program.global_block().all_parameters()
                   if not p.stop_gradient))


def summary(builder):
    """A model's layers as text: each operation, its output shape and its parameters' shapes."""
    paddle.enable_static()
    program = paddle.static.Program()
    with paddle.static.program_guard(program, paddle.static.Program()):
        builder(paddle.static.data("img", [-1, 1, 28, 28], "float32"))
    lines = [f"{'operation':<12} {'output':<18} parameters"]
    for op in program.global_block().ops:
        if op.name() in ("builtin.parameter", "pd_op.full_int_array"):
            continue
        params = [list(v.shape) for v in op.operands_source()
                  if v.get_defining_op().name() == "builtin.parameter"]
        lines.append(f"{op.name().split('.')[-1].rstrip('_'):<12} "
                     f"{str(list(op.result(0).shape)):<18} {'  '.join(map(str, params))}")
    lines.append(f"trainable parameters: {count_parameters(program):,}")
    return "\n".join(lines)
