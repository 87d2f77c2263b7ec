"""How good a model is on labelled digits: its probabilities for MNIST-style images, its
cost and accuracy (also named in :mod:`.infer`, where the chapter's API lists them).

What is scored is checked first: images scaled otherwise (pixels / 255, or 0-255 as
floats), or labels shaped ``[N, 1]``, would not fail but score wrong (12.6% for images
/ 255, 10% for labels broadcast against the digits), without a word.
"""

import warnings

import numpy as np

from .data import normalize
from .errors import DataError, FallbackWarning

ACCEPTED = ("give uint8 pixels [N, 28, 28] in 0-255, as load_mnist gives them, or floats "
            "[N, 1, 28, 28] in [-1, 1], as data.normalize and load_image make them")


def predict_all(model, images):
    """Probabilities ``float32 [N, 10]`` for ``images`` (see :func:`check_images`)."""
    return model.predict(check_images(images))[1]


def evaluate(model, images, labels, probs=None):
    """Mean cross-entropy cost and accuracy of ``model`` on ``images`` with their
    ``labels``: uint8 pixels ``[N, 28, 28]`` in 0-255 (as :func:`~.data.load_mnist` gives
    them) or floats in [-1, 1] (as :func:`~.data.normalize` makes them), told apart by
    their type, and integer labels ``[N]`` of digits 0-9; anything else is refused with a
    :class:`DataError` (scaled otherwise, or labels shaped ``[N, 1]``, they would score
    wrong without a word)."""
    images = check_images(images)
    labels = np.asarray(labels)
    if (labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images)
            or labels.size and not 0 <= labels.min() <= labels.max() <= 9):
        span = (f" from {labels.min()} to {labels.max()}"
                if labels.size and labels.dtype.kind in "iu" else "")
        raise DataError(f"labels: {labels.dtype} of shape {list(labels.shape)}{span} for "
                        f"{len(images)} images; give integer digits 0-9 of shape "
                        f"[{len(images)}], one per image, as load_mnist gives them")
    probs = predict_all(model, images) if probs is None else probs
    cost = -np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-30)).mean()
    return float(cost), float((probs.argmax(axis=1) == labels).mean())


def check_images(images):
    """``images`` as the model's float input ``[N, 1, 28, 28]`` in [-1, 1]: uint8 pixels
    are normalised, floats in [-1, 1] kept; else a :class:`DataError` saying what they are.
    Floats that never go below 0 are refused: MNIST's background is -1 once normalised,
    so they are pixels / 255 or 0-255 (the model would read them as far brighter)."""
    array = np.asarray(images)
    lead = array.shape[:-2]
    if (array.shape[-2:] != (28, 28) or len(lead) > 2
            or (len(lead) == 2 and lead[1] != 1)):
        raise DataError(f"images: shape {list(array.shape)}; {ACCEPTED}")
    if array.dtype == np.uint8:
        return normalize(array)
    if array.dtype.kind != "f":
        raise DataError(f"images: {array.dtype} values; {ACCEPTED}")
    low, high = (array.min(), array.max()) if array.size else (-1, 1)
    if not (-1.001 <= low < 0 and high <= 1.001):  # NaN fails too
        raise DataError(f"images: floats from {low:g} to {high:g}, not in [-1, 1] with MNIST's "
                        f"background at -1; {ACCEPTED}")
    return array.reshape(-1, 1, 28, 28)


def as_probabilities(model, answers):
    """``model``'s ``answers`` ``[N, 10]`` as probabilities. A model that ends in scores
    (logits, as Paddle's own LeNet), found by answers outside [0, 1] or not summing to 1,
    gets softmax, said once by a :class:`FallbackWarning`; the loss a model is trained
    with (``paddle.nn.CrossEntropyLoss``) applies the same softmax to them."""
    if answers.ndim != 2 or answers.shape[1] != 10:  # the loader refuses it in one line
        return answers
    if not model.scores:
        warnings.warn("the model ends in scores (logits), not probabilities (they lie "
                      "outside [0, 1] or do not sum to 1): softmax is applied to them",
                      FallbackWarning)
        model.scores = True
    exp = np.exp(answers - answers.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)

