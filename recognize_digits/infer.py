"""Inference: an image made into the model's input, the saved model's answers, and how
good they are.

:func:`load_image` reads any picture of a digit and prepares it as MNIST's digits were
prepared (see :mod:`.preprocess`); :class:`InferenceModel` serves the saved model with
``paddle.inference``; :func:`evaluate` (from :mod:`.scoring`) scores it on labelled images.
"""

import warnings
from pathlib import Path

import numpy as np
import paddle
from PIL import Image, ImageOps

from .data import normalize
from .engine import MODEL_PREFIX, TEST_BATCH_SIZE, select_place
from .errors import FallbackWarning, ImageError, ModelError, one_line
from .plumbing.fast_cpu import available_cores, check_threads, set_onednn
from .plumbing.model_files import check_sum, read_saved_model
from .plumbing.native import errors_held
from .preprocess import WORK_SIDE, colour_to_grey, mnist_style, on_paper

MIN_SIDE = 8  # smaller images cannot hold a recognisable digit
MAX_PIXELS = 50_000_000  # larger ones would take gigabytes to decode: refused up front
MAX_ASPECT = 50  # a digit in a strip narrower than this is a few pixels high at 28x28


def load_image(path, preprocess=True):
    """An image file (a path or an open binary file), or a Pillow image, as the model's
    input: grey, 28x28, in [-1, 1], ``[1, 1, 28, 28]``.

    Any format Pillow reads: EXIF rotation is applied, the first frame of an animation is
    taken, 16-bit images are scaled to 8 bits and transparent ones are laid on white.
    ``preprocess`` makes the digit look like an MNIST digit first (see
    :func:`~recognize_digits.preprocess.mnist_style`: light on dark, cropped, fitted to
    20x20, centred by mass); ``preprocess=False`` only resizes the image to 28x28, as the
    chapter did, which suits images that are MNIST-like already.
    """
    return to_input(to_grey(open_image(path)), preprocess, _name(path))


def _name(path):
    return str(path) if isinstance(path, (str, Path)) else getattr(path, "name", "the image")


def open_image(path):
    """The image in a file or a Pillow image, decoded and upright; an :class:`ImageError`
    that says why for what is no image, too small to hold a digit or too large to decode."""
    name = _name(path)
    if isinstance(path, (str, Path)):  # else an open binary file (an upload) or an image
        path = Path(path)
        if path.is_dir():
            raise ImageError(f"{path}: is a folder, not an image; name an image file")
        if not path.exists():
            raise ImageError(f"{path}: no such file")
        if not path.is_file():
            raise ImageError(f"{path}: is not a file but a device, pipe or socket; name an "
                             f"image file (or - to read one from standard input)")
    try:
        with warnings.catch_warnings():  # the size is checked below, with a clearer message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = path.copy() if isinstance(path, Image.Image) else Image.open(path)  # closed below
        with im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"{name}: {width}x{height} pixels is too large (at most "
                                 f"{MAX_PIXELS:,} pixels); scale it down first", "image_too_large")
            if max(width, height) > MAX_ASPECT * min(width, height):
                raise ImageError(f"{name}: {width}x{height} pixels is too narrow to hold a "
                                 f"digit (one side over {MAX_ASPECT} times the other); crop "
                                 f"it around the digit", "image_too_narrow")
            if min(width, height) < MIN_SIDE:
                raise ImageError(f"{name}: {width}x{height} pixels is too small to hold a "
                                 f"digit; use an image at least {MIN_SIDE}x{MIN_SIDE}",
                                 "image_too_small")
            # JPEG: decode at a fraction of the size, in colour (ink and paper may differ
            # in hue only) and large enough that a thin pen line survives the reduction
            im.draft(im.mode, (4 * WORK_SIDE, 4 * WORK_SIDE))
            return ImageOps.exif_transpose(im)  # a decoded copy (of the first frame)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: too large to decode safely (at most {MAX_PIXELS:,} "
                         f"pixels); scale it down first", "image_too_large") from None
    except (OSError, SyntaxError, ValueError) as e:
        detail = str(e).replace(f" {path!r}", "")  # Pillow names an open file by its repr
        raise ImageError(f"{name}: cannot read it as an image ({detail}); is it a complete "
                         f"PNG, JPEG or other picture?", "not_an_image") from None


def to_grey(im):
    """One 8-bit grey channel: 16-bit and float images scaled, transparency laid on white,
    colour by the contrast between ink and paper (see
    :func:`~recognize_digits.preprocess.colour_to_grey`), not by luminance alone."""
    if im.mode.startswith("I") or im.mode == "F":
        values = np.nan_to_num(np.asarray(im, np.float64), nan=0, posinf=0, neginf=0)
        top = 65535 if im.mode.startswith("I;16") else max(values.max(), 255)
        return Image.fromarray(np.clip(values / top * 255, 0, 255).round().astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        im = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im)
    if im.mode in ("1", "L", "LA", "La"):
        return Image.fromarray(on_paper(np.asarray(im.convert("L"))))
    return Image.fromarray(colour_to_grey(on_paper(np.asarray(im.convert("RGB")))))


def to_input(grey, preprocess=True, name="the image"):
    """A grey image as the model's input ``[1, 1, 28, 28]``: made MNIST-style, or only
    resized to 28x28 (``preprocess=False``), then normalised as in training."""
    if not preprocess:
        return normalize(np.asarray(grey.resize((28, 28), Image.LANCZOS)))
    try:
        return normalize(mnist_style(np.asarray(grey)))
    except ImageError as e:
        raise ImageError(f"{name}: {e}", e.code) from None


class Predictor:
    """What answers for a model: :meth:`predict` takes images as :func:`load_image` makes
    them and gives digits and probabilities. A few images run on one thread, which answers
    sooner; batches on ``threads`` (default: every core the process may use)."""

    SMALL_BATCH = 16  # up to this many images, one thread is faster than several
    FAILURES = (RuntimeError, ValueError, OSError)  # how the runtime says a model cannot run
    scores = False  # whether the model answers scores, which predict makes probabilities

    def __init__(self, threads=None):
        check_threads(threads)
        self.threads = threads or available_cores()

    def predict(self, images):
        """Digits ``int64 [N]`` and probabilities ``float32 [N, 10]`` for images as
        :func:`load_image` makes them: float ``[N, 1, 28, 28]`` (or ``[28, 28]``, ``[N, 28,
        28]``) in [-1, 1], else an :class:`ImageError` (see :func:`check_inputs`); 1,000 at
        a time, so memory stays bounded. A model ending in scores gets softmax (see
        :func:`.scoring.as_probabilities`)."""
        images = check_inputs(images)
        threads = 1 if len(images) <= self.SMALL_BATCH else self.threads
        probs = np.concatenate([self._run(images[i:i + TEST_BATCH_SIZE], threads)
                                for i in range(0, max(len(images), 1), TEST_BATCH_SIZE)])
        if self.scores or not (-1e-6 <= probs.min(initial=0) <= probs.max(initial=1) <= 1 + 1e-6
                               and np.allclose(probs.sum(axis=-1), 1, atol=1e-3)):
            from .scoring import as_probabilities  # a model of this package never needs it
            probs = as_probabilities(self, probs)
        return probs.argmax(axis=1), probs

    def _run(self, images, threads):
        """Probabilities for checked ``images`` on ``threads`` threads."""
        raise NotImplementedError

    def _blank_answer(self):
        return self.predict(np.zeros((1, 1, 28, 28), np.float32))[1]

    def _check_answers(self, where, fix, gist=one_line):
        """Answer a blank digit now, so that a model that cannot run, or answers anything
        but 10 probabilities, is refused here in one line, ``fix`` saying what to do."""
        try:
            probs = self._blank_answer()
        except self.FAILURES as e:  # the runtime's own errors, said in one line
            raise ModelError(f"{where}: cannot be loaded or run as a model of 28x28 digits "
                             f"({gist(e)}); {fix}") from None
        if probs.shape != (1, 10):
            raise ModelError(f"{where}: the model answers with shape {list(probs.shape)}, "
                             f"not 10 probabilities per digit; {fix}")


class InferenceModel(Predictor):
    """A saved inference model, loaded once into ``paddle.inference`` predictors.

    On the CPU it runs with oneDNN, several times faster on batches than Paddle's plain
    kernels; ``onednn=False`` keeps the plain kernels.
    """

    def __init__(self, model_dir, device="auto", threads=None, onednn=None):
        model_dir = Path(model_dir)
        train_one = f"train one with 'recognize-digits train --save-dir {model_dir}'"
        if not model_dir.is_dir():  # an .onnx file is no folder: say what reads it
            raise ModelError(f"{model_dir}: no such folder; " + ("read an ONNX file with deploy."
                             "export.OnnxModel" if model_dir.suffix == ".onnx" else train_one))
        self.files = [model_dir / (MODEL_PREFIX + suffix) for suffix in (".json", ".pdiparams")]
        missing = [f.name for f in self.files if not f.is_file()]
        if missing:
            raise ModelError(f"{model_dir}: no saved model ({', '.join(missing)} missing); "
                             f"{train_one}")
        super().__init__(threads)
        check_sum(self.files[1], train_one)
        try:
            with errors_held():
                shape = read_saved_model(self.files[0].with_suffix(""))
        except ModelError as e:
            raise ModelError(f"{e}; {train_one}") from None
        if shape is not None and shape != [-1, 1, 28, 28]:
            raise ModelError(f"{model_dir}: the model takes input of shape {shape}, not 28x28 "
                             f"digits [-1, 1, 28, 28]; {train_one}")
        self.gpu = not isinstance(select_place(device), paddle.CPUPlace)
        self.onednn, self._predictors = onednn is not False, {}
        with errors_held():
            self._check_answers(model_dir, train_one)

    def _blank_answer(self):
        """Where oneDNN fails on this Paddle but the plain kernels work, those, with a
        warning."""
        self._predictors = {}  # made afresh
        if not self.onednn or self.gpu:
            return super()._blank_answer()
        try:
            return super()._blank_answer()
        except Exception as e:  # noqa: BLE001 - the plain kernels are tried next
            self.onednn, self._predictors = False, {}
            probs = super()._blank_answer()  # if this fails too, the model is at fault
            warnings.warn(f"oneDNN does not work for prediction on this Paddle ({one_line(e)}); "
                          f"predicting on Paddle's plain kernels", FallbackWarning, stacklevel=4)
            return probs

    def _run(self, images, threads):
        predictor, inputs, outputs = self._predictor(1 if self.gpu else threads)
        inputs.reshape(images.shape)
        inputs.copy_from_cpu(images)
        predictor.run()
        return outputs.copy_to_cpu()

    def _predictor(self, threads):
        """The predictor (and its input and output) running on ``threads`` CPU threads."""
        if threads not in self._predictors:
            config = paddle.inference.Config(*map(str, self.files))
            config.disable_glog_info()
            if self.gpu:
                config.enable_use_gpu(256, 0)
            else:
                config.set_cpu_math_library_num_threads(threads)
                set_onednn(config, self.onednn)
            predictor = paddle.inference.create_predictor(config)
            self._predictors[threads] = (
                predictor, predictor.get_input_handle(predictor.get_input_names()[0]),
                predictor.get_output_handle(predictor.get_output_names()[0]))
        return self._predictors[threads]


def check_inputs(images):
    """``images`` as the model's float32 ``[N, 1, 28, 28]`` input, or an :class:`ImageError`
    saying what is wrong: not floats (uint8 pixels would be read as far brighter than any
    digit), not 28x28 with one channel, not finite, or outside [-1, 1]."""
    array = np.asarray(images)
    expected = ("give float images [N, 1, 28, 28] in [-1, 1], as load_image makes them "
                "(recognize_digits.data.normalize turns uint8 pixels into that)")
    if array.dtype.kind != "f":
        raise ImageError(f"the images are {array.dtype}, not floating point; {expected}")
    lead = array.shape[:-2]
    if array.shape[-2:] != (28, 28) or len(lead) > 2 or (len(lead) == 2 and lead[1] != 1):
        raise ImageError(f"the images have shape {list(array.shape)}; {expected}")
    if not np.isfinite(array).all():
        raise ImageError(f"the images hold NaN or infinite values; {expected}")
    if array.size and (array.min() < -1.001 or array.max() > 1.001):
        raise ImageError(f"the images range from {array.min():g} to {array.max():g}; {expected}")
    return np.ascontiguousarray(array, np.float32).reshape(-1, 1, 28, 28)


def __getattr__(name):
    """A model's scores, from :mod:`.scoring` when first used (prediction needs none)."""
    if name not in ("evaluate", "predict_all"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import scoring
    return getattr(scoring, name)
