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


def test_the_chinese_readme_has_every_section_and_command_of_the_english_one():
    english, chinese = ((ROOT / name).read_text(encoding="utf-8")
                        for name in ("README.md", "README.cn.md"))
    assert "[中文](README.cn.md)" in english and "[English](README.md)" in chinese
    sections = [re.findall(r"^## ", text, re.M) for text in (english, chinese)]
    assert len(sections[0]) == len(sections[1])

    def commands(text):  # the shell blocks' commands, their comments aside
        return [line.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)
                for line in block.splitlines()]
    # the same commands, the Chinese one opening the Chinese notebook
    assert [c.replace(".cn.ipynb", ".ipynb") for c in commands(chinese)] == commands(english)
    # every measured percentage of the English tables and text is there too
    english_figures, chinese_figures = (set(re.findall(r"\d+\.\d\d%", text))
                                        for text in (english, chinese))
    assert english_figures <= chinese_figures
