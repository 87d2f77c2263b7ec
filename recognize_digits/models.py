"""The chapter's three classifiers: one ``paddle.nn.Layer`` class each, and the
static-graph program builders that call them.

Each builder takes the image input (``float32 [-1, 1, 28, 28]``) inside a
``paddle.static.program_guard`` and returns the softmax probabilities ``[-1, 10]``.
Layers are created anew on every call, so each program gets its own parameters. The
classes, created in dynamic mode, are the same networks run eagerly.
"""

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from .errors import ConfigError


class SoftmaxRegression(nn.Layer):
    """One fully connected layer straight to 10 softmax outputs (7,850 parameters)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, img):
        return F.softmax(self.fc(paddle.flatten(img, 1)))


class MultilayerPerceptron(nn.Layer):
    """Two hidden layers of 200 ReLU units, then softmax (199,210 parameters)."""

    def __init__(self):
        super().__init__()
        self.hidden1, self.hidden2 = nn.Linear(784, 200), nn.Linear(200, 200)
        self.fc = nn.Linear(200, 10)

    def forward(self, img):
        hidden = F.relu(self.hidden1(paddle.flatten(img, 1)))
        hidden = F.relu(self.hidden2(hidden))
        return F.softmax(self.fc(hidden))


class ConvPool(nn.Layer):
    """A 'valid' convolution with bias and ReLU, then max pooling (Fluid's simple_img_conv_pool).

    Computed in a cheaper but equal order: max pooling commutes with adding a per-channel
    constant and with ReLU, so ``relu(max_pool(conv(x)) + bias)`` is
    ``max_pool(relu(conv(x) + bias))`` with the bias and ReLU applied to a quarter of the
    values. The bias lives apart, shaped ``[C, 1, 1]``: the sums are those of Conv2D's own
    ``[1, C, 1, 1]`` bias, but Paddle's CPU kernels add it, and its gradient, far faster.
    """

    def __init__(self, in_channels, num_filters, filter_size=5, pool_size=2, pool_stride=2):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, num_filters, filter_size, bias_attr=False)
        # named from the guarded name counter, as layers' parameters are (create_parameter's
        # own names keep counting across programs, and checkpoints load by name)
        name = paddle.utils.unique_name.generate("conv_pool_bias")
        self.bias = self.create_parameter([num_filters, 1, 1], attr=paddle.ParamAttr(name=name),
                                          is_bias=True)
        self.pool_size, self.pool_stride = pool_size, pool_stride

    def forward(self, x):
        return F.relu(F.max_pool2d(self.conv(x), self.pool_size, self.pool_stride) + self.bias)


class LeNet5(nn.Layer):
    """LeNet-5 as in the chapter: two 5x5 conv-pool blocks (20 and 50 filters) with
    batch norm after the first, then softmax (33,620 trainable parameters)."""

    def __init__(self):
        super().__init__()
        self.block1 = ConvPool(1, 20)
        self.norm = nn.BatchNorm2D(20)
        self.block2 = ConvPool(20, 50)
        self.fc = nn.Linear(50 * 4 * 4, 10)

    def forward(self, img):
        x = self.block2(self.norm(self.block1(img)))
        return F.softmax(self.fc(paddle.flatten(x, 1)))


# The chapter's program builders: each network's Layer, called on the image input inside
# a program_guard. The same classes run eagerly in dynamic mode (train(graph="dynamic")).

def softmax_regression(img):
    return SoftmaxRegression()(img)


def multilayer_perceptron(img):
    return MultilayerPerceptron()(img)


def convolutional_neural_network(img):
    return LeNet5()(img)


def loss_and_accuracy(predict, label):
    """The chapter's cost, the mean cross entropy of the softmax outputs, and the accuracy."""
    cost = F.cross_entropy(predict, label, use_softmax=False)
    return paddle.mean(cost), paddle.metric.accuracy(predict, label)


MODELS = {
    "softmax": softmax_regression,
    "mlp": multilayer_perceptron,
    "cnn": convolutional_neural_network,
}
LAYERS = {"softmax": SoftmaxRegression, "mlp": MultilayerPerceptron, "cnn": LeNet5}


def check_model(name):
    if name not in MODELS:
        raise ConfigError(f"model={name!r}: must be one of {', '.join(map(repr, MODELS))}")
    return name


def count_parameters(program):
    """Number of trainable parameters in a static program (batch-norm statistics excluded)."""
    return int(sum(np.prod(p.shape) for p in program.global_block().all_parameters()
                   if not p.stop_gradient))
