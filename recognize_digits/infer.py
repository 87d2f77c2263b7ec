"""Inference: load images and the saved model, recognise digits, evaluate."""

import contextlib
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import paddle
from PIL import Image, ImageOps

from .data import batches, normalize
from .engine import MODEL_PREFIX, TEST_BATCH_SIZE, select_place
from .errors import FallbackWarning, ImageError, ModelError, check_positive, one_line
from .preprocess import WORK_SIDE, colour_to_grey, mnist_style, on_paper
from .speed import available_cores, set_onednn
from .storage import checksum_matches


MIN_SIDE = 8  # smaller images cannot hold a recognisable digit
MAX_PARAMETER = 1e6  # no trained parameter comes near; random bytes read as floats often do
MAX_PIXELS = 50_000_000  # larger ones would take gigabytes to decode: refused up front
MAX_ASPECT = 50  # a digit in a strip narrower than this is a few pixels high at 28x28


def load_image(path, preprocess=True):
    """An image file (a path or an open binary file) as the model's input: grey, 28x28,
    in [-1, 1], ``[1, 1, 28, 28]``.

    Any format Pillow reads: EXIF rotation is applied, the first frame of an animation is
    taken, 16-bit images are scaled to 8 bits and transparent ones are laid on white.
    ``preprocess`` makes the digit look like an MNIST digit first (see
    :func:`~recognize_digits.preprocess.mnist_style`: light on dark, cropped, fitted to
    20x20, centred by mass); ``preprocess=False`` only resizes the image to 28x28, as the
    chapter did, which suits images that are MNIST-like already.
    """
    image = open_image(path)
    grey = to_grey(image)
    return to_input(grey, preprocess, _name(path))


def _name(path):
    return getattr(path, "name", "the image") if hasattr(path, "read") else str(path)


def open_image(path):
    """The image in a file, decoded and upright; an :class:`ImageError` that says why
    for what is no image, or is too small to hold a digit or too large to decode safely."""
    name = _name(path)
    if not hasattr(path, "read"):  # else an open binary file, such as an upload
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
            im = Image.open(path)
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
        train_one = f"train one with 'recognize-digits train --save-dir {model_dir}'"
        if not model_dir.is_dir():
            raise ModelError(f"{model_dir}: no such folder; {train_one}")
        self.files = [model_dir / (MODEL_PREFIX + suffix) for suffix in (".json", ".pdiparams")]
        missing = [f.name for f in self.files if not f.is_file()]
        if missing:
            raise ModelError(f"{model_dir}: no saved model ({', '.join(missing)} missing); {train_one}")
        check_positive(threads=threads)
        _check_sum(self.files[1], train_one)
        try:
            with _native_errors_held():
                shape = read_saved_model(self.files[0].with_suffix(""))
        except ModelError as e:
            raise ModelError(f"{e}; {train_one}") from None
        if shape is not None and shape != [-1, 1, 28, 28]:
            raise ModelError(f"{model_dir}: the model takes input of shape {shape}, not 28x28 "
                             f"digits [-1, 1, 28, 28]; {train_one}")
        self.gpu = not isinstance(select_place(device), paddle.CPUPlace)
        self.threads, self.onednn = threads or available_cores(), onednn is not False
        try:  # load now, and try one blank digit, so that a broken model fails here
            with _native_errors_held():
                probs = self._try()
        except (RuntimeError, ValueError, OSError) as e:
            raise ModelError(f"{model_dir}: the saved model cannot be loaded or run on 28x28 "
                             f"digits ({one_line(e)}); {train_one}") from None
        if probs.shape != (1, 10):
            raise ModelError(f"{model_dir}: the model answers with shape {list(probs.shape)}, "
                             f"not 10 probabilities per digit; {train_one}")

    def _try(self):
        """Probabilities of a blank digit, from predictors made afresh; where oneDNN fails
        on this Paddle but the plain kernels work, from those, with a warning."""
        blank = np.zeros((1, 1, 28, 28), np.float32)
        self._predictors = {}
        if not self.onednn or self.gpu:
            return self.predict(blank)[1]
        try:
            return self.predict(blank)[1]
        except Exception as e:  # noqa: BLE001 - the plain kernels are tried next
            self.onednn, self._predictors = False, {}
            probs = self.predict(blank)[1]  # if this fails too, the model itself is at fault
            warnings.warn(f"oneDNN does not work for prediction on this Paddle ({one_line(e)}); "
                          f"predicting on Paddle's plain kernels", FallbackWarning, stacklevel=3)
            return probs

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

    def predict(self, images):
        """Digits ``int64 [N]`` and probabilities ``float32 [N, 10]`` for images as
        :func:`load_image` makes them: float ``[N, 1, 28, 28]`` (or ``[28, 28]``, ``[N, 28, 28]``)
        in [-1, 1]; anything else is refused with an :class:`ImageError` (see :func:`check_inputs`)."""
        images = check_inputs(images)
        small = len(images) <= self.SMALL_BATCH or self.gpu
        predictor, inputs, outputs = self._predictor(1 if small else self.threads)
        inputs.reshape(images.shape)
        inputs.copy_from_cpu(images)
        predictor.run()
        probs = outputs.copy_to_cpu()
        return probs.argmax(axis=1), probs


@contextlib.contextmanager
def descriptors_held(*fds):
    """What is written to the process's descriptors ``fds`` (1, 2: native code's prints
    too) goes into a temporary file for a while, and so does Python's own printing to
    ``sys.stdout``/``sys.stderr`` where they are not those descriptors (as in a Jupyter
    kernel); yields a function that reads it."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    with tempfile.TemporaryFile() as held, contextlib.ExitStack() as streams:
        text = streams.enter_context(open(held.fileno(), "w", buffering=1, closefd=False,
                                          errors="replace"))
        for fd, redirect in ((1, contextlib.redirect_stdout), (2, contextlib.redirect_stderr)):
            if fd in fds:
                streams.enter_context(redirect(text))
        for fd in fds:
            os.dup2(held.fileno(), fd)
        try:
            yield lambda: (text.flush(), held.seek(0), held.read().decode(errors="replace"))[2]
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip(fds, saved):
                os.dup2(copy, fd)
                os.close(copy)


@contextlib.contextmanager
def _native_errors_held():
    """Hold back what native code writes to standard error while a model loads, and give
    it back if loading works: a damaged file makes Paddle's C++ libraries print lines of
    their own (``[libprotobuf ERROR ...]``) before Python sees the error, which the package
    then says in one line."""
    with descriptors_held(2) as held:
        yield
        written = held()  # not reached when loading fails: then it stays held back
    if written:
        os.write(2, written.encode())


def _check_sum(params, train_one):
    """Refuse parameters that do not match the SHA-256 saved with them (models saved
    before the package wrote one are checked by :func:`read_saved_model` alone)."""
    if not checksum_matches(params):
        raise ModelError(f"{params}: the file does not match the checksum saved with it "
                         f"({params.with_suffix('.sha256').name}), so it is damaged; {train_one}")


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


def _load(prefix):
    """A saved model's program and a scope holding its parameters; the graph mode is
    left as it was found (a dynamic-mode session stays dynamic)."""
    dynamic = paddle.in_dynamic_mode()
    paddle.enable_static()
    scope = paddle.static.Scope()
    try:
        with paddle.static.scope_guard(scope):
            program, _, _ = paddle.static.load_inference_model(
                str(prefix), paddle.static.Executor(paddle.CPUPlace()))
    finally:
        if dynamic:
            paddle.disable_static()
    return program, {p.name: np.array(scope.find_var(p.name).get_tensor())
                     for p in program.global_block().all_parameters()}


def saved_parameters(model_dir):
    """Every parameter of the model saved in ``model_dir`` (batch-norm statistics too),
    name: value, as a training can start from them (``train(init=...)``)."""
    return _load(Path(model_dir) / MODEL_PREFIX)[1]


def read_saved_model(prefix):
    """The declared input shape of a saved model, after checking its parameters: each of
    the shape its program declares, finite and of a plausible size (a damaged file gives
    NaN, infinite or enormous values). None if the model cannot be read at all (the
    predictor then says why); a :class:`ModelError` naming the first bad parameter."""
    try:
        program, values = _load(prefix)
    except (RuntimeError, ValueError, OSError):
        return None
    for param in program.global_block().all_parameters():
        value = values[param.name]
        problem = (f"has shape {list(value.shape)}, not {list(param.shape)}"
                   if list(value.shape) != list(param.shape) else
                   "holds NaN or infinite values" if not np.isfinite(value).all() else
                   f"holds values as large as {np.abs(value).max():.3g}"
                   if np.abs(value).max() > MAX_PARAMETER else None)
        if problem:
            raise ModelError(f"{prefix}.pdiparams: parameter {param.name} {problem}, so the "
                             f"file is damaged")
    return [list(op.result(0).shape) for op in program.global_block().ops
            if op.name() == "pd_op.data"][0]


def look_inside(model_dir, images):
    """What a saved model computes on its way to the answer, for ``images`` (float32
    ``[N, 1, 28, 28]`` in [-1, 1]): ``(values, parameters)``.

    ``values`` maps each operation of the program, in the order it runs, to its output:
    named by the operation and numbered when it comes again (``conv2d``, ``pool2d``,
    ``add``, ``relu``, ``batch_norm``, ``conv2d_2``, ..., ``softmax``). ``parameters``
    maps each parameter's name to its values (the first convolution's filters are
    ``conv2d_0.w_0``). An inner value is fetched exactly as training fetches the cost:
    it is one more value in ``fetch_list``.
    """
    prefix = Path(model_dir) / MODEL_PREFIX
    dynamic = paddle.in_dynamic_mode()
    paddle.enable_static()
    try:
        exe, scope = paddle.static.Executor(paddle.CPUPlace()), paddle.static.Scope()
        with paddle.static.scope_guard(scope):
            program, feeds, _ = paddle.static.load_inference_model(str(prefix), exe)
            block = program.global_block()
            for op in [op for op in block.ops if op.name() == "pd_op.fetch"]:
                block.remove_op(op)  # the saved answer's own fetch: ours replace it
            names, values, parameters, seen = [], [], {}, {}
            for op in block.ops:
                kind = op.name().split(".")[-1].rstrip("_")
                if kind == "parameter":
                    name = op.attrs()["parameter_name"]
                    parameters[name] = np.array(scope.find_var(name).get_tensor())
                elif kind not in ("data", "full", "full_int_array") and op.num_results():
                    seen[kind] = seen.get(kind, 0) + 1
                    names.append(kind if seen[kind] == 1 else f"{kind}_{seen[kind]}")
                    values.append(op.result(0))
            arrays = exe.run(program, feed={feeds[0]: np.asarray(images, np.float32)},
                             fetch_list=values)
    finally:
        if dynamic:
            paddle.disable_static()
    return dict(zip(names, arrays)), parameters


def predict_all(model, images):
    """Probabilities ``float32 [N, 10]`` for uint8 ``images``, in batches."""
    return np.concatenate([model.predict(x)[1] for x, _ in
                           batches(images, np.zeros(len(images), np.int64), TEST_BATCH_SIZE)])


def evaluate(model, images, labels, probs=None):
    """Mean cross-entropy cost and accuracy of ``model`` on uint8 ``images``."""
    probs = predict_all(model, images) if probs is None else probs
    cost = -np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-30)).mean()
    return float(cost), float((probs.argmax(axis=1) == labels).mean())


def confusion_matrix(labels, digits):
    """``int [10, 10]``: row = true digit, column = predicted digit."""
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (labels, digits), 1)
    return confusion


# one ASCII digit, then anything but a digit: 3_mine.png and 3.png, not 13.png or 2024_3.png
_LABEL = re.compile(r"([0-9])(?![0-9])")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def load_labelled_images(folder, preprocess=True):
    """Your own digits, labelled by where they lie: in sub-folders ``0`` to ``9``, or with
    the digit as the first character of the file name, followed by anything but another
    digit (``3_mine.png``; ``13.png`` or ``20240501_3.png`` are not labelled).

    Returns ``(paths, labels, inputs, skipped)``: the inputs ``[N, 1, 28, 28]`` as
    :func:`load_image` makes them, and ``(path, reason)`` for every image file that
    could not be read, so one bad file does not spoil the rest.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: no such folder; give a folder of your digit images")
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        parent, label = path.parent.name, _LABEL.match(path.name)
        if path.parent != folder and len(parent) == 1 and parent in "0123456789":
            found.append((path, int(parent)))
        elif label:
            found.append((path, int(label.group(1))))
    if not found:
        raise ImageError(f"{folder}: no labelled images; put them in sub-folders 0 to 9, or "
                         f"start each file name with its digit (3_mine.png)")
    paths, labels, inputs, skipped = [], [], [], []
    for path, label in found:
        try:
            inputs.append(load_image(path, preprocess))
        except ImageError as e:
            skipped.append((path, str(e).removeprefix(f"{path}: ")))
            continue
        except MemoryError:  # one huge image must not cost the rest
            skipped.append((path, "too large to read in this machine's memory"))
            continue
        paths.append(path)
        labels.append(label)
    if not inputs:
        raise ImageError(f"{folder}: none of its {len(found)} images could be read "
                         f"({skipped[0][0].name}: {skipped[0][1]})")
    return paths, np.array(labels, np.int64), np.concatenate(inputs), skipped
