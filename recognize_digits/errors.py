"""The package's own errors: each says what went wrong and what to do about it."""

import numpy as np

NO_PADDLE = ("PaddlePaddle is not installed: for the CPU, 'pip install paddlepaddle' (or "
             "'pip install \".[cpu]\"' in this project's folder); for CUDA GPUs, "
             "paddlepaddle-gpu from Paddle's own package index, with the command for your CUDA "
             "from paddlepaddle.org.cn")


class RecognizeDigitsError(Exception):
    """Base of every error this package raises on purpose."""


class DataError(RecognizeDigitsError, ValueError):
    """MNIST files missing, unreadable or not what they claim to be."""


class ImageError(RecognizeDigitsError, ValueError):
    """An image to recognise cannot be read. ``code`` names the problem in a word that does
    not change with the wording, for the draw page to say it in its own language."""

    def __init__(self, message, code="bad_image"):
        super().__init__(message)
        self.code = code


class ModelError(RecognizeDigitsError, ValueError):
    """A saved model is missing, incomplete or of the wrong kind."""


class ConfigError(RecognizeDigitsError, ValueError):
    """An option out of range, or a device that is not there."""


class DivergedError(RecognizeDigitsError, ArithmeticError):
    """Training produced a cost that is not a finite number."""


class TrainingInterrupted(RecognizeDigitsError, KeyboardInterrupt):
    """Training was stopped by Ctrl-C after saving a checkpoint to resume from."""


class WorkerError(RecognizeDigitsError, RuntimeError):
    """A worker of a data-parallel training failed, died or stopped answering: every worker
    was stopped. The message says what was kept to go on from."""


class FallbackWarning(RuntimeWarning):
    """Said once when the package works around something: a fast path this Paddle lacks
    (the plain kernels are used), or a model that ends in scores (softmax is applied)."""


def one_line(error):
    """The gist of an exception's message in one line: for Paddle's, the line naming the
    error, without the C++ stack and the hints below it."""
    text = str(error).split("Error Message Summary:")[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip().strip("-")]
    return lines[0] if lines else type(error).__name__


def check_positive(whole=True, **options):
    """Refuse any option that is set (not None) but not a number > 0 (a whole number unless
    ``whole=False``), naming it as a Python call does (the command line says it as its
    option)."""
    kinds = (int, np.integer) if whole else (int, float, np.integer, np.floating)
    for name, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ConfigError(f"{name}={value!r}: must be "
                              f"{'a whole number' if whole else 'a number'}")
        if not value > 0:
            raise ConfigError(f"{name}={value!r}: must be > 0")
