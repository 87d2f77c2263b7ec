"""What the package declares about itself holds."""

import ast
import json
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
    # section by section, the same figures: each edition says what the other says
    for en_section, zh_section in zip(*(re.split(r"^## ", text, flags=re.M)[1:]
                                        for text in (english, chinese))):
        figures = [set(re.findall(r"\d+(?:[.,]\d+)*", section))
                   for section in (en_section, zh_section)]
        assert figures[0] == figures[1], en_section.splitlines()[0]


EXTRAS = ("engines", "own_digits", "deploy", "figures")  # subpackages, loaded when used
MODULES = {".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
           for path in (ROOT / PACKAGE).rglob("*.py")}


def package_imports(path, anywhere=False):
    """The package's modules that the module at ``path`` imports: at its top level (as it
    loads), or ``anywhere`` (in functions too). ``from .x import y`` counts as importing
    ``.x.y`` when that is a module, else ``.x``."""
    module = ".".join(path.relative_to(path.parents[len(path.relative_to(ROOT).parts) - 1])
                      .with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = ast.walk(tree) if anywhere else loaded_with(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES
                          else source)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name in MODULES} - {module}


def loaded_with(node):
    """The statements that run when a module loads: all but the bodies of its functions."""
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield child
            yield from loaded_with(child)


def kind(module):
    """"core" (the chapter and the package itself), "plumbing", an extra, or "cli"."""
    parts = module.split(".")
    if len(parts) > 2:
        return parts[1]
    return "cli" if parts[-1] in ("cli", "__main__") else "core"


def test_the_chapter_and_its_plumbing_import_no_extra():
    for module, path in MODULES.items():
        if kind(module) in ("core", "plumbing"):
            extras = {m for m in package_imports(path) if kind(m) in EXTRAS}
            assert not extras, f"{module} imports {sorted(extras)} as it loads"


def test_no_import_cycle():
    graph = {module: package_imports(path) for module, path in MODULES.items()}
    done, path = set(), []

    def visit(module):
        assert module not in path, " -> ".join(path[path.index(module):] + [module])
        if module not in done:
            path.append(module)
            for imported in graph[module]:
                visit(imported)
            path.pop()
            done.add(module)
    for module in graph:
        visit(module)


def test_package_imports_sees_every_form_of_import():
    imports = package_imports(ROOT / PACKAGE / "training.py")
    assert {"recognize_digits.data", "recognize_digits.plumbing.storage",
            "recognize_digits.events"} <= imports
    assert "recognize_digits.engines.dynamic" not in imports  # loaded in a function
    assert "recognize_digits.engines.dynamic" in package_imports(ROOT / PACKAGE / "training.py",
                                                                 anywhere=True)
    # "from . import x" (the public names of __init__ are imported by name, when first used)
    assert package_imports(ROOT / PACKAGE / "infer.py", anywhere=True) >= {"recognize_digits.scoring"}


CHAPTER_RUN = """
import json, sys
from recognize_digits import InferenceModel, load_image, load_mnist, train
train("cnn", epochs=1, data=load_mnist(sample=True), save_dir=sys.argv[1], seed=0,
      log=lambda *a: None)
InferenceModel(sys.argv[1]).predict(load_image(sys.argv[2]))
print(json.dumps(sorted(name for name in sys.modules if name.startswith("recognize_digits"))))
"""


def test_the_chapter_s_path_loads_the_lesson_and_its_plumbing_alone(tmp_path):
    import subprocess
    import sys

    from conftest import INFER_3

    proc = subprocess.run([sys.executable, "-c", CHAPTER_RUN, str(tmp_path / "m"), str(INFER_3)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not [m for m in loaded if kind(m) in EXTRAS], loaded
    lines = sum(len(MODULES[m].read_text(encoding="utf-8").splitlines()) for m in loaded)
    assert lines <= 2200, f"{lines} lines in {len(loaded)} modules"


def test_no_package_attribute_hides_a_submodule():
    import importlib

    modules = [m for m in MODULES if not m.endswith("__main__")]  # that one runs the CLI
    for module in modules:
        importlib.import_module(module)
    for module in modules:
        package, _, name = module.rpartition(".")
        if package:
            attribute = getattr(importlib.import_module(package), name, None)
            assert attribute is importlib.import_module(module), f"{package}.{name}"


def resolve(base, dotted):
    """The object ``dotted`` names inside the module ``base`` (submodules imported)."""
    import importlib

    found = importlib.import_module(base)
    for i, part in enumerate(dotted.split(".")):
        if not hasattr(found, part):
            found = importlib.import_module(".".join([base, *dotted.split(".")[:i + 1]]))
        else:
            found = getattr(found, part)
    return found


def test_every_name_the_readme_s_api_list_documents_is_where_it_says():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## The Python API\n")[1].split("\n## ")[0]
    checked = 0
    for module, text in re.findall(r"^- `(recognize_digits(?:\.\w+)*)`:(.*?)(?=^- |\Z)",
                                   section, re.M | re.S):
        for name in re.findall(r"`([A-Za-z_][\w.]*)(?:\([^`]*\))?`", text):
            if name.startswith(PACKAGE + "."):
                resolve(PACKAGE, name.removeprefix(PACKAGE + "."))
            else:
                resolve(module, name)
            checked += 1
    assert checked >= 40


def test_the_training_loop_stays_short():
    lines = len((ROOT / PACKAGE / "training.py").read_text(encoding="utf-8").splitlines())
    assert lines <= 260


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
    assert sorted(packages) == sorted(["chromium", "iproute2", *sources.FONTS])
