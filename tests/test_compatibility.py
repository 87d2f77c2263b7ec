"""What an earlier version of the package saved still loads and goes on as it would have.

tests/fixtures/v994b6f9 holds a model and a Ctrl-C checkpoint saved by the package at
994b6f9 (on Paddle 3.0.0), for LeNet-5 on the static graph and softmax regression on the
dynamic one, with the batch costs and metrics of the same training run without a stop
(``make.py`` there says how they were made).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recognize_digits.infer import InferenceModel, evaluate
from recognize_digits.train import StepEvent, train

from conftest import subset
from test_train import without_seconds

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "v994b6f9"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def fixture_data(sample):
    return subset(sample, 500, 200)  # what make.py trained on


@pytest.mark.parametrize("name", list(EXPECTED))
def test_a_checkpoint_saved_by_994b6f9_resumes_as_that_training_would_have_gone_on(
        name, sample, tmp_path):
    expected = EXPECTED[name]
    save_dir = tmp_path / name
    shutil.copytree(FIXTURE / name, save_dir)
    costs, lines = [], []
    metrics = train(data=fixture_data(sample), save_dir=save_dir, resume=True, log=lines.append,
                    event_handler=lambda e: isinstance(e, StepEvent) and costs.append(e.cost))
    assert lines[0] == f"Resuming {expected['metrics']['model']} at pass 1, batch 3"
    np.testing.assert_allclose(costs, expected["costs"][expected["interrupted_after"]:],
                               rtol=1e-6)
    got, want = without_seconds(metrics), without_seconds(expected["metrics"])
    assert got.pop("workers") == 1  # recorded since data parallelism: that training had one
    assert got.keys() == want.keys()
    assert {k: v for k, v in got.items() if k != "passes"} == {
        k: v for k, v in want.items() if k != "passes"}
    assert len(got["passes"]) == len(want["passes"]) == 2
    for resumed, whole in zip(got["passes"], want["passes"]):
        assert resumed == pytest.approx(whole, rel=1e-6)
    assert not (save_dir / "checkpoint").exists()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_a_model_saved_by_994b6f9_loads_and_scores_what_it_scored(name, sample):
    saved = json.loads((FIXTURE / name / "metrics.json").read_text())
    best = saved["passes"][saved["best_pass"]]
    data = fixture_data(sample)
    cost, acc = evaluate(InferenceModel(FIXTURE / name), data.test_images, data.test_labels)
    assert cost == pytest.approx(best["test_cost"], rel=1e-4)
    assert acc == pytest.approx(best["test_acc"], abs=1e-6)
