"""Holding back what native code prints: Paddle's C++ libraries, paddle2onnx and ONNX
Runtime write to the process's descriptors directly, past Python's ``sys.stdout``."""

import contextlib
import os
import sys
import tempfile


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
def errors_held():
    """Hold back what native code writes to standard error, and give it back if the block
    succeeds: a damaged model file makes Paddle's C++ libraries print lines of their own
    (``[libprotobuf ERROR ...]``) before Python sees the error, which the package then
    says in one line."""
    with descriptors_held(2) as held:
        yield
        written = held()  # not reached when the block fails: then it stays held back
    if written:
        os.write(2, written.encode())

