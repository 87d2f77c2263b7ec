"""The fast paths are chosen by what this Paddle has, and each falls back where it is missing."""

import os
from types import SimpleNamespace
from unittest import mock

import paddle
import pytest

from recognize_digits.plumbing import fast_cpu as speed


def test_cores_where_affinity_is_unknown(monkeypatch):
    if hasattr(os, "sched_getaffinity"):
        # read at import: OpenMP later binds the main thread to one core (the thread's own
        # affinity then says 1, which made every later prediction single-threaded)
        mask = os.sched_getaffinity(0)
        try:
            os.sched_setaffinity(0, {min(mask)})
            assert speed.available_cores() == len(speed.CORES) >= len(mask)
        finally:
            os.sched_setaffinity(0, mask)
    monkeypatch.setattr(speed, "CORES", None)  # macOS, Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert speed.available_cores() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # "cannot tell"
    assert speed.available_cores() == 1


@pytest.mark.parametrize("names, built", [
    ({"is_compiled_with_onednn": lambda: True}, True),  # Paddle 3.2 and later
    ({"is_compiled_with_mkldnn": lambda: True}, True),  # before 3.2
    ({"is_compiled_with_mkldnn": lambda: False}, False),  # a build without it (ARM Macs)
    ({}, False),  # neither name: no oneDNN to use
])
def test_onednn_is_detected_under_either_name(names, built):
    with mock.patch.object(paddle.base, "core", SimpleNamespace(**names)):
        assert speed.onednn_built() is built


def test_a_paddle_without_onednn_trains_on_the_plain_kernels():
    with mock.patch.object(speed, "onednn_built", return_value=False):
        assert speed.speed_up(None, None) == "this Paddle is built without oneDNN"


class Config:
    """A predictor config with only the methods that one Paddle generation has."""

    def __init__(self, *names):
        self.calls = []
        for name in names:
            setattr(self, name, lambda name=name: self.calls.append(name))


@pytest.mark.parametrize("names, on, called", [
    (("enable_onednn", "disable_onednn"), True, ["enable_onednn"]),
    (("enable_onednn", "disable_onednn"), False, ["disable_onednn"]),
    (("enable_mkldnn", "disable_mkldnn"), True, ["enable_mkldnn"]),
    (("enable_mkldnn", "disable_mkldnn"), False, ["disable_mkldnn"]),
    (("enable_mkldnn",), False, []),  # nothing to turn off
])
def test_predictor_onednn_under_either_name(names, on, called):
    config = Config(*names)
    speed.set_onednn(config, on)
    assert config.calls == called


def test_predictor_onednn_missing_is_an_error_to_fall_back_on():
    with pytest.raises(RuntimeError, match="cannot turn oneDNN on"):
        speed.set_onednn(Config(), True)
