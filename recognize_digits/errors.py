"""The package's own errors: each says what went wrong and what to do about it."""


class RecognizeDigitsError(Exception):
    """Base of every error this package raises on purpose."""


class DataError(RecognizeDigitsError, ValueError):
    """MNIST files missing, unreadable or not what they claim to be."""


class ImageError(RecognizeDigitsError, ValueError):
    """An image to recognise cannot be read."""


class ModelError(RecognizeDigitsError, ValueError):
    """A saved model is missing, incomplete or of the wrong kind."""


class ConfigError(RecognizeDigitsError, ValueError):
    """An option out of range, or a device that is not there."""


class DivergedError(RecognizeDigitsError, ArithmeticError):
    """Training produced a cost that is not a finite number."""


class TrainingInterrupted(RecognizeDigitsError, KeyboardInterrupt):
    """Training was stopped by Ctrl-C after saving a checkpoint to resume from."""


class FallbackWarning(RuntimeWarning):
    """A fast path is not available on this Paddle: the plain kernels are used instead."""


def one_line(error):
    """The gist of an exception's message in one line: for Paddle's, the line naming the
    error, without the C++ stack and the hints below it."""
    text = str(error).split("Error Message Summary:")[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip().strip("-")]
    return lines[0] if lines else type(error).__name__


def check_positive(**options):
    """Refuse any option that is set (not None) but not > 0."""
    for name, value in options.items():
        if value is not None and not value > 0:
            raise ConfigError(f"{name.replace('_', '-')} must be > 0, got {value}")
