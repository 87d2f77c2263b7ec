"""Fine-tuning a saved model on a user's own digits: it learns them, keeps MNIST, and
leaves the model it started from alone."""

import hashlib
import json
import os
import shutil
import signal

import numpy as np
import pytest
from PIL import Image

from recognize_digits import cli
from recognize_digits.own_digits import sources
from recognize_digits.errors import (ConfigError, DivergedError, ModelError, RecognizeDigitsError,
                                     TrainingInterrupted)
from recognize_digits.events import StepEvent
from recognize_digits.own_digits.finetune import finetune, split
from recognize_digits.infer import InferenceModel, load_image
from recognize_digits.own_digits.folders import load_labelled_images
from recognize_digits.plumbing.checkpoint import saved_parameters

from conftest import INFER_3, subset


def fingerprint(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def pen_digits(tmp_path_factory):
    """40 synthetic pen-stroke digits (4 of each), as a user's labelled folder."""
    folder = tmp_path_factory.mktemp("mine")
    sources.write("pen", folder, 40, seed=0, half="tune")
    return folder


def quiet():
    return dict(event_handler=lambda event: None, log=lambda *a: None)


@pytest.mark.parametrize("graph", ["static", "dynamic"])
def test_finetuning_learns_the_users_digits_and_leaves_the_model_alone(graph, trained_cnn,
                                                                      sample, pen_digits,
                                                                      tmp_path):
    base = trained_cnn[0]
    before = fingerprint(base)
    metrics = finetune(base, pen_digits, tmp_path / "tuned", epochs=3, data=subset(sample, 600),
                       graph=graph, **quiet())
    assert fingerprint(base) == before
    tuned = metrics["finetune"]
    assert (tuned["digits"], tuned["trained_on"], tuned["held_out"]) == (40, 30, 10)
    assert tuned["mnist_digits_mixed_in"] == 8 * 30 and tuned["base_model"] == str(base)
    assert tuned["after"]["held_out_accuracy"] >= tuned["before"]["held_out_accuracy"]
    assert metrics["model"] == "cnn" and metrics["graph"] == graph
    saved = json.loads((tmp_path / "tuned" / "metrics.json").read_text())
    assert saved["finetune"] == json.loads(json.dumps(tuned))
    # the saved model is one like any other, and scores on the held-out digits what it says
    _, labels, inputs, _ = load_labelled_images(pen_digits)
    _, held = split(labels, 0.25, 0)
    digits = InferenceModel(tmp_path / "tuned").predict(inputs[held])[0]
    assert (digits == labels[held]).mean() == pytest.approx(tuned["after"]["held_out_accuracy"])


@pytest.mark.parametrize("graph", ["static", "dynamic"])
def test_it_starts_from_the_saved_parameters(graph, trained_cnn, sample, pen_digits, tmp_path):
    # one pass at a learning rate too small to move anything: the base model's parameters
    # come back (only batch norm's running statistics follow the new batches)
    finetune(trained_cnn[0], pen_digits, tmp_path / "same", epochs=1, learning_rate=1e-12,
             data=subset(sample, 600), graph=graph, **quiet())
    base, same = (saved_parameters(d) for d in (trained_cnn[0], tmp_path / "same"))
    assert base.keys() == same.keys() and len(base) == 10
    statistics = [n for n in base if n.startswith("batch_norm") and n[-3:] in ("w_1", "w_2")]
    assert len(statistics) == 2
    for name in base.keys() - statistics:
        np.testing.assert_allclose(same[name].ravel(), base[name].ravel(), atol=1e-6)


def test_the_held_out_digits_are_a_share_of_every_digit():
    labels = np.repeat(np.arange(10), [8, 4, 4, 4, 4, 4, 4, 4, 4, 1])
    train_at, held_at = split(labels, 0.25, seed=3)
    assert sorted(np.concatenate([train_at, held_at])) == list(range(len(labels)))
    assert np.bincount(labels[held_at], minlength=10).tolist() == [2] + [1] * 8 + [0]
    assert split(labels, 0.25, seed=3)[1].tolist() == held_at.tolist()  # seeded
    assert split(labels, 0.25, seed=4)[1].tolist() != held_at.tolist()


def copy_some(pen_digits, folder, count=None, digit=None):
    folder.mkdir()
    for path in sorted(pen_digits.iterdir())[:count]:
        if digit is None or path.name.startswith(str(digit)):
            shutil.copy(path, folder / path.name)
    return folder


@pytest.mark.parametrize("case, message", [
    ("empty", "no labelled images"),
    ("one digit", "every image is a 3; give images of other digits too"),
    ("few", "9 digits are too few to learn from; give at least 10"),
    ("not a model", "not a model saved by 'recognize-digits train'"),
    ("out is the model", "is the model to fine-tune; choose another save_dir=..., or give "
                         "overwrite=True"),
    ("out inside the model", "is inside the model to fine-tune"),
])
def test_bad_input_is_one_line_and_changes_nothing(case, message, trained_cnn, sample,
                                                   pen_digits, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(trained_cnn[0], base)
    before = fingerprint(base)
    images, model, out = pen_digits, base, tmp_path / "out"
    if case == "empty":
        images = tmp_path / "empty"
        images.mkdir()
    elif case == "one digit":
        images = copy_some(pen_digits, tmp_path / "threes", digit=3)
    elif case == "few":
        images = copy_some(pen_digits, tmp_path / "few", count=9)
    elif case == "not a model":
        model = tmp_path / "nothing"
        model.mkdir()
    elif case == "out is the model":
        out = base
    else:
        out = base / "inside"
    with pytest.raises(RecognizeDigitsError) as error:
        finetune(model, images, out, epochs=1, data=subset(sample, 300), **quiet())
    assert message in str(error.value) and len(str(error.value).splitlines()) == 1
    assert fingerprint(base) == before and not (base / "inside").exists()


def test_one_image_per_digit_trains_on_all_of_them_and_says_so(trained_cnn, sample, pen_digits,
                                                               tmp_path):
    images = tmp_path / "ten"
    images.mkdir()
    for digit in range(10):  # the documented minimum: one of each digit
        shutil.copy(next(pen_digits.glob(f"{digit}_*")), images)
    lines = []
    metrics = finetune(trained_cnn[0], images, tmp_path / "out", epochs=2,
                       data=subset(sample, 300), event_handler=lambda e: None, log=lines.append)
    assert any("none is held out: training on all 10 of yours and keeping the last pass" in line
               for line in lines)
    tuned = metrics["finetune"]
    assert (tuned["trained_on"], tuned["held_out"], metrics["best_pass"]) == (10, 0, 1)
    assert tuned["before"]["held_out_accuracy"] is tuned["after"]["held_out_accuracy"] is None
    assert InferenceModel(tmp_path / "out").predict(load_image(INFER_3))[1].shape == (1, 10)


def test_a_model_whose_metrics_name_another_network_is_refused(trained_cnn, sample, pen_digits,
                                                               tmp_path):
    base = tmp_path / "base"
    shutil.copytree(trained_cnn[0], base)
    metrics = json.loads((base / "metrics.json").read_text())
    (base / "metrics.json").write_text(json.dumps({**metrics, "model": "mlp"}))
    with pytest.raises(ModelError, match="metrics.json says the network is 'mlp', but its "
                                         "parameters are those of 'cnn'") as error:
        finetune(base, pen_digits, tmp_path / "out", epochs=1, data=subset(sample, 300),
                 **quiet())
    assert len(str(error.value).splitlines()) == 1 and not (tmp_path / "out").exists()


def test_ctrl_c_says_to_start_again_and_leaves_no_checkpoint(trained_cnn, sample, pen_digits,
                                                            tmp_path):
    def ctrl_c_in_pass_1(event):
        if isinstance(event, StepEvent) and (event.pass_id, event.batch_id) == (1, 2):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as stopped:
        finetune(trained_cnn[0], pen_digits, tmp_path / "out", epochs=3,
                 data=subset(sample, 300), event_handler=ctrl_c_in_pass_1, log=lambda *a: None)
    message = str(stopped.value)  # not "go on with resume=True": finetune has no resume
    assert message == (f"stopped at pass 1, batch 3; the model of pass 0 is in {tmp_path / 'out'}. "
                       f"A fine-tuning does not resume: run it again to start over")
    assert not (tmp_path / "out" / "checkpoint").exists()
    InferenceModel(tmp_path / "out")  # pass 0's, whole


def test_a_second_fine_tuning_into_the_folder_is_refused_before_reading_images(
        trained_cnn, sample, pen_digits, tmp_path, monkeypatch):
    from recognize_digits.own_digits import finetune as module
    from recognize_digits.plumbing.storage import exclusive

    read = []
    monkeypatch.setattr(module, "load_labelled_images",
                        lambda *a, **k: read.append(a) or load_labelled_images(*a, **k))
    (tmp_path / "out").mkdir()
    with exclusive(tmp_path / "out"):  # a first one, saving there
        with pytest.raises(ConfigError, match="another training .* is saving there"):
            finetune(trained_cnn[0], pen_digits, tmp_path / "out", epochs=1,
                     data=subset(sample, 300), **quiet())
    assert not read
    finetune(trained_cnn[0], pen_digits, tmp_path / "out", epochs=1, data=subset(sample, 300),
             **quiet())  # free again, and the lock it holds lets its own training in
    assert read and (tmp_path / "out" / "model.pdiparams").is_file()


def test_unreadable_files_are_skipped_and_listed(trained_cnn, sample, pen_digits, tmp_path):
    images = copy_some(pen_digits, tmp_path / "mine")
    (images / "7_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    lines = []
    metrics = finetune(trained_cnn[0], images, tmp_path / "out", epochs=1,
                       data=subset(sample, 300), event_handler=lambda e: None, log=lines.append)
    assert any(line.startswith("skipped") and "7_broken.png" in line for line in lines)
    assert metrics["finetune"]["skipped"] == 1 and metrics["finetune"]["digits"] == 40


def test_overwrite_replaces_the_model_when_asked(trained_cnn, sample, pen_digits, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(trained_cnn[0], base)
    metrics = finetune(base, pen_digits, base, epochs=1, data=subset(sample, 300),
                       overwrite=True, **quiet())
    assert json.loads((base / "metrics.json").read_text())["finetune"]["base_model"] == str(base)
    assert metrics["finetune"]["digits"] == 40


@pytest.mark.parametrize("learning_rate", [1e6, 0.1])
def test_a_diverging_fine_tuning_keeps_the_model_it_would_overwrite(learning_rate, trained_cnn,
                                                                    sample, pen_digits, tmp_path):
    # 8 batches a pass: too few for a check that waited for 20, which let 1e6 save a model
    # no loader takes, and 0.1 one that reads 11%, over the model it started from
    base = tmp_path / "base"
    shutil.copytree(trained_cnn[0], base)
    before, answer = fingerprint(base), InferenceModel(base).predict(load_image(INFER_3))[1]
    with pytest.raises(DivergedError, match="diverged: the cost is .* at pass 0, batch .*; "
                                            "nothing was saved"):
        finetune(base, pen_digits, base, overwrite=True, learning_rate=learning_rate,
                 data=subset(sample, 300), **quiet())
    assert fingerprint(base) == before
    np.testing.assert_array_equal(InferenceModel(base).predict(load_image(INFER_3))[1], answer)


def test_the_command_line_fine_tunes(trained_cnn, pen_digits, tmp_path, capsys):
    assert cli.main(["finetune", "--model-dir", str(trained_cnn[0]), "--images", str(pen_digits),
                     "--save-dir", str(tmp_path / "tuned"), "--sample", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "Your 10 held-out digits: " in out and "% after; MNIST test: " in out
    assert (tmp_path / "tuned" / "model.json").is_file()
    assert cli.main(["finetune", "--model-dir", str(trained_cnn[0]), "--images", str(pen_digits),
                     "--save-dir", str(trained_cnn[0]), "--sample"]) == 1
    assert "choose another --save-dir" in capsys.readouterr().err
