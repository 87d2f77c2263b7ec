"""The chapter's figures: drawn from the models themselves, and right about them."""

import io
import re

import numpy as np
import paddle
import pytest
from matplotlib.collections import LineCollection

from recognize_digits.figures import diagrams
from recognize_digits.engines.dynamic import dynamic_mode
from recognize_digits.figures.inside import look_inside
from recognize_digits.infer import load_image
from recognize_digits.figures.diagrams import layers
from recognize_digits.models import MODELS, convolutional_neural_network
from recognize_digits.static_graph import Programs

from conftest import INFER_3


def texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [
        ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]


def draws(fig):
    fig.savefig(io.BytesIO(), format="png")  # the figure renders
    return fig


def test_lenet_diagram_follows_the_programs_shapes():
    fig = draws(diagrams.plot_network("cnn"))
    shown = texts(fig)
    for shape in ("1 x 28 x 28", "20 x 24 x 24", "20 x 12 x 12", "50 x 8 x 8", "50 x 4 x 4",
                  "800", "10"):
        assert shape in shown
    assert any("33,620 parameters" in t for t in shown)


@pytest.mark.parametrize("model, units", [("softmax", ["784", "10"]),
                                           ("mlp", ["784", "200", "200", "10"])])
def test_fully_connected_diagrams_show_their_layers(model, units):
    shown = " ".join(texts(draws(diagrams.plot_network(model))))
    assert [u for u in units if f"{u} units" in shown] == units
    assert ("7,850" if model == "softmax" else "199,210") in shown


def units_drawn(ax):
    """(x, y) of every unit drawn (the scatter points), by layer x."""
    points = np.concatenate([c.get_offsets() for c in ax.collections
                             if not isinstance(c, LineCollection)])
    return {x: sorted(p[1] for p in points if p[0] == x) for x in sorted({p[0] for p in points})}


@pytest.mark.parametrize("model, sizes", [("softmax", [784, 10]), ("mlp", [784, 200, 200, 10])])
def test_fully_connected_diagrams_draw_ten_outputs_and_a_bias_unit_per_layer(model, sizes):
    fig = draws(diagrams.plot_network(model))
    ax = fig.axes[0]
    bias = [t.get_position() for t in ax.texts if t.get_text() == "+1"]
    assert [x for x, _ in bias] == list(range(len(sizes) - 1))  # every layer but the last
    units = units_drawn(ax)
    last = len(sizes) - 1
    assert len(units[last]) == 10  # all ten outputs, none as dots
    assert [t.get_text() for t in ax.texts if t.get_position()[0] > last] == list("0123456789")
    segments = [tuple(map(tuple, s)) for c in ax.collections if isinstance(c, LineCollection)
                for s in c.get_segments()]
    for x, y in bias:  # a weight from the +1 unit to every unit of the next layer ...
        to = sorted(end[1] for start, end in segments if start == (x, y))
        assert to == [y1 for y1 in units[x + 1] if y1 != bias[0][1]]
        assert not any(end == (x + 1, y) for start, end in segments)  # ... and none into +1


@pytest.mark.parametrize("model", ["softmax", "mlp"])
def test_fully_connected_diagrams_count_weights_and_biases_as_the_program_does(model):
    title = diagrams.plot_network(model).axes[0].get_title()
    formula, count = title.split("\n")[1].split(" = ")
    assert eval(formula.replace("·", "*")) == layers(MODELS[model])[1]
    assert count == f"{layers(MODELS[model])[1]:,} parameters"


def test_the_shapes_the_diagrams_use_match_the_output_size_formula():
    rows, count = layers(convolutional_neural_network)
    sizes = [shape[2] for name, shape, _ in rows if name in ("conv2d", "pool2d")]
    assert sizes == [24, 12, 8, 4]  # (28 - 5 + 0) / 1 + 1 = 24, then /2, then (12 - 5) + 1 ...
    params = [int(np.prod(p)) for _, _, ps in rows for p in ps]
    assert count == 33_620 and 1 * 5 * 5 * 20 in params and 20 * 5 * 5 * 50 in params


def test_convolution_figure_computes_the_output():
    fig = draws(diagrams.plot_convolution())
    assert "= 3;" in fig._suptitle.get_text()  # (5 - 3 + 2) / 2 + 1
    one = diagrams.plot_convolution(image=np.ones((5, 5)), kernel=np.ones((3, 3)))
    corner = [t.get_text() for t in one.axes[2].texts]
    assert corner[0] == "4" and corner[4] == "9"  # a corner sees 4 ones, the centre 9


def test_convolution_figure_floors_the_output_size():
    fig = draws(diagrams.plot_convolution(image=np.ones((6, 6)), stride=2, padding=1))
    assert "⌊(6 - 3 + 2·1) / 2⌋ + 1 = 3;" in fig._suptitle.get_text()  # 2.5 floored, + 1
    assert fig.axes[2].images[0].get_array().shape == (3, 3)


def test_pooling_figure_keeps_the_largest_of_each_window():
    fig = draws(diagrams.plot_pooling())
    assert [t.get_text() for t in fig.axes[1].texts] == ["5", "2", "2", "8"]
    assert "max pooling" in fig.axes[1].get_title()


def test_pooling_figure_shows_average_pooling_beside_max_pooling():
    fig = draws(diagrams.plot_pooling())
    assert "average pooling" in fig.axes[2].get_title()
    # (1 + 3 + 5 + 4) / 4, (2 + 0 + 1 + 1) / 4, (0 + 2 + 1 + 1) / 4, (6 + 7 + 8 + 3) / 4
    assert [t.get_text() for t in fig.axes[2].texts] == ["3.25", "1", "1", "6"]
    six = draws(diagrams.plot_pooling(np.arange(36).reshape(6, 6), size=3))
    assert [t.get_text() for t in six.axes[2].texts] == ["7", "10", "25", "28"]


def test_pooling_figure_shades_every_other_window_like_a_checkerboard():
    fig = draws(diagrams.plot_pooling())
    shaded = fig.axes[0].images[0].get_array() > 0
    r, c = np.indices(shaded.shape)
    assert (shaded == ((r // 2 + c // 2) % 2 == 1)).all()
    windows = shaded.reshape(2, 2, 2, 2)  # window (i, j) is windows[i, :, j, :]
    assert (windows == windows[:, :1, :, :1]).all()  # one shade within each window
    assert shaded[0, 0] != shaded[0, 2] and shaded[0, 0] != shaded[2, 0]  # neighbours differ


@pytest.mark.parametrize("fig", [diagrams.plot_convolution, diagrams.plot_pooling])
def test_number_grids_draw_every_cell_edge(fig):
    fig = draws(fig())
    for ax in fig.axes:
        rows, columns = ax.images[0].get_array().shape
        for axis, n in ((ax.xaxis, columns), (ax.yaxis, rows)):  # vertical, horizontal lines
            assert list(axis.get_minorticklocs()) == list(np.arange(-0.5, n))
            assert len(axis.get_minor_ticks()) == n + 1
            assert all(tick.gridline.get_visible() for tick in axis.get_minor_ticks())


def test_static_graph_counts_the_programs_operations():
    paddle.enable_static()
    shown = " ".join(texts(draws(diagrams.plot_static_graph(Programs("cnn", seed=1)))))
    assert "Adam: 8 ops" in shown and "8 parameters,\n2 batch-norm statistics" in shown
    assert "cloned before the backward" in shown
    forward = re.search(r"forward: (\d+) ops", shown).group(1)
    assert f"{forward} ops, test mode" in shown  # the test program is the forward pass


def test_look_inside_fetches_every_stage_and_the_filters(trained_cnn):
    image = load_image(INFER_3)
    values, parameters = look_inside(trained_cnn[0], image)
    assert [k for k in values if k.startswith(("conv2d", "pool2d", "relu"))] == [
        "conv2d", "pool2d", "relu", "conv2d_2", "pool2d_2", "relu_2"]
    assert values["conv2d"].shape == (1, 20, 24, 24) and values["relu_2"].shape == (1, 50, 4, 4)
    probs = list(values.values())[-1]
    assert probs.shape == (1, 10) and probs.argmax() == 3
    assert parameters["conv2d_0.w_0"].shape == (20, 1, 5, 5)
    draws(diagrams.plot_filters(parameters["conv2d_0.w_0"]))
    draws(diagrams.plot_feature_maps(values["relu"][0], "after block 1"))


def test_templates_draw_ten_digits():
    weights = np.random.default_rng(0).normal(size=(784, 10))
    fig = draws(diagrams.plot_templates(weights))
    assert [ax.get_title() for ax in fig.axes[:10]] == [str(d) for d in range(10)]
    # pixel (row 3, column 5) of digit 7's template is weight 3 * 28 + 5 of column 7
    assert fig.axes[7].images[0].get_array()[3, 5] == weights[3 * 28 + 5, 7]


def one_colour_scale(fig, label):
    """The figure's one colour bar, labelled ``label``, reads every picture: all are drawn
    with the same limits, the bar's."""
    bars = [image.colorbar for ax in fig.axes for image in ax.images if image.colorbar]
    assert len(bars) == 1 and bars[0].ax in fig.axes
    assert bars[0].ax.get_ylabel() == label
    limits = {image.get_clim() for ax in fig.axes for image in ax.images}
    assert limits == {(bars[0].norm.vmin, bars[0].norm.vmax)}
    return limits.pop()


def test_filters_and_templates_have_one_colour_scale_symmetric_about_zero():
    rng = np.random.default_rng(0)
    filters = rng.normal(size=(20, 1, 5, 5))
    fig = draws(diagrams.plot_filters(filters))
    assert sum(1 for ax in fig.axes if ax.images) == 20
    limit = np.abs(filters).max()
    assert one_colour_scale(fig, "weight") == (-limit, limit)
    templates = rng.normal(size=(784, 10))
    limit = np.abs(templates).max()
    assert one_colour_scale(draws(diagrams.plot_templates(templates)), "weight") == (-limit, limit)


def test_feature_maps_share_one_colour_scale():
    maps = np.random.default_rng(0).random((20, 12, 12)) * np.arange(1, 21)[:, None, None]
    fig = draws(diagrams.plot_feature_maps(maps, "after block 1"))
    assert sum(1 for ax in fig.axes if ax.images) == 20
    assert one_colour_scale(fig, "activation") == (maps.min(), maps.max())


def numbers(ax):
    return np.array([float(t.get_text()) for t in ax.texts]).reshape(ax.images[0].get_array().shape)


TWO_CHANNELS = {"image": np.random.default_rng(1).integers(0, 4, (2, 5, 5)),
                "kernel": np.random.default_rng(2).integers(-2, 3, (2, 3, 3)), "bias": -2,
                "at": (1, 2)}


@pytest.mark.parametrize("case", [{}, TWO_CHANNELS])
def test_multichannel_convolution_sums_the_channels_into_one_map_as_paddle_does(case):
    fig = draws(diagrams.plot_multichannel_convolution(**case))
    grids = [ax for ax in fig.axes if ax.images]
    output = grids[-1]
    assert output.get_title().startswith("output")
    d = (len(grids) - 1) // 3
    image = np.array([numbers(ax) for ax in grids[0:-1:3]])  # the numbers the figure shows
    kernel = np.array([numbers(ax) for ax in grids[1:-1:3]])
    parts = np.array([numbers(ax) for ax in grids[2:-1:3]])
    bias = case.get("bias", 1)
    if case:
        assert (image == case["image"]).all() and (kernel == case["kernel"]).all()
    with dynamic_mode():
        x = paddle.to_tensor(image[None], dtype="float32")
        expected = paddle.nn.functional.conv2d(x, paddle.to_tensor(kernel[None], dtype="float32"),
                                               bias=paddle.to_tensor([bias], dtype="float32"))
        each = paddle.nn.functional.conv2d(x, paddle.to_tensor(kernel[:, None], dtype="float32"),
                                           groups=d)  # channel i with slice i alone
    assert (numbers(output) == expected.numpy()[0, 0]).all()  # ONE map
    assert (parts == each.numpy()[0]).all()
    assert (numbers(output) == parts.sum(axis=0) + bias).all()
    r, c = case.get("at", (0, 0))  # the sum written out for a learner to check
    terms, total = fig._supxlabel.get_text().split(" = ")[0:2]
    terms = terms.split(": ")[1]
    assert eval(terms) == float(total.split()[0]) == numbers(output)[r, c]
    assert terms.count("+") == d  # D channels' terms and the bias


def test_multichannel_convolution_counts_the_parameters_of_k_filters():
    title = draws(diagrams.plot_multichannel_convolution())._suptitle.get_text()
    assert "3·3·3 + 1 = 28 parameters" in title and "D·F·F·K + K" in title
    rows, _ = layers(convolutional_neural_network)
    second = [p for name, _, ps in rows for p in ps if name in ("conv2d", "add")][2:4]
    assert second == [[50, 20, 5, 5], [50, 1, 1]]  # weights D·F·F·K, then the K biases
    assert "20·5·5·50 + 50 = 25,050" in title and 20 * 5 * 5 * 50 + 50 == 25_050
