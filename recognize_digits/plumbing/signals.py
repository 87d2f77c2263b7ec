"""Ctrl-C and SIGTERM, caught for a while and then given back as they were."""

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and what a shutdown or `kill` sends


@contextlib.contextmanager
def handling(handler, signals=SIGNALS):
    """Within it, ``handler(signum, frame)`` answers ``signals``; then the handlers found
    are put back. Signals are only caught in the main thread: elsewhere this does nothing."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for number in signals:
            previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, handler_before in previous.items():
            # None: a handler set outside Python (Paddle's own for SIGTERM, which prints a
            # crash report), so the system's default is put back instead
            signal.signal(number, signal.SIG_DFL if handler_before is None else handler_before)


class StopOnCtrlC:
    """Within it, a first Ctrl-C (or SIGTERM) only sets ``pressed``: training stops after
    the current batch, test pass or save, with a checkpoint; a second one interrupts at
    once."""

    def __enter__(self):
        self.pressed = False
        self._handling = handling(self._pressed)
        self._handling.__enter__()
        return self

    def _pressed(self, signum, frame):
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True

    def __exit__(self, *exc):
        return self._handling.__exit__(*exc)
