import numpy as np
import pytest

from recognize_digits.errors import ConfigError
from recognize_digits.figures.plot import (CostCurves, comparison_table, plot_accuracy, plot_digits,
                                   plot_probabilities)
from recognize_digits.events import PassEvent, StepEvent


def events(passes=2, steps=3):
    for p in range(passes):
        for b in range(steps):
            yield StepEvent(p, b, cost=2.0 / (1 + p * steps + b), acc=0.5)
        yield PassEvent(p, train_cost=1.0, train_acc=0.6, val_cost=0.4 / (p + 1), val_acc=0.95,
                        test_cost=0.5 / (p + 1), test_acc=0.9 + p / 100, seconds=1.5)


def test_cost_curves_record_steps_and_passes(tmp_path):
    curves = CostCurves()
    for event in events():
        curves(event)
    assert curves.steps == list(range(6))
    assert curves.train_costs[0] == 2.0 and len(curves.train_costs) == 6
    assert curves.test_steps == [3, 6] and curves.test_costs == [0.5, 0.25]
    assert curves.val_costs == [0.4, 0.2]
    lines = curves.figure().axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines[2:]] == [[0.4, 0.2], [0.5, 0.25]]
    assert len(lines) == 4  # batch costs, their running mean, validation and test costs
    curves.save(tmp_path / "c.svg")
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ConfigError, match=r"\.png, \.svg or \.pdf"):
        CostCurves.check_path(tmp_path / "c.txt")


def test_figures_and_table():
    fig = plot_digits(np.zeros((12, 28, 28), np.uint8), list(range(12)), columns=5)
    assert len(fig.axes) == 12 and fig.axes[3].get_title() == "3"
    bars = plot_probabilities(np.eye(10)[4]).axes[0].patches
    assert [round(b.get_height()) for b in bars] == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    metrics = {"passes": [vars(e) for e in events() if isinstance(e, PassEvent)],
               "best_pass": 1, "parameters": 33620}
    test, validation, chosen = plot_accuracy({"cnn": metrics}).axes[0].get_lines()
    assert list(test.get_ydata()) == [90, 91] and list(validation.get_ydata()) == [95, 95]
    assert list(chosen.get_xdata()) == [1] and list(chosen.get_ydata()) == [91]
    table = comparison_table({"cnn": metrics})
    assert "| cnn | 1 of 2 | 91.00% | 0.2500 | 33,620 | 1.5 |" in table


def test_the_learning_curve_is_drawn_from_the_benchmarks_results():
    import json

    from recognize_digits.figures.plot import plot_learning_curve

    from conftest import ROOT

    results = json.loads((ROOT / "benchmarks" / "results" / "finetune.json").read_text())
    fig = plot_learning_curve(results)
    ours, kept = fig.axes
    assert [line.get_label() for line in ours.lines] == ["uci", "fonts", "pen"]
    uci = ours.lines[0].get_ydata()
    runs = results["results"]["uci"]["sizes"]
    assert uci[0] == pytest.approx(100 * results["results"]["uci"]["before"])
    assert uci[3] == pytest.approx(100 * np.mean([r["accuracy"] for r in runs["100"]]))
    assert kept.lines[0].get_ydata()[0] == pytest.approx(100 * results["mnist_before"])
