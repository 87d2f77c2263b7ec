"""Recognise handwritten digits (MNIST) with PaddlePaddle 3's static graph.

The chapter's steps, one module each: :mod:`.data`, :mod:`.models`, the static engine
(:mod:`.static_graph`), the loop (:mod:`.training`) and :mod:`.infer`. Beside them, in
subpackages loaded only when used: other engines (:mod:`.engines`), your own digits
(:mod:`.own_digits`), deployment (:mod:`.deploy`) and figures (:mod:`.figures`); what keeps
it all safe and fast is in :mod:`.plumbing`. :mod:`.cli` is the ``recognize-digits``
command.
"""

import importlib
import os
import warnings

# Paddle logs every executor start at INFO level, warns about a C++ compiler cache it
# only needs for custom operators, and prints two notes of its own while building any
# training program; none of it helps a learner. GLOG_minloglevel is left alone when set.
os.environ.setdefault("GLOG_minloglevel", "2")
for note in ("No ccache found", "When training, we now always track", "Tensor do not have 'place'"):
    warnings.filterwarnings("ignore", message=note)
# Left to float, the OpenMP threads that oneDNN computes with share one core in about
# half of all runs, which halves batch prediction speed; one thread per core keeps them
# apart. It is read when OpenMP starts; set KMP_AFFINITY=disabled to opt out. Not in a
# data-parallel worker (one thread each): it would put every worker on the first core.
if int(os.environ.get("PADDLE_TRAINERS_NUM", "1")) <= 1:
    os.environ.setdefault("KMP_AFFINITY", "granularity=fine,compact,1,0")

__version__ = "0.1.0"

from .errors import NO_PADDLE, RecognizeDigitsError  # noqa: E402

# The public names, each imported when first used: the command starts without waiting for
# Paddle (a Ctrl-C then is its own), and without Paddle each says how to install one.
PUBLIC = {"MNIST": "data", "load_mnist": "data", "InferenceModel": "infer", "load_image": "infer",
          "evaluate": "scoring", "MODELS": "models", "Settings": "settings", "train": "training"}
__all__ = sorted([*PUBLIC, "RecognizeDigitsError"])

def __getattr__(name):
    if name not in PUBLIC:
        raise AttributeError(f"module 'recognize_digits' has no attribute {name!r}")
    try:
        import paddle  # noqa: F401
    except ImportError:
        raise ImportError(f"recognize_digits.{name} needs Paddle. {NO_PADDLE}") from None
    return getattr(importlib.import_module(f".{PUBLIC[name]}", __name__), name)
