"""Inference: load images and the saved model, recognise digits, evaluate."""

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
    """A saved inference model, loaded once into ``paddle.inference`` predictors.

    On the CPU it runs with oneDNN: batches on ``threads`` threads (default: every core
    the process may use), several times faster than Paddle's plain kernels, and a few
    images on one thread, which answers sooner than several. ``onednn=False`` keeps
    the plain kernels.
    """

    SMALL_BATCH = 16  # up to this many images, one thread is faster than several

    def __init__(self, model_dir, device="auto", threads=None, onednn=None):
        model_dir = Path(model_dir)
        self.files = [model_dir / (MODEL_PREFIX + suffix) for suffix in (".json", ".pdiparams")]
        missing = [f.name for f in self.files if not f.is_file()]
        if missing:
            raise ModelError(f"{model_dir}: no saved model ({', '.join(missing)} missing); "
                             f"train one with 'recognize-digits train --save-dir {model_dir}'")
        check_positive(threads=threads)
        self.gpu = isinstance(select_place(device), paddle.CUDAPlace)
        self.threads, self.onednn = threads or available_cores(), onednn is not False
        self._predictors = {}
        self._predictor(1)  # load now, so that a broken model fails here

    def _predictor(self, threads):
        """The predictor (and its input and output) running on ``threads`` CPU threads."""
        if threads not in self._predictors:
            config = paddle.inference.Config(*map(str, self.files))
            config.disable_glog_info()
            if self.gpu:
                config.enable_use_gpu(256, 0)
            else:
                config.set_cpu_math_library_num_threads(threads)
                config.enable_onednn() if self.onednn else config.disable_onednn()
            predictor = paddle.inference.create_predictor(config)
            self._predictors[threads] = (
                predictor, predictor.get_input_handle(predictor.get_input_names()[0]),
                predictor.get_output_handle(predictor.get_output_names()[0]))
        return self._predictors[threads]

    def predict(self, images):
        """Digits ``int64 [N]`` and probabilities ``float32 [N, 10]`` for ``[N, 1, 28, 28]`` images."""
        images = np.ascontiguousarray(images, np.float32).reshape(-1, 1, 28, 28)
        small = len(images) <= self.SMALL_BATCH or self.gpu
        predictor, inputs, outputs = self._predictor(1 if small else self.threads)
        inputs.reshape(images.shape)
        inputs.copy_from_cpu(images)
        predictor.run()
        probs = outputs.copy_to_cpu()
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
