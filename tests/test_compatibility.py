"""What earlier versions of the package saved still loads and goes on as it would have.

tests/fixtures/v994b6f9 and tests/fixtures/ve94c13d each hold a model and a Ctrl-C
checkpoint saved by the package at that commit (on Paddle 3.0.0), for LeNet-5 on the static
graph and softmax regression on the dynamic one, with the batch costs and metrics of the
same training run without a stop (``make.py`` there says how they were made).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recognize_digits.infer import InferenceModel, evaluate
from recognize_digits.events import StepEvent
from recognize_digits.training import train

from conftest import subset
from test_train import without_seconds

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SAVED = [(folder, name) for folder in sorted(FIXTURES.glob("v*"))
         for name in json.loads((folder / "expected.json").read_text())]
IDS = [f"{folder.name[1:]}-{name}" for folder, name in SAVED]


def fixture_data(sample):
    return subset(sample, 500, 200)  # what make.py trained on


@pytest.mark.parametrize("folder, name", SAVED, ids=IDS)
def test_a_checkpoint_saved_earlier_resumes_as_that_training_would_have_gone_on(
        folder, name, sample, tmp_path):
    expected = json.loads((folder / "expected.json").read_text())[name]
    save_dir = tmp_path / name
    shutil.copytree(folder / name, save_dir)
    costs, lines = [], []
    metrics = train(data=fixture_data(sample), save_dir=save_dir, resume=True, log=lines.append,
                    event_handler=lambda e: isinstance(e, StepEvent) and costs.append(e.cost))
    assert lines[0] == f"Resuming {expected['metrics']['model']} at pass 1, batch 3"
    np.testing.assert_allclose(costs, expected["costs"][expected["interrupted_after"]:],
                               rtol=1e-6)
    got, want = without_seconds(metrics), without_seconds(expected["metrics"])
    assert got.pop("workers") == 1  # recorded since data parallelism: that training had one
    assert want.pop("workers", 1) == 1
    assert got.keys() == want.keys()
    assert {k: v for k, v in got.items() if k != "passes"} == {
        k: v for k, v in want.items() if k != "passes"}
    assert len(got["passes"]) == len(want["passes"]) == 2
    for resumed, whole in zip(got["passes"], want["passes"]):
        assert resumed == pytest.approx(whole, rel=1e-6)
    assert not (save_dir / "checkpoint").exists()


@pytest.mark.parametrize("folder, name", SAVED, ids=IDS)
def test_a_model_saved_earlier_loads_and_scores_what_it_scored(folder, name, sample):
    saved = json.loads((folder / name / "metrics.json").read_text())
    best = saved["passes"][saved["best_pass"]]
    data = fixture_data(sample)
    cost, acc = evaluate(InferenceModel(folder / name), data.test_images, data.test_labels)
    assert cost == pytest.approx(best["test_cost"], rel=1e-4)
    assert acc == pytest.approx(best["test_acc"], abs=1e-6)
