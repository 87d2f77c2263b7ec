"""Inference: load images and the saved model, recognise digits, evaluate."""

import os
from pathlib import Path

import numpy as np
import paddle
from PIL import Image, UnidentifiedImageError

from .data import batches, normalize
from .errors import ImageError, ModelError
from .train import MODEL_PREFIX, TEST_BATCH_SIZE, available_cores, check_positive, select_place


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
    """A saved inference model, loaded once into a ``paddle.inference`` predictor.

    On the CPU it runs with oneDNN on ``threads`` threads (default: every core the
    process may use), which recognises a batch of digits several times faster than the
    plain kernels and answers a single image in well under a millisecond;
    ``onednn=False`` keeps Paddle's plain kernels.
    """

    def __init__(self, model_dir, device="auto", threads=None, onednn=None):
        model_dir = Path(model_dir)
        files = [model_dir / (MODEL_PREFIX + suffix) for suffix in (".json", ".pdiparams")]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelError(f"{model_dir}: no saved model ({', '.join(missing)} missing); "
                             f"train one with 'recognize-digits train --save-dir {model_dir}'")
        check_positive(threads=threads)
        config = paddle.inference.Config(*map(str, files))
        config.disable_glog_info()
        if isinstance(select_place(device), paddle.CUDAPlace):
            config.enable_use_gpu(256, 0)
        else:
            threads = threads or available_cores()
            if threads > 1:
                # Left to float, oneDNN's OpenMP threads share one core in about half of
                # all runs, halving the speed; one thread per core keeps them apart.
                # Read when OpenMP starts, so it only helps if nothing ran threads yet.
                os.environ.setdefault("KMP_AFFINITY", "granularity=fine,compact,1,0")
            config.set_cpu_math_library_num_threads(threads)
            config.disable_onednn() if onednn is False else config.enable_onednn()
        self.predictor = paddle.inference.create_predictor(config)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def predict(self, images):
        """Digits ``int64 [N]`` and probabilities ``float32 [N, 10]`` for ``[N, 1, 28, 28]`` images."""
        images = np.ascontiguousarray(images, np.float32).reshape(-1, 1, 28, 28)
        self.input.reshape(images.shape)
        self.input.copy_from_cpu(images)
        self.predictor.run()
        probs = self.output.copy_to_cpu()
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
