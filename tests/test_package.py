"""What the package declares about itself holds."""

import re

import paddle
import pytest

from conftest import ROOT


def declared_floor(text):
    return re.search(r"paddlepaddle>=([0-9.]+)", text).group(1)


def test_one_paddle_floor_everywhere():
    floor = declared_floor((ROOT / "setup.py").read_text())
    assert declared_floor((ROOT / "requirements.txt").read_text()) == floor
    readme = (ROOT / "README.md").read_text()
    assert f"**Paddle {floor} or newer**" in readme and f"paddlepaddle>={floor}" in readme
    assert "paddlepaddle==${floor}" in (ROOT / ".ci" / "run").read_text()  # CI tries it


def test_this_paddle_is_one_the_package_admits():
    floor = declared_floor((ROOT / "setup.py").read_text())
    version = tuple(int(part) for part in re.findall(r"\d+", paddle.__version__)[:3])
    if version == (0, 0, 0):
        pytest.skip("a development build of Paddle has no release number")
    assert version >= tuple(int(part) for part in floor.split("."))
