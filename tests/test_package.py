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


def setup_arguments():
    """What setup.py passes to setuptools.setup."""
    from unittest import mock

    with mock.patch("setuptools.setup") as setup:
        exec(compile((ROOT / "setup.py").read_text(), "setup.py", "exec"), {"__name__": "__main__"})
    return setup.call_args.kwargs


def test_installing_never_puts_a_paddle_over_another():
    # paddlepaddle and paddlepaddle-gpu both install the package 'paddle': a requirement of
    # either would make pip replace the other. The CPU build comes with the [cpu] extra.
    arguments = setup_arguments()
    assert not [r for r in arguments["install_requires"] if r.startswith("paddle")]
    floor = declared_floor((ROOT / "setup.py").read_text())
    assert arguments["extras_require"]["cpu"] == [f"paddlepaddle>={floor}"]
    readme = (ROOT / "README.md").read_text()
    assert 'pip install ".[cpu]" &&' in readme and 'pip install -e ".[cpu,test]" && pytest' in readme


def requirement_lines():
    return [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def paddles_required(distribution, seen=None):
    """The Paddle distributions that installing ``distribution`` would ask pip for,
    through every requirement that applies here, as the installed packages declare them."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen = set() if seen is None else seen
    name = Requirement(distribution).name.lower().replace("_", "-")
    if name.startswith("paddlepaddle"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    try:
        requires = metadata.requires(name) or []
    except metadata.PackageNotFoundError:  # not installed here (jupyterlab): not followed
        return set()
    found = set()
    for line in requires:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            found |= paddles_required(str(requirement), seen)
    return found


def test_requirements_txt_is_the_notebook_extra_and_never_asks_for_a_paddle():
    # install a Paddle first (CPU or GPU), then pip install -r requirements.txt: beside
    # paddlepaddle-gpu, a paddlepaddle requirement would replace it (both are 'paddle')
    assert requirement_lines() == ["-e .[notebook]"]
    arguments = setup_arguments()
    wanted = arguments["install_requires"] + arguments["extras_require"]["notebook"]
    seen = set()
    assert not set().union(*(paddles_required(r, seen) for r in wanted))
    assert "paddle2onnx" in seen and "onnx" in seen  # the walk did follow what is installed
    for readme in ("README.md", "README.cn.md"):
        assert "pip install -r requirements.txt" in (ROOT / readme).read_text(encoding="utf-8")


def test_the_test_extra_brings_every_package_the_tests_use():
    # one rule for every extra: [test] has what any test needs, so nothing skips for want of it
    extras = setup_arguments()["extras_require"]
    needed = set().union(*(extras[name] for name in ("export", "onnx", "notebook", "benchmarks")))
    assert needed - {"jupyterlab"} <= set(extras["test"])  # the tests run kernels, not a server


def test_without_paddle_the_package_imports_and_says_how_to_install_one():
    import subprocess
    import sys

    hide = "import sys; sys.modules['paddle'] = None; "  # as if no Paddle were installed
    code = {"import": hide + "import recognize_digits; print(recognize_digits.__version__)",
            "use": hide + "from recognize_digits import train",
            "cli": hide + "from recognize_digits.cli import main; sys.exit(main(['train']))"}
    runs = {name: subprocess.run([sys.executable, "-c", line], capture_output=True, text=True,
                                 cwd=ROOT, timeout=120) for name, line in code.items()}
    assert runs["import"].returncode == 0 and runs["import"].stdout.strip()
    assert "ImportError: recognize_digits.train needs Paddle. PaddlePaddle is not installed: " \
           "for the CPU, 'pip install paddlepaddle'" in runs["use"].stderr
    cli = runs["cli"]
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert cli.stderr.startswith("recognize-digits: error: PaddlePaddle is not installed")
    assert "paddlepaddle-gpu" in cli.stderr and len(cli.stderr.splitlines()) == 1


def readme_test_command():
    """The README's test command: the shell block after "To run the tests"."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.search(r"```bash\n(.*?)```", readme.split("To run the tests", 1)[1], re.S) \
        .group(1).strip()


def test_ci_runs_the_readme_s_test_command_first_in_a_fresh_environment():
    command = readme_test_command()
    assert command == 'pip install -e ".[cpu,test]" && pytest'
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert command in lines  # character for character, as a line of its own
    before = lines[:lines.index(command)]
    assert ["python3 -m venv .venv", ". .venv/bin/activate"] == [
        line for line in before if "venv" in line and not line.startswith("rm ")]
    assert not [line for line in before if re.search(r"\bpip\b", line)]  # nothing before it


def test_ci_installs_every_system_package_the_tests_use():
    from recognize_digits.own_digits import sources

    run = (ROOT / ".ci" / "run").read_text()
    packages = re.search(r'packages="([^"]*)"', run).group(1).split()
    assert sorted(packages) == sorted(["chromium", *sources.FONTS])
