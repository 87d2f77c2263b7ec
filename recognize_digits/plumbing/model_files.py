"""Checks on a saved model's files before anything serves them: the SHA-256 saved beside
the parameters, and each parameter's shape and size, so that a damaged file is refused in
one line instead of answering nonsense."""

import numpy as np
import paddle

from ..engine import graph_mode
from ..errors import ModelError
from .storage import checksum_matches

MAX_PARAMETER = 1e6  # no trained parameter comes near; random bytes read as floats often do


def load_program(prefix):
    """A saved model's program and a scope holding its parameters; the graph mode is
    left as it was found (a dynamic-mode session stays dynamic)."""
    scope = paddle.static.Scope()
    with graph_mode("static"), paddle.static.scope_guard(scope):
        program, _, _ = paddle.static.load_inference_model(
            str(prefix), paddle.static.Executor(paddle.CPUPlace()))
    return program, {p.name: np.array(scope.find_var(p.name).get_tensor())
                     for p in program.global_block().all_parameters()}


def check_sum(params, fix):
    """Refuse parameters that do not match the SHA-256 saved with them (models saved
    before the package wrote one are checked by :func:`read_saved_model` alone); ``fix``
    says what to do."""
    if not checksum_matches(params):
        raise ModelError(f"{params}: the file does not match the checksum saved with it "
                         f"({params.with_suffix('.sha256').name}), so it is damaged; {fix}")


def read_saved_model(prefix):
    """The declared input shape of a saved model, after checking its parameters (see
    :func:`refused_parameter`). None if the model cannot be read at all (the predictor
    then says why); a :class:`ModelError` naming the first bad parameter."""
    try:
        program, values = load_program(prefix)
    except (RuntimeError, ValueError, OSError):
        return None
    problem = refused_parameter(program, values)
    if problem:
        raise ModelError(f"{prefix}.pdiparams: {problem}, so the file is damaged")
    return [list(op.result(0).shape) for op in program.global_block().ops
            if op.name() == "pd_op.data"][0]


def refused_parameter(program, values):
    """What is wrong with the first parameter that no trained model has, or None: each
    must have its program's shape, be finite and of a plausible size (a damaged file, or a
    training that blew up, gives NaN, infinite or enormous values)."""
    for param in program.global_block().all_parameters():
        value = values[param.name]
        problem = (f"has shape {list(value.shape)}, not {list(param.shape)}"
                   if list(value.shape) != list(param.shape) else
                   "holds NaN or infinite values" if not np.isfinite(value).all() else
                   f"holds values as large as {np.abs(value).max():.3g}"
                   if np.abs(value).max() > MAX_PARAMETER else None)
        if problem:
            return f"parameter {param.name} {problem}"
    return None
