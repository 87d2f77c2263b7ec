"""Fine-tuning: a saved model trained further on its user's own digits.

A model trained on MNIST's writers and scanners misreads people it has never seen. What
a recognition product does then is learn from the user's own examples: start from the
saved parameters and train a few passes more on the user's digits, preprocessed exactly
as prediction preprocesses them. Trained on those alone, a network soon forgets what
MNIST taught it, so every pass mixes them with as many MNIST training digits. A part of
the user's digits (of every digit alike) is held out: it chooses the best pass, and
says how well the model now reads that writer.
"""

import json
import os
from pathlib import Path

import numpy as np

from ..data import MNIST, load_mnist, pixels
from ..errors import ConfigError, ModelError, TrainingInterrupted
from ..infer import InferenceModel, evaluate
from ..models import MODELS
from ..plumbing.checkpoint import Checkpoint, check_network, saved_parameters
from ..plumbing.storage import check_save_dir, exclusive, write_json
from ..settings import Settings
from ..training import train
from .folders import load_labelled_images

# The training settings fine-tuning changes (see settings.Settings), chosen on the tune
# halves of the non-MNIST sources (benchmarks/finetune.py --half tune)
FINETUNE = {"epochs": 8, "learning_rate": 0.0001, "seed": 0}
REPEAT = 8  # each of the user's digits is seen this often a pass, beside as many MNIST digits
MIX = 1.0  # MNIST training digits a pass, for each view of one of the user's
HELD_OUT = 0.25  # of each digit's images, to choose the best pass and to report
MIN_DIGITS = 10


def finetune(model_dir, images, save_dir, *, repeat=REPEAT, held_out=HELD_OUT, mix=MIX,
             data=None, data_dir=None, sample=False, overwrite=False, event_handler=None,
             log=print, **settings):
    """Train the model saved in ``model_dir`` further on the labelled digits in the folder
    ``images`` (sub-folders 0-9, or the digit first in each file name, as for
    ``evaluate --images``), and save the result in ``save_dir`` like any trained model.

    ``settings`` are training settings (see :class:`~recognize_digits.settings.Settings`):
    :data:`FINETUNE`'s by default, and the base model's network and graph. Each pass sees
    every training digit of the user's ``repeat`` times and ``mix`` times as many MNIST
    training digits (``data``, or found by ``data_dir``/``sample``); ``augment=True`` moves
    and re-strokes them too (see :mod:`.augment`). ``held_out`` of each digit's images are
    kept out to choose the best pass (of a digit with two images or more: with none, the
    last pass is kept, and the held-out accuracies are None). ``save_dir`` may be
    ``model_dir`` only with ``overwrite=True``; it is held from the start, so a second
    fine-tuning or training into it is refused at once. Returns the metrics written to
    ``save_dir/metrics.json``, whose ``finetune`` part records the base model, the folder,
    the counts and the accuracy before and after, on the held-out digits and on the MNIST
    test set. Ctrl-C stops it with a :class:`TrainingInterrupted` (it does not resume).
    """
    model_dir, save_dir = Path(model_dir), Path(save_dir)
    base = _base_metrics(model_dir)
    settings = {**FINETUNE, "graph": base.get("graph", "static"),
                **Settings.given(**settings), "model": base["model"]}
    Settings(**settings).check()  # before any work
    _check_save_dir(model_dir, save_dir, overwrite)
    check_save_dir(save_dir)
    # held from the start, not from when the training starts: a second fine-tuning into
    # the same folder is refused before it reads a single image
    with exclusive(os.path.realpath(save_dir), nested=True):
        return _finetune(model_dir, images, save_dir, settings, repeat, held_out, mix,
                         lambda: data or load_mnist(data_dir, sample), event_handler, log)


def _finetune(model_dir, images, save_dir, settings, repeat, held_out, mix, load, event_handler,
              log):
    """:func:`finetune`, its arguments checked and its save folder held; ``load()`` gives
    the MNIST digits to mix in."""
    before = InferenceModel(model_dir, device=settings.get("device", "auto"),
                            threads=settings.get("threads"), onednn=settings.get("onednn"))
    _, labels, inputs, skipped = load_labelled_images(images)
    for path, reason in skipped:
        log(f"skipped {path}: {reason}")
    if len(set(labels.tolist())) < 2:
        raise ConfigError(f"{images}: every image is a {labels[0]}; give images of other "
                          f"digits too, or the model learns to answer {labels[0]} to all")
    if len(labels) < MIN_DIGITS:
        raise ConfigError(f"{images}: {len(labels)} digits are too few to learn from; give at "
                          f"least {MIN_DIGITS}, better a few of each digit")
    train_at, held_at = split(labels, held_out, settings["seed"])
    if not len(held_at):
        log(f"No digit has two images or more, so none is held out: training on all "
            f"{len(labels)} of yours and keeping the last pass")
    mnist = load()
    log(f"Mixing in MNIST training digits from {mnist.source}")
    rng = np.random.default_rng(settings["seed"])
    count = round(mix * repeat * len(train_at))
    mixed = rng.choice(len(mnist.train_images), count, replace=count > len(mnist.train_images))
    digits = pixels(inputs)
    pool = MNIST(  # the held-out digits first: train() holds out the first images
        np.concatenate([digits[held_at], np.tile(digits[train_at], (repeat, 1, 1)),
                        mnist.train_images[mixed]]),
        np.concatenate([labels[held_at], np.tile(labels[train_at], repeat),
                        mnist.train_labels[mixed]]),
        mnist.test_images, mnist.test_labels,
        f"{mnist.source}, mixed with {len(train_at)} of your digits from {images}")
    was = {"held_out_accuracy": _accuracy(before, inputs[held_at], labels[held_at]),
           "mnist_test_accuracy": evaluate(before, mnist.test_images, mnist.test_labels)[1]}
    try:
        metrics = train(**settings, validation=len(held_at), data=pool, save_dir=save_dir,
                        init=saved_parameters(model_dir), event_handler=event_handler, log=log)
    except TrainingInterrupted:
        raise _stopped(save_dir) from None
    best = metrics["passes"][metrics["best_pass"]]
    metrics["finetune"] = {
        "base_model": str(model_dir), "images": str(images), "digits": len(labels),
        "trained_on": len(train_at), "held_out": len(held_at), "skipped": len(skipped),
        "mnist_digits_mixed_in": len(mixed), "before": was,
        "after": {"held_out_accuracy": best["val_acc"], "mnist_test_accuracy": best["test_acc"]}}
    write_json(save_dir / "metrics.json", metrics)
    return metrics


def _stopped(save_dir):
    """What to say when Ctrl-C stopped the training of a fine-tuning: it cannot resume
    (its digits, their split and the model it started from are not in the checkpoint),
    so the checkpoint goes and the user is told to start again."""
    stopped = Checkpoint(save_dir)
    state = stopped.read()
    stopped.remove()
    best = state["metrics"]["best_pass"]
    kept = "nothing was saved" if best is None else f"the model of pass {best} is in {save_dir}"
    return TrainingInterrupted(f"stopped at pass {state['pass_id']}, batch "
                               f"{state['batch_id']}; {kept}. A fine-tuning does not resume: "
                               f"run it again to start over")


def split(labels, held_out, seed):
    """Indices of the digits to train on and of those held out: ``held_out`` of each
    digit's images (at least one where a digit has two or more), chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    train_at, held_at = [], []
    for digit in np.unique(labels):
        where = rng.permutation(np.flatnonzero(labels == digit))
        count = max(1, round(held_out * len(where))) if len(where) > 1 else 0
        held_at += where[:count].tolist()
        train_at += where[count:].tolist()
    return np.sort(np.array(train_at, np.int64)), np.sort(np.array(held_at, np.int64))


def _accuracy(model, inputs, labels):
    """The share of ``inputs`` read right; None for none."""
    return float((model.predict(inputs)[0] == labels).mean()) if len(labels) else None


def _base_metrics(model_dir):
    """The saved model's metrics.json, which says which network it is, checked against
    its parameters."""
    fix = "fine-tune a model saved by 'recognize-digits train'"
    try:
        base = json.loads((model_dir / "metrics.json").read_text())
        known = base["model"] in MODELS
    except (OSError, ValueError, KeyError, TypeError):
        known = False
    if not known:
        raise ModelError(f"{model_dir}: not a model saved by 'recognize-digits train' (its "
                         f"metrics.json does not say which network it is); {fix}")
    check_network(model_dir, base, fix)
    return base


def _check_save_dir(model_dir, save_dir, overwrite):
    """Never write over the model fine-tuned, or inside it, unless asked to replace it."""
    model, target = (Path(os.path.realpath(p)) for p in (model_dir, save_dir))
    if target == model and not overwrite:
        raise ConfigError(f"{save_dir}: is the model to fine-tune; choose another "
                          f"save_dir=..., or give overwrite=True to replace it")
    if model in target.parents:
        raise ConfigError(f"{save_dir}: is inside the model to fine-tune, which the new "
                          f"model would replace; choose a folder outside {model_dir}")
