"""Recognise handwritten digits (MNIST) with PaddlePaddle 3's static graph.

The chapter's steps, one module each: :mod:`.data`, :mod:`.models`, the static engine
(:mod:`.static_graph`), the loop (:mod:`.training`) and :mod:`.infer`. Beside them, in
subpackages loaded only when used: other engines (:mod:`.engines`), your own digits
(:mod:`.own_digits`), deployment (:mod:`.deploy`) and figures (:mod:`.figures`); what keeps
it all safe and fast is in :mod:`.plumbing`. :mod:`.cli` is the ``recognize-digits``
command.
"""

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

__all__ = ["MNIST", "MODELS", "InferenceModel", "RecognizeDigitsError", "Settings", "evaluate",
           "load_image", "load_mnist", "train"]

try:  # the package does not require a Paddle, so that pip never puts one over another
    import paddle  # noqa: F401, E402
except ImportError:  # what needs Paddle says how to install it
    def __getattr__(name):
        if name in __all__:
            raise ImportError(f"recognize_digits.{name} needs Paddle. {NO_PADDLE}")
        raise AttributeError(f"module 'recognize_digits' has no attribute {name!r}")
else:
    from .data import MNIST, load_mnist  # noqa: E402
    from .infer import InferenceModel, evaluate, load_image  # noqa: E402
    from .models import MODELS  # noqa: E402
    from .settings import Settings  # noqa: E402
    from .training import train  # noqa: E402

