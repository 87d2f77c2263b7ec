import importlib
import json

import numpy as np
import paddle
import pytest

from recognize_digits.own_digits import augment as augmentation
from recognize_digits.own_digits.augment import augment, change_strokes, warp
from recognize_digits.data import batches, normalize
from recognize_digits.errors import TrainingInterrupted
from recognize_digits.events import StepEvent
from recognize_digits.training import train

from conftest import quiet, subset

# the module (the package's own `train` attribute is the function)
training = importlib.import_module("recognize_digits.training")


@pytest.fixture(scope="module")
def digits(sample):
    return normalize(sample.train_images[:1000])


def ink(images):
    """Each image's ink: 0 for background, 1 for a fully inked pixel, summed."""
    return ((images + 1) / 2).sum(axis=(1, 2, 3))


def test_the_same_seed_gives_the_same_batch_and_another_seed_another(digits):
    batch = digits[:64]
    first = augment(batch, np.random.default_rng(3))
    assert np.array_equal(augment(batch, np.random.default_rng(3)), first)
    assert not np.array_equal(augment(batch, np.random.default_rng(4)), first)
    assert not np.array_equal(first, batch)
    assert np.array_equal(batch, digits[:64])  # the input is left as it was


def test_about_half_of_each_batch_is_left_as_it_was(digits):
    out = augment(digits, np.random.default_rng(6))
    same = (out == digits).all(axis=(1, 2, 3))
    assert 0.4 < same.mean() < 0.6  # the model keeps seeing MNIST's own digits too
    assert augmentation.KEEP == 0.5


def test_shape_dtype_and_range_are_kept(digits):
    out = augment(digits, np.random.default_rng(0))
    assert out.shape == digits.shape and out.dtype == np.float32
    assert out.min() >= -1 and out.max() <= 1
    assert out.min() == -1 and out.max() > 0.99  # background stays background, ink ink


def test_a_blank_image_stays_blank():
    blank = np.full((64, 1, 28, 28), -1, np.float32)
    assert np.array_equal(augment(blank, np.random.default_rng(0)), blank)


def test_ink_is_roughly_kept_and_no_digit_vanishes_or_fills_the_image(digits):
    before, after = ink(digits), augment(digits, np.random.default_rng(1))
    ratio = ink(after) / before
    assert 0.85 < ratio.mean() < 1.2  # scaling up and down, thinning and thickening even out
    assert ratio.min() > 0.1 and ratio.max() < 3
    assert ((after > 0).mean(axis=(1, 2, 3)) < 0.5).all()  # inked pixels, at most half


def test_rotation_scale_shear_and_shift_vary_across_the_batch(digits, monkeypatch):
    seen = {}

    def spy(images, matrices, shift):
        seen.update(matrices=matrices, shift=shift)
        return warp(images, matrices, shift)

    monkeypatch.setattr(augmentation, "warp", spy)
    augment(digits[:256], np.random.default_rng(2))
    m = seen["matrices"]
    # m = scale * rotation @ shear: the shear has determinant 1, the rotation too
    scale = np.sqrt(np.linalg.det(m))
    angle = np.degrees(np.arctan2(m[:, 1, 0], m[:, 0, 0]))
    unrotated = np.einsum("nji,njk->nik", m / scale[:, None, None], m / scale[:, None, None])
    shear = unrotated[:, 0, 1]  # (R Sh)^T (R Sh) = Sh^T Sh, whose corner is the shear
    for values, low, high in [(angle, -15, 15), (scale, 0.85, 1.15), (shear, -0.25, 0.25),
                              (seen["shift"][:, 0], -3, 3), (seen["shift"][:, 1], -3, 3)]:
        assert low - 1e-9 <= values.min() and values.max() <= high + 1e-9
        assert values.max() - values.min() > 0.8 * (high - low)  # spread over the range


def test_strokes_get_thinner_and_thicker_for_some_digits(digits, monkeypatch):
    seen = []

    def spy(images, stroke):
        seen.append(stroke)
        return change_strokes(images, stroke)

    monkeypatch.setattr(augmentation, "change_strokes", spy)
    augment(digits[:64], np.random.default_rng(5))
    assert set(seen[0]) == {-1, 0, 1}

    bar = np.full((3, 28, 28), -1, np.float32)
    bar[:, 8:20, 12:15] = 1  # a stroke three pixels wide
    thin, same, thick = change_strokes(bar, np.array([-1, 0, 1]))
    widths = [(image > 0).sum(axis=1)[14] for image in (thin, same, thick)]
    assert widths == [2, 3, 4]
    assert thin.max() == 1  # a thinner pen, not a fainter one


def test_shift_and_rotation_move_the_digit_the_right_way():
    dot = np.full((1, 28, 28), -1, np.float32)
    dot[0, 10, 5] = 1  # row 10, column 5
    moved = warp(dot, np.eye(2)[None], np.array([[2.0, 3.0]]))  # 2 right, 3 down
    assert np.argwhere(moved[0] > 0).tolist() == [[13, 7]]
    quarter = np.array([[[0.0, -1.0], [1.0, 0.0]]])  # 90 degrees, clockwise on screen
    turned = warp(dot, quarter, np.zeros((1, 2)))
    assert np.allclose(turned[0], np.rot90(dot[0], -1), atol=1e-5)


def recording_feeds(monkeypatch):
    """Record every feed given to a program, with the programs of the training."""
    feeds, runs = [], []
    run_program, start = paddle.static.Executor.run, training.Training.start

    def run(self, program=None, *args, **kwargs):
        if kwargs.get("feed"):
            feeds.append((program, {k: np.array(v) for k, v in kwargs["feed"].items()}))
        return run_program(self, program, *args, **kwargs)

    def remember(run, *args):
        runs.append(run)
        return start(run, *args)

    monkeypatch.setattr(paddle.static.Executor, "run", run)
    monkeypatch.setattr(training.Training, "start", remember)
    return feeds, runs


def test_train_augments_training_batches_only_and_never_the_labels(sample, tmp_path,
                                                                    monkeypatch):
    data = subset(sample, 300, 100)  # 275 trained on (5 batches), 25 held out
    feeds, runs = recording_feeds(monkeypatch)
    metrics = train("cnn", epochs=2, data=data, save_dir=tmp_path, seed=11, augment=True,
                    onednn=False, **quiet())  # no fast-path probe among the feeds
    programs = runs[0].engine.programs
    trained = [feed for program, feed in feeds if program is programs.main]
    tested = [feed for program, feed in feeds if program is programs.test]

    rng = np.random.default_rng(11)  # the run's shuffle, dealt again
    expected = [(p, b, x, y) for p in range(2) for b, (x, y) in
                enumerate(batches(data.train_images[25:], data.train_labels[25:], 64, True, rng))]
    assert len(trained) == len(expected) == 10
    for feed, (p, b, x, y) in zip(trained, expected):
        assert np.array_equal(feed["label"], y)
        assert np.array_equal(feed["img"], augment(x, np.random.default_rng([11, p, b])))
        assert not np.array_equal(feed["img"], x)
    untouched = [normalize(data.train_images[:25]), normalize(data.test_images)] * 2
    assert len(tested) == 4
    for feed, images in zip(tested, untouched):
        assert np.array_equal(feed["img"], images)
    assert metrics["augment"] is True
    assert json.loads((tmp_path / "metrics.json").read_text())["augment"] is True


def test_augmented_training_is_reproducible_and_recorded(sample, tmp_path):
    data = subset(sample, 640)

    def run(seed, augment):
        events = []
        metrics = train("cnn", epochs=1, data=data, save_dir=tmp_path / f"{seed}{augment}",
                        seed=seed, augment=augment, event_handler=events.append,
                        log=lambda *a: None)
        return [e.cost for e in events if isinstance(e, StepEvent)], metrics

    first, metrics = run(5, True)
    assert run(5, True)[0] == first
    assert run(6, True)[0] != first
    plain, plain_metrics = run(5, False)
    assert plain != first and len(plain) == len(first)
    assert metrics["augment"] is True and plain_metrics["augment"] is False


def test_resume_with_augmentation_is_exact(sample, tmp_path):
    from test_train import ctrl_c_at, without_seconds

    data = subset(sample, 800, 300)  # 12 batches a pass, 66 held out
    whole = ctrl_c_at(lambda event: False)
    expected = train("cnn", epochs=2, data=data, save_dir=tmp_path / "whole", seed=7,
                     augment=True, event_handler=whole, log=lambda *a: None)

    first = ctrl_c_at(lambda e: isinstance(e, StepEvent) and (e.pass_id, e.batch_id) == (0, 8))
    with pytest.raises(TrainingInterrupted, match="stopped at pass 0, batch 9"):
        train("cnn", epochs=2, data=data, save_dir=tmp_path / "cut", seed=7, augment=True,
              event_handler=first, log=lambda *a: None)
    rest = ctrl_c_at(lambda event: False)
    resumed = train(data=data, save_dir=tmp_path / "cut", resume=True,  # augment from the
                    event_handler=rest, log=lambda *a: None)            # checkpoint
    assert first.costs + rest.costs == whole.costs  # exactly: same batches, same moves
    assert without_seconds(resumed) == without_seconds(expected)
    assert resumed["augment"] is True


@pytest.mark.parametrize("command", ["train", "compare"])
def test_the_command_line_passes_augment_on(command, tmp_path, monkeypatch, capsys):
    from recognize_digits import cli
    from recognize_digits.errors import ConfigError
    from recognize_digits.settings import Settings

    seen = []

    def fake_train(*args, **kwargs):
        seen.append(kwargs.get("augment", "not given: Settings' default"))
        raise ConfigError("enough")  # what train() was given is all this test needs

    monkeypatch.setattr(training, "train", fake_train)
    out = ["--save-dir" if command == "train" else "--out", tmp_path / "model"]
    assert cli.main([command, "--sample", *map(str, out)]) == 1
    assert cli.main([command, "--sample", "--augment", *map(str, out)]) == 1
    assert seen == ["not given: Settings' default", True] and Settings.augment is False
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert ("better on some kinds of users' digits, worse on others: score both with evaluate "
            "--images (default: off, the chapter's settings)") in help_text
