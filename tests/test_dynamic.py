"""The dynamic mode trains the very networks of the static one, to the same numbers."""

import json
import subprocess
import sys

import numpy as np
import paddle
import pytest

from recognize_digits import InferenceModel, models
from recognize_digits.data import batches
from recognize_digits.engines.compare import side_by_side
from recognize_digits.engines.dynamic import dynamic_mode
from recognize_digits.errors import ConfigError
from recognize_digits.static_graph import Programs
from recognize_digits.training import train

from conftest import INFER_3, ROOT, subset


@pytest.mark.parametrize("model", list(models.MODELS))
def test_static_and_dynamic_train_alike_and_save_the_same_model(model, sample, tmp_path):
    data = list(batches(sample.train_images[:20 * 64], sample.train_labels[:20 * 64], 64))
    static_losses, dynamic_losses = side_by_side(model, data, tmp_path, seed=5)
    assert len(static_losses) == 20 and static_losses[-1] < static_losses[0]
    np.testing.assert_allclose(dynamic_losses, static_losses, rtol=0, atol=1e-5)
    x = next(batches(sample.test_images, sample.test_labels, 200))[0]
    static_probs = InferenceModel(tmp_path / "static", onednn=False).predict(x)[1]
    dynamic_probs = InferenceModel(tmp_path / "dynamic", onednn=False).predict(x)[1]
    np.testing.assert_allclose(dynamic_probs, static_probs, atol=1e-5)


def test_the_layers_are_what_the_static_builders_build():
    paddle.enable_static()
    for name, layer in models.LAYERS.items():
        program = Programs(name, seed=1)
        static = sorted((p.name, tuple(p.shape))
                        for p in program.main.global_block().all_parameters())
        with dynamic_mode(), paddle.utils.unique_name.guard():
            dynamic = sorted((p.name, tuple(p.shape)) for p in layer().state_dict().values())
        assert dynamic == static


def test_dynamic_training_keeps_the_mode_it_found(sample, tmp_path):
    data = subset(sample, 300, 100)
    paddle.enable_static()
    metrics = train("softmax", epochs=1, data=data, save_dir=tmp_path / "a", seed=2,
                    graph="dynamic", event_handler=lambda e: None, log=lambda *a: None)
    assert not paddle.in_dynamic_mode()
    assert metrics["graph"] == "dynamic" and metrics["parameters"] == 7850
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["graph"] == "dynamic"
    with dynamic_mode():  # loading a model leaves dynamic mode on
        InferenceModel(tmp_path / "a")
        assert paddle.in_dynamic_mode()
    with pytest.raises(ConfigError, match="graph='eager': must be 'static' or 'dynamic'"):
        train(data=data, save_dir=tmp_path / "b", graph="eager")


def test_the_command_line_trains_in_dynamic_mode_and_predicts(tmp_path):
    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "recognize_digits", *map(str, args)],
                              capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    # the resume and Ctrl-C tests of test_train run in both modes
    run("train", "--model", "cnn", "--epochs", "3", "--sample", "--seed", "4", "--graph",
        "dynamic", "--save-dir", tmp_path / "model")
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["graph"] == "dynamic"
    [result] = json.loads(run("predict", INFER_3, "--model-dir", tmp_path / "model", "--json"))
    assert result["digit"] == 3
