"""A training's settings, written once: what ``train()`` takes, what the command line's
options set, what a checkpoint records and ``resume=True`` compares, and what fine-tuning
and every worker of a data-parallel training are given."""

import dataclasses
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, check_positive


@dataclass(frozen=True)
class Settings:
    """The chapter's settings are the defaults: LeNet-5, 5 passes, batches of 64, Adam at
    0.001, on the static graph."""

    model: str = "cnn"  # "softmax", "mlp" or "cnn" (see models.MODELS)
    epochs: int = 5  # passes over the training images
    batch_size: int = 64
    learning_rate: float = 0.001
    seed: int | None = None  # None: a random one, recorded in metrics.json
    validation: int | None = None  # training images held out; None: 1/12 of them
    augment: bool = False  # train on moved and re-stroked digits (own_digits.augment)
    graph: str = "static"  # or "dynamic" (engines.dynamic)
    workers: int = 1  # processes, each on a share of every batch (engines.parallel)
    device: str = "auto"  # "cpu", "gpu", or a GPU where Paddle has one
    threads: int | None = None  # CPU threads; None: every core this process may use
    onednn: bool | None = None  # the fast CPU convolutions; None: where they work

    # What the course of a training depends on: a checkpoint records these, and a resumed
    # training goes on with them. Where it runs (device, threads, oneDNN) may change.
    RESUMED = ("model", "epochs", "batch_size", "learning_rate", "seed", "validation",
               "augment", "graph", "workers")
    # ... but these may be given anew: in any number of workers the batches are the same,
    MOVABLE = ("workers",)  # dealt the same (each takes a share of each), so the run goes on

    @classmethod
    def given(cls, **options):
        """The options that are set (not None), each a setting's name; a
        :class:`ConfigError` for a name that is none."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ConfigError(f"{unknown[0]}=...: no such setting; the settings are "
                              f"{', '.join(sorted(names))}")
        return {name: value for name, value in options.items() if value is not None}

    def resumed(self, recorded, given=()):
        """These settings with the ``RESUMED`` ones taken from ``recorded`` (a checkpoint's
        metrics), but for the ``MOVABLE`` ones ``given`` anew."""
        return dataclasses.replace(self, **{name: recorded[name] for name in self.RESUMED
                                            if not (name in self.MOVABLE and name in given)})

    def check(self):
        """Refuse, in one line naming the setting, any value no training can run with."""
        from .engine import select_place  # the device must be there
        from .models import check_model
        from .plumbing.fast_cpu import check_threads  # no more threads than cores

        check_model(self.model)
        if self.graph not in ("static", "dynamic"):
            raise ConfigError(f"graph={self.graph!r}: must be 'static' or 'dynamic'")
        check_positive(epochs=self.epochs, batch_size=self.batch_size, workers=self.workers)
        check_threads(self.threads)
        check_positive(whole=False, learning_rate=self.learning_rate)
        for name, top in (("seed", 2**31), ("validation", None)):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, np.integer)) and
                                          not isinstance(value, bool) and 0 <= value and
                                          (top is None or value < top)):
                limit = f"from 0 to {top - 1}" if top else "of images, 0 or more"
                raise ConfigError(f"{name}={value!r}: must be a whole number {limit}")
        for name, allowed in (("augment", (True, False)), ("onednn", (True, False, None))):
            if not any(getattr(self, name) is value for value in allowed):
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be True or False")
        select_place(self.device)
        return self
