"""Jobs for tests/test_distributed.py's workers (imported by them, by name)."""

import paddle.distributed as dist

from recognize_digits.engines.parallel import world
from recognize_digits.errors import ConfigError


def fail_on_rank_1(send):
    """Rank 1 fails at once; rank 0 waits for it in a collective, for ever."""
    if world()[0] == 1:
        raise LookupError("no such thing")
    dist.init_parallel_env()
    dist.barrier()


def config_error(send):
    """Both fail with the package's own error; rank 0's is the one to see."""
    raise ConfigError(f"a config error in rank {world()[0]}")


def wait_for_ctrl_c(send):
    """Both wait, Ctrl-C caught as a training does, until a second one stops them at once."""
    import time

    from recognize_digits.plumbing.signals import StopOnCtrlC

    with StopOnCtrlC():
        send(("ready", None))
        while True:
            time.sleep(0.05)
