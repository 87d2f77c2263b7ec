"""Bad input and faults: each ends in one clear line, a specific error, nothing lost."""

import io
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import paddle
import pytest
from PIL import Image

import tempfile

from recognize_digits import data
from recognize_digits.errors import ConfigError, DataError, DivergedError, ImageError, ModelError
from recognize_digits.infer import InferenceModel, load_image
from recognize_digits.engine import MODEL_PREFIX
from recognize_digits.training import train

from conftest import INFER_3, ROOT, write_mnist

DIGIT = np.asarray(Image.open(INFER_3))  # 28x28 uint8, light ink on black


def quiet():
    return dict(event_handler=lambda event: None, log=lambda *a: None)


# --- images to predict ---------------------------------------------------------------

def png_with_size(path, width, height):
    """A small valid PNG whose header claims width x height (nothing large is written)."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "PNG")
    raw = bytearray(buffer.getvalue())
    raw[16:24] = struct.pack(">II", width, height)  # IHDR's width and height
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))  # its CRC
    path.write_bytes(bytes(raw))
    return path


def truncated(path, fmt):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)).save(buffer, fmt)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.png", "no such file"),
    (lambda d: d, "is a folder"),
    (lambda d: (d / "a.txt").write_text("three") and d / "a.txt", "cannot read it as an image"),
    (lambda d: (d / "empty.png").write_bytes(b"") or d / "empty.png", "cannot read it as an image"),
    (lambda d: truncated(d / "t.png", "PNG"), "cannot read it as an image"),
    (lambda d: truncated(d / "t.jpg", "JPEG"), "cannot read it as an image"),
    (lambda d: Image.new("L", (1, 1)).save(d / "one.png") or d / "one.png", "too small"),
    (lambda d: png_with_size(d / "big.png", 20000, 20000), "too large"),
    (lambda d: png_with_size(d / "wide.png", 9000, 9000), "too large"),
])
def test_bad_images_are_refused(tmp_path, make, message):
    with pytest.raises(ImageError, match=message) as e:
        load_image(make(tmp_path))
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    assert str(e.value).count("cannot read") == (message == "cannot read it as an image")


def test_image_kinds_are_read_as_the_digit(tmp_path):
    plain = load_image(INFER_3)
    cases = {}
    Image.fromarray(DIGIT.astype(np.uint16) * 257).save(tmp_path / "16bit.png")
    cases["16-bit"] = tmp_path / "16bit.png"
    Image.fromarray(DIGIT).convert("P").save(tmp_path / "palette.png")
    cases["palette"] = tmp_path / "palette.png"
    frames = [Image.fromarray(DIGIT).convert("P"), Image.new("P", (28, 28), 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    cases["animated GIF (first frame)"] = tmp_path / "anim.gif"
    Image.fromarray(DIGIT).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    cases["CMYK JPEG"] = tmp_path / "cmyk.jpg"
    rotated = Image.fromarray(DIGIT).rotate(90, expand=True)  # stored turned left...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with the EXIF orientation that turns it back
    rotated.save(tmp_path / "exif.jpg", quality=100, exif=exif)
    cases["EXIF-rotated JPEG"] = tmp_path / "exif.jpg"
    for name, path in cases.items():
        assert np.abs(load_image(path) - plain).mean() < 0.02, name


def test_transparency_is_laid_on_white(tmp_path):
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = np.random.default_rng(1).integers(0, 256, (28, 28, 3))  # junk under alpha 0
    rgba[10:18, 10:18] = [0, 0, 0, 255]  # an opaque black square
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    x = load_image(tmp_path / "rgba.png", preprocess=False)[0, 0]
    assert x[0, 0] == 1.0 and x[14, 14] == -1.0  # white background, black ink


# --- model directories -----------------------------------------------------------------

def save_other_model(folder, shape):
    """An inference model whose input is ``shape`` instead of [-1, 1, 28, 28]."""
    paddle.enable_static()
    main, startup = paddle.static.Program(), paddle.static.Program()
    with paddle.static.program_guard(main, startup):
        x = paddle.static.data("img", shape, "float32")
        probs = paddle.nn.functional.softmax(paddle.nn.Linear(shape[-1], 10)(x))
    exe = paddle.static.Executor(paddle.CPUPlace())
    with paddle.static.scope_guard(paddle.static.Scope()):
        exe.run(startup)
        paddle.static.save_inference_model(str(folder / MODEL_PREFIX), [x], [probs], exe,
                                           program=main)


def test_bad_model_dirs(tmp_path, trained_cnn):
    good = trained_cnn[0]
    with pytest.raises(ModelError, match="no such folder"):
        InferenceModel(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="model.json, model.pdiparams missing"):
        InferenceModel(tmp_path / "empty")
    half = tmp_path / "half"
    half.mkdir()
    (half / "model.json").write_bytes((good / "model.json").read_bytes())
    with pytest.raises(ModelError, match="model.pdiparams missing"):
        InferenceModel(half)
    (half / "model.pdiparams").write_bytes((good / "model.pdiparams").read_bytes()[:1000])
    with pytest.raises(ModelError, match="cannot be loaded"):
        InferenceModel(half)
    other = tmp_path / "other"
    other.mkdir()
    save_other_model(other, [-1, 784])
    with pytest.raises(ModelError, match="28x28"):
        InferenceModel(other)


def damaged_copy(model_dir, folder, damage, checksum=True):
    """A copy of a saved model with ``damage(bytes) -> bytes`` done to its parameters."""
    import shutil

    shutil.copytree(model_dir, folder)
    params = folder / "model.pdiparams"
    params.write_bytes(damage(params.read_bytes()))
    if not checksum:
        (folder / "model.sha256").unlink()
    return folder


def overwrite_end(data, new):
    return data[:-len(new)] + new


@pytest.mark.parametrize("damage, checksum, message", [
    (lambda b: overwrite_end(b, b"\xff" * 1000), False, "holds NaN or infinite values"),
    (lambda b: overwrite_end(b, np.random.default_rng(0).bytes(1000)), False,
     "holds (NaN or infinite values|values as large as)"),
    (lambda b: overwrite_end(b, np.float32([0.5]).tobytes()), False, None),  # undetectable
    (lambda b: overwrite_end(b, np.float32([0.5]).tobytes()), True, "does not match the checksum"),
])
def test_damaged_parameters_are_refused(damage, checksum, message, trained_cnn, tmp_path):
    assert (trained_cnn[0] / "model.sha256").is_file()  # saved with every model
    folder = damaged_copy(trained_cnn[0], tmp_path / "damaged", damage, checksum)
    if message is None:  # a plausible value changed: only the checksum tells
        InferenceModel(folder)
        return
    with pytest.raises(ModelError, match=message) as error:
        InferenceModel(folder)
    assert "damaged" in str(error.value) and len(str(error.value).splitlines()) == 1


# --- options and training faults ---------------------------------------------------------

def test_save_dir_that_is_a_file_or_not_writable(tmp_path, sample, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        train("softmax", data=sample, save_dir=tmp_path / "file", **quiet())

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(ConfigError, match="cannot write the model there"):
        train("softmax", data=sample, save_dir=tmp_path / "ro", **quiet())


@pytest.mark.parametrize("batch_size", [64, 1024])
def test_divergence_stops_and_keeps_the_saved_model(batch_size, tmp_path, sample):
    # 1024: three batches a pass, too few for a check that waited for 20 (the model it
    # then saved held values no loader takes, over the good one)
    train("softmax", epochs=1, data=sample, save_dir=tmp_path, seed=0, **quiet())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(DivergedError, match=r"diverged: the cost is \S+ at pass 0, batch [12]; "
                                            r"nothing was saved.*smaller learning rate"):
        train("cnn", epochs=2, learning_rate=1e6, batch_size=batch_size, data=sample,
              save_dir=tmp_path, seed=0, **quiet())
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert InferenceModel(tmp_path).predict(load_image(INFER_3))[0] == [3]


def test_no_model_a_loader_would_refuse_is_saved(tmp_path, sample):
    # one batch a pass shows no cost to judge by; the parameters it would save show it
    train("softmax", epochs=1, data=sample, save_dir=tmp_path, seed=0, **quiet())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(DivergedError, match=r"diverged: after pass 0, parameter linear_0\.\S+ "
                                            r"holds values as large as 1e\+07; nothing was saved"):
        train("softmax", epochs=1, batch_size=4096, learning_rate=1e7, data=sample,
              save_dir=tmp_path, seed=0, **quiet())
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.new-*"))  # nor half of one


def test_mnist_html_page(tmp_path):
    folder = write_mnist(tmp_path / "m")
    (folder / "train-labels-idx1-ubyte.gz").write_text("<!DOCTYPE html><html>Not Found</html>")
    with pytest.raises(DataError, match="web page"):
        data.load_mnist(folder)


def test_label_outside_digits(tmp_path):
    from conftest import write_idx
    folder = write_mnist(tmp_path / "m")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(10) + 3)
    with pytest.raises(DataError, match="label 12 is not a digit"):
        data.load_mnist(folder)


@pytest.mark.parametrize("args", [
    ["train", "--model", "lenet"],
    ["train", "--lr", "-1", "--sample"],
    ["train", "--device", "gpu", "--sample"],
    ["predict", str(ROOT / "image")],
    ["evaluate", "--model-dir", "/nonexistent/model"],
])
def test_cli_errors_are_one_line(args, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "recognize_digits", *args, "--save-dir",
                           str(tmp_path / "s")] if args[0] == "train" else
                          [sys.executable, "-m", "recognize_digits", *args],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# --- nothing lost ------------------------------------------------------------------------

KILLED_MID_SAVE = """
import os, signal, sys
import paddle
from recognize_digits import load_mnist, train

original, calls = paddle.static.save_inference_model, []

def save_then_die(*args, **kwargs):  # the second best pass is written, then the process dies
    original(*args, **kwargs)
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)

paddle.static.save_inference_model = save_then_die
train("softmax", epochs=3, data=load_mnist(sample=True), save_dir=sys.argv[1], seed=0,
      event_handler=lambda event: None, log=lambda *a: None)
"""


def test_killed_while_saving_leaves_the_previous_complete_model(tmp_path, sample):
    import json
    from recognize_digits.infer import evaluate

    save_dir = tmp_path / "model"
    proc = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(save_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    metrics = json.loads((save_dir / "metrics.json").read_text())
    assert metrics["best_pass"] == 0 and len(metrics["passes"]) == 1  # pass 0's, whole
    cost, _ = evaluate(InferenceModel(save_dir), sample.test_images, sample.test_labels)
    assert cost == pytest.approx(metrics["passes"][0]["test_cost"], rel=1e-4)
    assert list(tmp_path.glob(".model.new-*"))  # the half-done save, left beside it
    train("softmax", epochs=1, data=sample, save_dir=save_dir, seed=0, **quiet())
    assert not list(tmp_path.glob(".model.new-*"))  # and cleared by the next run


def test_two_trainings_in_one_folder(tmp_path, sample):
    from recognize_digits.plumbing.storage import exclusive

    with exclusive(tmp_path / "model"):
        with pytest.raises(ConfigError, match="another training .* is saving there"):
            train("softmax", data=sample, save_dir=tmp_path / "model", **quiet())
    train("softmax", epochs=1, data=sample, save_dir=tmp_path / "model", **quiet())  # free again


def test_ctrl_c_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(tmp_path):
    import json
    import signal
    import time

    def command(save_dir, *extra):
        return [sys.executable, "-m", "recognize_digits", "train", "--model", "cnn", "--sample",
                "--epochs", "3", "--seed", "3", "--save-dir", str(save_dir), *extra]

    whole = subprocess.run(command(tmp_path / "whole"), capture_output=True, text=True,
                           timeout=300)
    assert whole.returncode == 0, whole.stderr

    proc = subprocess.Popen(command(tmp_path / "cut"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # wait until the first pass is done, then press Ctrl-C
        if line.startswith("Pass 0:"):
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().startswith("recognize-digits: stopped:") and "--resume" in err
    assert "Traceback" not in err
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert (state["pass_id"], state["batch_id"]) > (0, 0)

    resumed = subprocess.run(command(tmp_path / "cut", "--resume"), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming cnn at pass {state['pass_id']}, batch {state['batch_id']}" in resumed.stdout
    assert not (tmp_path / "cut" / "checkpoint").exists()
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "cut"))
    for metrics in (a, b):  # all else must be equal to the last bit: no batch lost or repeated
        for p in metrics["passes"]:
            p.pop("seconds")
    assert len(b["passes"]) == 3 and b == a


def test_resume_without_checkpoint(tmp_path, sample):
    with pytest.raises(ConfigError, match="no checkpoint to resume from"):
        train(data=sample, save_dir=tmp_path, resume=True, **quiet())


# --- what predict and train are given in Python ------------------------------------

@pytest.mark.parametrize("images, message", [
    (DIGIT, "are uint8, not floating point"),  # 0-255 pixels read as far too bright
    (DIGIT[None, None].astype(np.float32), "range from 0 to 254"),
    (np.zeros((1, 3, 28, 28), np.float32), r"shape \[1, 3, 28, 28\]"),
    (np.zeros((2, 784), np.float32), r"shape \[2, 784\]"),
    (np.full((1, 1, 28, 28), np.nan, np.float32), "NaN or infinite"),
    (np.full((1, 1, 28, 28), np.inf, np.float32), "NaN or infinite"),
])
def test_predict_refuses_what_is_not_an_input_it_can_read(images, message, trained_cnn):
    model = InferenceModel(trained_cnn[0])
    with pytest.raises(ImageError, match=message) as error:
        model.predict(images)
    assert "float images [N, 1, 28, 28] in [-1, 1], as load_image makes them" in str(error.value)


def test_evaluate_takes_pixels_or_normalised_images_and_refuses_what_would_score_wrong(
        trained_cnn, sample):
    from recognize_digits.infer import evaluate

    model, images, labels = InferenceModel(trained_cnn[0]), sample.test_images, sample.test_labels
    right = evaluate(model, images, labels)
    assert right[1] > 0.8
    # the [-1, 1] floats predict takes are told apart from pixels by their type, not misread
    assert evaluate(model, data.normalize(images), labels) == pytest.approx(right)
    assert evaluate(model, data.normalize(images)[:, 0], labels) == pytest.approx(right)
    for wrong, message in [
            (images / 255.0, r"^images: floats from 0 to 1, not in \[-1, 1\]"),
            (images.astype(np.float32), r"^images: floats from 0 to 255"),
            (images.astype(np.int64), r"^images: int64 values"),
            (images.reshape(-1, 784), r"^images: shape \[1000, 784\]")]:
        with pytest.raises(DataError, match=message + ".*; give uint8 pixels"):
            evaluate(model, wrong, labels)
    for wrong, message in [(labels[:, None], r"int64 of shape \[1000, 1\]"),
                           (labels[:10], r"int64 of shape \[10\] from 0 to 9 for 1000 images"),
                           (labels + 1, r"int64 of shape \[1000\] from 1 to 10"),
                           (labels.astype(np.float32), "float32 of shape")]:
        with pytest.raises(DataError, match=f"^labels: {message}"):
            evaluate(model, images, wrong)


def test_predict_takes_every_shape_of_a_28x28_input(trained_cnn):
    model = InferenceModel(trained_cnn[0])
    x = load_image(INFER_3)
    digits = [model.predict(shaped)[0].tolist() for shaped in (x, x[0], x[0, 0], x[:, 0])]
    assert digits == [[3]] * 4


@pytest.mark.parametrize("options, message", [
    (dict(epochs=1.5), "^epochs=1.5: must be a whole number$"),
    (dict(batch_size="64"), "^batch_size='64': must be a whole number$"),
    (dict(threads=True), "^threads=True: must be a whole number$"),
    (dict(learning_rate="0.1"), "^learning_rate='0.1': must be a number$"),
    (dict(learning_rate=float("nan")), "^learning_rate=nan: must be > 0$"),
])
def test_options_of_the_wrong_type_are_refused_in_one_line(options, message, sample, tmp_path):
    with pytest.raises(ConfigError, match=message):
        train(data=sample, save_dir=tmp_path, **options, **quiet())


def test_threads_given_as_text_are_refused(trained_cnn):
    with pytest.raises(ConfigError, match="threads='2': must be a whole number"):
        InferenceModel(trained_cnn[0], threads="2")


# --- damaged or hand-edited checkpoints --------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, sample):
    """Ctrl-C checkpoints of softmax regression (static and dynamic) and of the perceptron
    (static), each stopped at pass 0 after batch 1: {name: save folder}."""
    import os
    import signal

    from recognize_digits.errors import TrainingInterrupted
    from recognize_digits.events import StepEvent

    from conftest import subset

    def stop(event):
        if isinstance(event, StepEvent) and event.batch_id == 1:
            os.kill(os.getpid(), signal.SIGINT)

    folders = {}
    for name, model, graph in (("static", "softmax", "static"), ("dynamic", "softmax", "dynamic"),
                               ("mlp", "mlp", "static")):
        folders[name] = tmp_path_factory.mktemp("checkpoints") / name
        with pytest.raises(TrainingInterrupted):
            train(model, epochs=2, data=subset(sample, 300), save_dir=folders[name], seed=1,
                  graph=graph, event_handler=stop, log=lambda *a: None)
    return folders


def edit_state(change):
    def edit(folder):
        path = folder / "checkpoint" / "state.json"
        state = json.loads(path.read_text())
        change(state)
        path.write_text(json.dumps(state))
    return edit


def setting(name, value):
    return edit_state(lambda state: state["metrics"].__setitem__(name, value))


def cut_file(name, keep=100):
    def cut(folder):
        path = folder / "checkpoint" / name
        path.write_bytes(path.read_bytes()[:keep])
    return cut


DAMAGES = {
    "epochs as text": setting("epochs", "3"), "no epochs": setting("epochs", 0),
    "batch 1.5": setting("batch_size", 1.5), "negative learning rate": setting("learning_rate", -1),
    "learning rate as text": setting("learning_rate", "fast"), "seed -1": setting("seed", -1),
    "seed too large": setting("seed", 2**31), "validation -5": setting("validation", -5),
    "augment yes": setting("augment", "yes"), "graph eager": setting("graph", "eager"),
    "model lenet": setting("model", "lenet"), "no model": edit_state(
        lambda s: s["metrics"].pop("model")),
    "pass -1": edit_state(lambda s: s.update(pass_id=-1)),
    "pass past the end": edit_state(lambda s: s.update(pass_id=2)),
    "batch -1": edit_state(lambda s: s.update(batch_id=-1)),
    "batch as text": edit_state(lambda s: s.update(batch_id="2")),
    "no rng": edit_state(lambda s: s.pop("rng")),
    "rng garbage": edit_state(lambda s: s.update(rng={"bit_generator": "PCG64", "state": 3})),
    "no partial": edit_state(lambda s: s.pop("partial")),
    "partial too short": edit_state(lambda s: s["partial"][0].pop()),
    "partial not lists": edit_state(lambda s: s.update(partial=7)),
    "no metrics": edit_state(lambda s: s.pop("metrics")),
    "metrics a list": edit_state(lambda s: s.update(metrics=[1, 2])),
    "passes that were not run": edit_state(lambda s: s["metrics"]["passes"].append({})),
    "seconds as text": edit_state(lambda s: s.update(seconds="ten")),
    "state a list": lambda f: (f / "checkpoint" / "state.json").write_text("[1, 2]"),
    "state not JSON": lambda f: (f / "checkpoint" / "state.json").write_text("{pass_id: 1"),
    "state empty": lambda f: (f / "checkpoint" / "state.json").write_text(""),
    "parameters truncated": cut_file("train.pdparams"),
    "optimizer state truncated": cut_file("train.pdopt"),
    "parameters empty": cut_file("train.pdparams", keep=0),
    "parameters missing": lambda f: (f / "checkpoint" / "train.pdparams").unlink(),
    "graph changed": setting("graph", "dynamic"),
}


# state.json is read alike whatever the graph: its damages are tried on one checkpoint;
# those of the files each graph mode writes itself, on both
OF_THE_FILES = ["parameters truncated", "optimizer state truncated", "parameters empty",
                "parameters missing", "graph changed"]
CASES = [(damage, "static") for damage in DAMAGES] + [(d, "dynamic") for d in OF_THE_FILES]


@pytest.mark.parametrize("damage, graph", CASES, ids=[f"{d}-{g}" for d, g in CASES])
def test_a_damaged_checkpoint_is_refused_in_one_line(damage, graph, checkpoints, sample,
                                                     tmp_path):
    import shutil

    from conftest import subset

    folder = tmp_path / "m"
    shutil.copytree(checkpoints[graph], folder)
    (setting("graph", "static") if damage == "graph changed" and graph == "dynamic"
     else DAMAGES[damage])(folder)
    with pytest.raises(ConfigError) as error:
        train(data=subset(sample, 300), save_dir=folder, resume=True, **quiet())
    message = str(error.value)
    assert len(message.splitlines()) == 1 and "without resume=True" in message, message
    assert "damaged" in message or "cannot be loaded" in message or "no checkpoint" in message


@pytest.mark.parametrize("graph", ["static", "dynamic"])
def test_another_models_parameters_in_a_checkpoint_are_refused(graph, checkpoints, sample,
                                                               tmp_path):
    import shutil

    from conftest import subset

    folder = tmp_path / "m"
    shutil.copytree(checkpoints[graph], folder)
    for name in ("train.pdparams", "train.pdopt"):  # the perceptron's, saved statically
        shutil.copy(checkpoints["mlp"] / "checkpoint" / name, folder / "checkpoint" / name)
    with pytest.raises(ConfigError, match="parameters cannot be loaded .*another network's"):
        train(data=subset(sample, 300), save_dir=folder, resume=True, **quiet())


def test_an_untouched_checkpoint_still_resumes(checkpoints, sample, tmp_path):
    import shutil

    from conftest import subset

    for graph in ("static", "dynamic"):
        shutil.copytree(checkpoints[graph], tmp_path / graph)
        metrics = train(data=subset(sample, 300), save_dir=tmp_path / graph, resume=True,
                        **quiet())
        assert len(metrics["passes"]) == 2 and metrics["graph"] == graph


def test_a_full_disk_while_saving_names_the_folder(sample, tmp_path, monkeypatch, capsys):
    import errno
    from pathlib import Path

    from recognize_digits import cli

    real_write = Path.write_text

    def full(self, *args, **kwargs):
        if "metrics" in self.name and self.suffix == ".json":
            raise OSError(errno.ENOSPC, "No space left on device")  # as write() raises it
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert cli.main(["train", "--model", "softmax", "--epochs", "1", "--sample",
                     "--save-dir", str(tmp_path / "model")]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"recognize-digits: error: {tmp_path / 'model'}")
    assert err.endswith("No space left on device")


@pytest.mark.parametrize("host, option", [("256.0.0.1", "--host"), ("192.0.2.1", "--host")])
def test_a_host_that_is_not_this_machines_is_named(host, option, trained_cnn, capsys):
    from recognize_digits import cli

    assert cli.main(["serve", "--model-dir", str(trained_cnn[0]), "--host", host]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on {host}:8000" in err and err.strip().endswith(f"choose another {option}")


def test_compare_into_a_file_names_out(tmp_path, capsys):
    from recognize_digits import cli

    (tmp_path / "file").write_text("x")
    assert cli.main(["compare", "--sample", "--out", str(tmp_path / "file")]) == 1
    assert capsys.readouterr().err.strip().endswith("choose another --out")


def test_devices_and_standard_input_as_images(trained_cnn):
    with pytest.raises(ImageError, match="/dev/null: is not a file but a device"):
        load_image("/dev/null")
    proc = subprocess.run([sys.executable, "-m", "recognize_digits", "predict", "-",
                           "--model-dir", str(trained_cnn[0])], input=INFER_3.read_bytes(),
                          capture_output=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stdout.decode().startswith("-: 3 (probability")


def test_a_float_image_with_nan_pixels_leaks_no_warning(tmp_path):
    import warnings

    pixels = np.where(DIGIT > 0, 255.0, 0.0).astype(np.float32)
    pixels[0, :3] = np.nan
    Image.fromarray(pixels, mode="F").save(tmp_path / "f.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(tmp_path / "f.tif").shape == (1, 1, 28, 28)


# --- memory and time bounded by the image's shape --------------------------------------

LIMITED = """
import resource, sys, time
import recognize_digits
from recognize_digits.errors import ImageError
from recognize_digits.infer import load_image

with open("/proc/self/status") as status:  # what the process has mapped so far
    size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (size + 1536 * 2**20,) * 2)  # 1.5 GB more, no further
for path in sys.argv[1:]:
    start = time.perf_counter()
    try:
        load_image(path)
        print(path, "read", round(time.perf_counter() - start, 1))
    except ImageError as e:
        print(path, "refused", round(time.perf_counter() - start, 1), e)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; RLIMIT_AS")
def test_any_image_is_read_or_refused_within_a_memory_ceiling(tmp_path):
    paths = []
    for width, height in ((6_000_000, 8), (24, 2_000_000), (100, 500_000)):
        paths.append(tmp_path / f"{width}x{height}.png")
        Image.new("L", (width, height), 255).save(paths[-1])  # a few KB each
    photo = np.zeros((7000, 7000, 3), np.uint8)
    photo[...] = (40, 160, 60)  # green paper, a red stroke
    photo[2500:4500, 3300:3700] = (200, 30, 30)
    paths.append(tmp_path / "photo.png")
    Image.fromarray(photo).save(paths[-1])
    proc = subprocess.run([sys.executable, "-c", LIMITED, *map(str, paths)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 4
    for line in lines[:3]:  # the strips are refused at once, without decoding them
        _, outcome, seconds, *message = line.split(" ", 3)
        assert outcome == "refused" and float(seconds) < 1 and "too narrow" in line
    assert lines[3].split()[1] == "read"  # a 49-megapixel colour photo within 1.5 GB


def test_native_error_lines_of_a_broken_model_are_held_back(trained_cnn, monkeypatch, capfd):
    """Paddle's C++ libraries write their own lines to descriptor 2 on some damaged files
    before raising; the command line must still show one line."""
    import os

    from recognize_digits import cli

    def broken(config):
        os.write(2, b"[libprotobuf ERROR google/protobuf/message_lite.cc:123] Can't parse\n")
        raise RuntimeError("(InvalidArgument) the model file is broken")

    monkeypatch.setattr(paddle.inference, "create_predictor", broken)
    assert cli.main(["predict", str(INFER_3), "--model-dir", str(trained_cnn[0])]) == 1
    err = capfd.readouterr().err
    assert "libprotobuf" not in err and len(err.strip().splitlines()) == 1, err
    assert "the model file is broken" in err
