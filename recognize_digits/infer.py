"""Inference: load images and the saved model, recognise digits, evaluate."""

from pathlib import Path

import numpy as np
import paddle
from PIL import Image, UnidentifiedImageError

from .data import batches, normalize
from .errors import ImageError, ModelError
from .train import MODEL_PREFIX, TEST_BATCH_SIZE, select_place


def load_image(path):
    """An image file as the model's input: grayscale, 28x28, in [-1, 1], ``[1, 1, 28, 28]``.

    Like MNIST, the digit should be light on a dark background.
    """
    try:
        with Image.open(path) as im:
            im = im.convert("L").resize((28, 28), Image.LANCZOS)
    except (OSError, UnidentifiedImageError) as e:
        raise ImageError(f"{path}: cannot read it as an image ({e})") from None
    return normalize(np.asarray(im))


class InferenceModel:
    """A saved inference model, loaded once, that recognises batches of digits."""

    def __init__(self, model_dir, device="auto"):
        model_dir = Path(model_dir)
        prefix = model_dir / MODEL_PREFIX
        missing = [p.name for p in (prefix.with_suffix(".json"), prefix.with_suffix(".pdiparams"))
                   if not p.is_file()]
        if missing:
            raise ModelError(f"{model_dir}: no saved model ({', '.join(missing)} missing); "
                             f"train one with 'recognize-digits train --save-dir {model_dir}'")
        paddle.enable_static()
        self.exe = paddle.static.Executor(select_place(device))
        self.scope = paddle.static.Scope()
        with paddle.static.scope_guard(self.scope):
            self.program, self.feeds, self.fetches = paddle.static.load_inference_model(
                str(prefix), self.exe)

    def predict(self, images):
        """Digits ``int64 [N]`` and probabilities ``float32 [N, 10]`` for ``[N, 1, 28, 28]`` images."""
        images = np.asarray(images, np.float32).reshape(-1, 1, 28, 28)
        with paddle.static.scope_guard(self.scope):
            [probs] = self.exe.run(self.program, feed={self.feeds[0]: images},
                                   fetch_list=self.fetches)
        return probs.argmax(axis=1), probs


def evaluate(model, images, labels):
    """Mean cross-entropy cost and accuracy of ``model`` on uint8 ``images``."""
    cost = correct = 0.0
    for x, y in batches(images, labels, TEST_BATCH_SIZE):
        digits, probs = model.predict(x)
        y = y.ravel()
        cost -= np.log(np.maximum(probs[np.arange(len(y)), y], 1e-30)).sum()
        correct += (digits == y).sum()
    return float(cost / len(images)), float(correct / len(images))
