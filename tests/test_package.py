"""What the package declares about itself holds."""

import ast
import re

import paddle
import pytest

from conftest import ROOT

PACKAGE = "recognize_digits"


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


def package_imports(path):
    """The package's modules that ``path`` imports, at any level (in functions too)."""
    modules = {p.stem for p in path.parent.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:  # from .x import y / from . import x
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith(PACKAGE + ".")}
    return found & modules - {path.stem}


def test_the_readme_lists_every_module_and_each_imports_only_those_above_it():
    for readme, heading in (("README.md", "The code's layout"), ("README.cn.md", "代码结构")):
        text = (ROOT / readme).read_text(encoding="utf-8")
        section = text.split(f"\n## {heading}\n")[1].split("\n## ")[0]
        listed = re.findall(r"^- `(\w+)\.py`", section, re.M)
        files = sorted(p.stem for p in (ROOT / PACKAGE).glob("*.py"))
        assert sorted(listed) == files and len(listed) == len(set(listed)), readme
        for i, module in enumerate(listed):
            above = set(listed[:i])
            imported = package_imports(ROOT / PACKAGE / f"{module}.py")
            assert imported <= above, f"{module} imports {sorted(imported - above)}, listed after it"


def test_package_imports_sees_every_form_of_import(tmp_path):
    (tmp_path / "a.py").write_text("from . import b\nfrom recognize_digits.c import x\n"
                                   "def f():\n    from .d import y\n    import recognize_digits.e\n")
    for name in "bcdef":
        (tmp_path / f"{name}.py").write_text("")
    assert package_imports(tmp_path / "a.py") == set("bcde")
