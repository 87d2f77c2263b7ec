"""The chapter's explanatory figures, drawn from the models and programs themselves:
activation functions, the networks (with their +1 bias units and all ten outputs),
convolution on small numbers (one channel, and several channels summed into one map),
max and average pooling, the static graph, the preprocessing step by step, and what a
trained model learned (filters, feature maps, softmax regression's templates, each set
on one colour scale with its colour bar).

Like :mod:`.plot`, with matplotlib's object API (no pyplot state).
"""

import numpy as np
import paddle
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..engine import graph_mode
from ..models import MODELS, count_parameters
from ..preprocess import mnist_style_steps


def plot_activations():
    """ReLU, sigmoid and tanh side by side."""
    x = np.linspace(-5, 5, 201)
    fig = Figure(figsize=(9, 2.6))
    for i, (name, y) in enumerate((("ReLU", np.maximum(x, 0)), ("sigmoid", 1 / (1 + np.exp(-x))),
                                   ("tanh", np.tanh(x)))):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.plot(x, y)
        ax.axhline(0, color="gray", lw=0.5)
        ax.axvline(0, color="gray", lw=0.5)
        ax.set_title(name)
    fig.tight_layout()
    return fig


def plot_preprocessing(gray):
    """What :func:`~recognize_digits.preprocess.mnist_style` does to an image, step by step."""
    steps = mnist_style_steps(gray)
    fig = Figure(figsize=(2.3 * len(steps), 2.6))
    for i, (title, image) in enumerate(steps):
        ax = fig.add_subplot(1, len(steps), i + 1)
        ax.imshow(image, cmap="gray")
        ax.set_title(title, fontsize=8, wrap=True)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{image.shape[1]}x{image.shape[0]}", fontsize=8)
    fig.tight_layout()
    return fig


def _grid_of_numbers(ax, values, title, shade=None, box=None, fmt="{:g}"):
    """A matrix drawn as a grid with its numbers; ``shade`` greys a mask of cells and
    ``box`` = (row, col, size) outlines a window."""
    values = np.asarray(values)
    ax.imshow(np.zeros_like(values, dtype=float) if shade is None else shade * 0.25,
              cmap="Greys", vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=9)
    # the cell edges are minor ticks; the major ticks go at the centres, because
    # matplotlib drops a minor tick that falls on a major one, and the automatic major
    # ticks (every 0.5 on a tall axis) took every horizontal line away
    ax.set_xticks(np.arange(values.shape[1]))
    ax.set_yticks(np.arange(values.shape[0]))
    ax.set_xticks(np.arange(-0.5, values.shape[1]), minor=True)
    ax.set_yticks(np.arange(-0.5, values.shape[0]), minor=True)
    ax.grid(which="minor", color="gray", lw=0.5)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    if box is not None:
        r, c, size = box
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), size, size, fill=False, color="tab:red", lw=2))
    ax.set_title(title, fontsize=9)


def plot_convolution(image=None, kernel=None, stride=2, padding=1, at=(0, 1)):
    """A convolution worked through: the padded input with the receptive field of one
    output value outlined, the kernel, and the output, whose size is
    ``floor((H - F + 2P) / S) + 1`` (a window that would pass the edge is not taken).
    Defaults: a 5x5 input, a 3x3 kernel, stride 2, padding 1."""
    image = np.arange(1, 26).reshape(5, 5) % 4 if image is None else np.asarray(image)
    kernel = np.array([[1, 0, -1]] * 3) if kernel is None else np.asarray(kernel)  # edges
    f, h = len(kernel), len(image)
    padded = np.pad(image, padding)
    out = _convolve(padded, kernel, stride)
    out_size = len(out)
    fig = Figure(figsize=(9, 3.3))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [len(padded), f, out_size]})
    pad_mask = np.ones_like(padded, dtype=float)
    pad_mask[padding:padding + h, padding:padding + h] = 0
    r, c = at
    _grid_of_numbers(axes[0], padded, f"input {h}x{h}, padding {padding} (grey)",
                     shade=pad_mask, box=(r * stride, c * stride, f))
    _grid_of_numbers(axes[1], kernel, f"kernel {f}x{f}")
    _grid_of_numbers(axes[2], out, f"output {out_size}x{out_size}, stride {stride}",
                     shade=_marked(out.shape, at))
    fig.suptitle(f"H_out = ⌊(H - F + 2P) / S⌋ + 1 = ⌊({h} - {f} + 2·{padding}) / {stride}⌋"
                 f" + 1 = {out_size}; the red window gives the output shaded", fontsize=10)
    fig.tight_layout()
    return fig


def _marked(shape, at):
    """A mask of ``shape`` with the one cell ``at`` set: the output value being explained."""
    mark = np.zeros(shape)
    mark[at] = 1
    return mark


def _convolve(padded, kernel, stride=1):
    """Each output value is the window of ``padded`` under ``kernel`` times the kernel,
    summed, the windows ``stride`` apart: a cross-correlation, as Paddle's conv2d."""
    f = len(kernel)
    size = (len(padded) - f) // stride + 1
    return np.array([[(padded[r * stride:r * stride + f, c * stride:c * stride + f] * kernel).sum()
                      for c in range(size)] for r in range(size)])


def plot_multichannel_convolution(image=None, kernel=None, bias=1, at=(0, 0)):
    """A ``[D, H, H]`` input convolved by one filter of ``[D, F, F]`` weights and a bias
    (stride 1, no padding), the chapter's multi-channel case: each channel is convolved
    with its own slice of the filter, and the D results are summed, plus the bias, into
    ONE output map. The output value at ``at`` is added up under the figure, so that a
    learner can check it by hand. Defaults: 3 channels of 4x4, a 3x3x3 filter."""
    image = np.arange(48).reshape(3, 4, 4) * 5 % 7 % 3 if image is None else np.asarray(image)
    kernel = (np.arange(27).reshape(3, 3, 3) * 5 % 7 % 3 - 1 if kernel is None
              else np.asarray(kernel))
    (d, h, _), f = image.shape, kernel.shape[-1]
    parts = [_convolve(channel, weights) for channel, weights in zip(image, kernel, strict=True)]
    out = sum(parts) + bias
    r, c = at
    mark = _marked(out.shape, at)
    fig = Figure(figsize=(8.5, 2 * d + 1.2))
    grid = fig.add_gridspec(d, 4, width_ratios=[h, f, len(out), len(out)])
    for i in range(d):
        _grid_of_numbers(fig.add_subplot(grid[i, 0]), image[i], f"input channel {i + 1}",
                         box=(r, c, f))
        _grid_of_numbers(fig.add_subplot(grid[i, 1]), kernel[i], f"∗ kernel slice {i + 1}")
        _grid_of_numbers(fig.add_subplot(grid[i, 2]), parts[i],
                         f"= channel {i + 1} ∗ slice {i + 1}", shade=mark)
    _grid_of_numbers(fig.add_subplot(grid[:, 3]), out,
                     f"output: the {d} summed\n+ bias {bias:g}", shade=mark)
    terms = " + ".join(f"({v:g})" if v < 0 else f"{v:g}" for v in [p[r, c] for p in parts] + [bias])
    fig.supxlabel(f"the shaded output: {terms} = {out[r, c]:g}  (the red windows times their "
                  f"slices, summed, plus the bias)", fontsize=9)
    fig.suptitle(f"one filter = D·F·F weights + 1 bias = {d}·{f}·{f} + 1 = {d * f * f + 1} "
                 f"parameters, one output map;\nK filters make K maps: D·F·F·K + K parameters "
                 f"(LeNet-5's second layer: 20·5·5·50 + 50 = 25,050)", fontsize=10)
    fig.tight_layout()
    return fig


def _checkerboard(shape, size):
    """1 on every other ``size`` x ``size`` window, 0 on the rest, so that neighbouring
    windows differ: cell (r, c) is in window (r // size, c // size)."""
    rows, columns = np.indices(shape) // size
    return ((rows + columns) % 2).astype(float)


def plot_pooling(values=None, size=2):
    """Max and average pooling worked through on the same input: each ``size`` x ``size``
    window (stride ``size``) gives its largest value, or its mean; the shading pairs each
    window with the output it gives. Either way a quarter of the values remain, and a
    feature moved inside its window gives the same maximum."""
    values = (np.array([[1, 3, 2, 0], [5, 4, 1, 1], [0, 2, 6, 7], [1, 1, 8, 3]])
              if values is None else np.asarray(values))
    h, w = values.shape
    windows = values.reshape(h // size, size, w // size, size)
    fig = Figure(figsize=(8, 2.8))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [w, w // size, w // size]})
    _grid_of_numbers(axes[0], values, f"input {h}x{w}", shade=_checkerboard(values.shape, size))
    for ax, name, pooled in ((axes[1], "max", windows.max(axis=(1, 3))),
                             (axes[2], "average", windows.mean(axis=(1, 3)))):
        _grid_of_numbers(ax, pooled, f"{name} pooling\n{size}x{size}, stride {size}",
                         shade=_checkerboard(pooled.shape, 1))
    fig.tight_layout()
    return fig


def plot_network(model):
    """A diagram of ``model`` ("softmax", "mlp", "cnn" or a builder) made from the shapes
    of its static program: fully connected networks as layers of units, LeNet-5 as
    blocks with the shape of what each makes."""
    rows, count = layers(MODELS[model] if isinstance(model, str) else model)
    if any(name == "conv2d" for name, _, _ in rows):
        return _block_diagram(rows, count)
    sizes = [784] + [params[0][1] for name, _, params in rows if name == "matmul"]
    return _unit_diagram(sizes, count)


def _unit_diagram(sizes, count):
    """Layers of units, every unit joined to every unit of the next layer by a weight. A
    bias is drawn as what it is, the weight from a unit that is always +1 (one under each
    layer but the last, dashed lines), so that (n + 1)·m counts a layer's parameters. The
    output layer is drawn whole, a unit per digit; wider layers show 8 units and dots."""
    fig = Figure(figsize=(2.4 * len(sizes), 4.2))
    ax = fig.add_subplot()
    last = len(sizes) - 1
    ys = [np.linspace(1, -1, size if i == last else min(size, 8)) for i, size in enumerate(sizes)]
    bias = -1.35  # the height of the +1 units
    for i in range(last):
        _join(ax, i, ys[i], ys[i + 1], color="lightgray", lw=0.5)
        _join(ax, i, [bias], ys[i + 1], color="tab:red", alpha=0.6, lw=0.6, ls="--")
        ax.scatter([i], [bias], s=320, marker="s", color="white", edgecolor="tab:red", zorder=2)
        ax.text(i, bias, "+1", ha="center", va="center", fontsize=8, color="tab:red", zorder=3)
    for i, (size, y) in enumerate(zip(sizes, ys)):
        colour = "tab:orange" if i == last else "tab:green" if i else "tab:blue"
        ax.scatter(np.full(len(y), i), y, s=100, color=colour, zorder=2)
        if size > len(y):
            ax.text(i + 0.08, 0, "⋮", fontsize=14, va="center")
        name = "input x (pixels)" if i == 0 else "softmax y" if i == last else f"hidden {i} (ReLU)"
        ax.text(i, -1.65, f"{name}\n{size} units", ha="center", va="top", fontsize=9)
    for digit, y in enumerate(ys[last]):
        ax.text(last + 0.1, y, str(digit), va="center", fontsize=8)
    ax.set_xlim(-0.5, last + 0.5)
    ax.set_ylim(-2.05, 1.2)
    ax.axis("off")
    formula = " + ".join(f"({a} + 1)·{b}" for a, b in zip(sizes, sizes[1:]))
    ax.set_title(f"every line a weight, the dashed ones from a +1 unit: the biases\n"
                 f"{formula} = {count:,} parameters", fontsize=10)
    fig.tight_layout()
    return fig


def _join(ax, x, ys, next_ys, **style):
    """A line from each unit at height ``ys`` in layer ``x`` to each unit of layer x + 1."""
    ax.add_collection(LineCollection([[(x, y0), (x + 1, y1)] for y0 in ys for y1 in next_ys],
                                     zorder=1, **style))


def _block_diagram(rows, count):
    """Boxes for LeNet-5's stages, each with the shape of its output."""
    stages, current = [("input", [1, 28, 28])], None
    labels = {"conv2d": "5x5 conv", "pool2d": "2x2 max pool", "relu": "+ bias, ReLU",
              "batch_norm": "batch norm", "flatten": "flatten", "matmul": "fully connected",
              "softmax": "softmax"}
    for name, shape, _ in rows:
        if name in labels and labels[name] != current:
            stages.append((labels[name], shape[1:]))
            current = labels[name]
    fig = Figure(figsize=(1.35 * len(stages), 2.8))
    ax = fig.add_subplot()
    for i, (label, shape) in enumerate(stages):
        ax.add_patch(Rectangle((i - 0.42, -0.5), 0.84, 1, color="tab:blue", alpha=0.15))
        ax.text(i, 0.15, label, ha="center", va="center", fontsize=8)
        ax.text(i, -0.2, " x ".join(map(str, shape)), ha="center", va="center", fontsize=8,
                color="tab:blue")
        if i:
            ax.annotate("", (i - 0.42, 0), (i - 0.58, 0), arrowprops={"arrowstyle": "->"})
    ax.set_xlim(-0.6, len(stages) - 0.4)
    ax.set_ylim(-0.8, 0.8)
    ax.axis("off")
    ax.set_title(f"LeNet-5 as built: channels x height x width after each stage; "
                 f"{count:,} parameters", fontsize=10)
    fig.tight_layout()
    return fig


def plot_static_graph(programs):
    """The static graph of a training (a :class:`~recognize_digits.train.Programs`): the
    startup program run once, the main program's forward, backward and Adam operations,
    the scope that holds the parameters, feed and fetch, and the test program cloned
    before the backward pass."""
    def count(program, test):
        return sum(1 for op in program.global_block().ops if test(op.name()))

    def computes(name):  # an operation that computes, not a parameter, constant or input
        return not name.startswith(("builtin", "pd_op.full", "pd_op.data"))

    main = programs.main
    names = [op.name() for op in main.global_block().ops]
    first_grad = next(i for i, n in enumerate(names) if n.endswith(("_grad", "_grad_")))
    forward = sum(1 for n in names[:first_grad] if computes(n))
    backward = count(main, lambda n: n.endswith(("_grad", "_grad_")))
    adam = count(main, lambda n: "adam" in n)
    params = main.global_block().all_parameters()
    trained = sum(1 for p in params if not p.stop_gradient)
    boxes = {
        "startup": (0.0, 2.0, f"startup program\n{count(programs.startup, lambda n: True)} ops: "
                              f"initial values\n(run once)"),
        "scope": (3.0, 2.0, f"scope\n{trained} parameters,\n{len(params) - trained} "
                            f"batch-norm statistics"),
        "main": (3.0, 0.0, f"main program\nforward: {forward} ops\nbackward: {backward} ops\n"
                           f"Adam: {adam} ops"),
        "test": (6.0, 2.0, f"test program\ncloned before the backward\n"
                           f"{count(programs.test, computes)} ops, "
                           f"test mode"),
        "feed": (0.0, 0.0, "feed\nimg [B,1,28,28]\nlabel [B,1]"),
        "fetch": (6.0, 0.0, "fetch_list\navg_cost, acc"),
    }
    fig = Figure(figsize=(9, 4))
    ax = fig.add_subplot()
    for x, y, text in boxes.values():
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5,
                bbox={"boxstyle": "round", "facecolor": "aliceblue", "edgecolor": "tab:blue"})
    for a, b, text in (("startup", "scope", "writes"), ("feed", "main", "each step"),
                       ("main", "fetch", "each step"), ("scope", "main", "read and updated"),
                       ("scope", "test", "read")):
        (xa, ya, _), (xb, yb, _) = boxes[a], boxes[b]
        ax.annotate("", (xb - 0.95 * np.sign(xb - xa), yb - 0.55 * np.sign(yb - ya)),
                    (xa + 0.95 * np.sign(xb - xa), ya + 0.55 * np.sign(yb - ya)),
                    arrowprops={"arrowstyle": "->", "color": "gray"})
        ax.text((xa + xb) / 2, (ya + yb) / 2 + 0.12, text, ha="center", fontsize=8, color="gray")
    ax.set_xlim(-1.3, 7.3)
    ax.set_ylim(-0.9, 2.9)
    ax.axis("off")
    ax.set_title("the static graph: programs declared first, run by the executor", fontsize=10)
    fig.tight_layout()
    return fig


def plot_feature_maps(maps, title, columns=10, label="activation"):
    """Each channel of one image's ``[C, H, W]`` activations as a small picture, all on
    one colour scale from the smallest value to the largest, so that channels compare
    and the one colour bar reads every picture."""
    maps = np.asarray(maps)
    return _panels(maps, Normalize(maps.min(), maps.max()), "viridis", label, columns,
                   title=title)


def plot_filters(weights, title="first-layer filters"):
    """A convolution's ``[C, 1, k, k]`` filters, each as a k x k picture on one scale
    symmetric about 0 (red positive, blue negative, white 0)."""
    weights = np.asarray(weights)[:, 0]
    return _panels(weights, _symmetric(weights), "RdBu_r", "weight", min(10, len(weights)),
                   title=title)


def plot_templates(weights):
    """Softmax regression's ``[784, 10]`` weights as ten 28x28 templates: where ink raises
    a digit's score (red) and where it lowers it (blue), on one scale."""
    weights = np.asarray(weights)
    templates = weights.T.reshape(10, 28, 28)
    return _panels(templates, _symmetric(weights), "RdBu_r", "weight", 10,
                   titles=[str(digit) for digit in range(10)])


def _symmetric(values):
    """A colour scale from -m to m, m the largest magnitude: 0 at the middle colour."""
    limit = np.abs(values).max()
    return Normalize(-limit, limit)


def _panels(images, norm, cmap, label, columns, titles=None, title=None):
    """Small pictures in rows of ``columns``, all drawn with the one ``norm`` and read by
    one colour bar labelled ``label``: a bar per picture, or a scale per picture, would
    make equal colours mean different values."""
    rows = -(-len(images) // columns)
    fig = Figure(figsize=(columns * 0.8 + 1, rows * 0.85 + 0.6), layout="constrained")
    axes = []
    for i, image in enumerate(images):
        ax = fig.add_subplot(rows, columns, i + 1)
        picture = ax.imshow(image, cmap=cmap, norm=norm)
        if titles:
            ax.set_title(titles[i], fontsize=9)
        ax.axis("off")
        axes.append(ax)
    fig.colorbar(picture, ax=axes, label=label, shrink=0.9 if rows > 1 else 1)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def layers(builder):
    """A model's operations as built: ``(name, output shape, [parameter shapes])`` each,
    from its static program (so a table or a diagram made from them follows the code)."""
    program = paddle.static.Program()
    with graph_mode("static"), paddle.static.program_guard(program, paddle.static.Program()):
        builder(paddle.static.data("img", [-1, 1, 28, 28], "float32"))
    rows = []
    for op in program.global_block().ops:
        if op.name() in ("builtin.parameter", "pd_op.full_int_array"):
            continue
        params = [list(v.shape) for v in op.operands_source()
                  if v.get_defining_op().name() == "builtin.parameter"]
        rows.append((op.name().split(".")[-1].rstrip("_"), list(op.result(0).shape), params))
    return rows, count_parameters(program)


def summary(builder):
    """A model's layers as text: each operation, its output shape and its parameters' shapes."""
    rows, count = layers(builder)
    lines = [f"{'operation':<12} {'output':<18} parameters"]
    lines += [f"{name:<12} {str(shape):<18} {'  '.join(map(str, params))}"
              for name, shape, params in rows]
    lines.append(f"trainable parameters: {count:,}")
    return "\n".join(lines)
