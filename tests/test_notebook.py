"""The tutorial notebooks: each runs top to bottom in its fast mode in a real Jupyter
kernel, its exercises' starter code after it; the Chinese editions share every line of
code; every figure their prose quotes comes from their own run or from a reference."""

import datetime
import os
import re
from pathlib import Path

import nbclient
import nbformat
import pytest

from recognize_digits.plumbing import fast_cpu

FOLDER = Path(__file__).resolve().parents[1] / "notebooks"
ENGLISH = sorted(p for p in FOLDER.glob("*.ipynb") if not p.name.endswith(".cn.ipynb"))
CHINESE = [p.with_suffix(".cn.ipynb") for p in ENGLISH]
CHAPTER = FOLDER / "recognize_digits.ipynb"
BOTH = ENGLISH + CHINESE
NAMES = [p.name.removesuffix(".ipynb") for p in BOTH]


def cells(path, kind):
    return [cell.source for cell in nbformat.read(path, as_version=4).cells
            if cell.cell_type == kind]


def prose(text):
    """A markdown cell without its code: fenced blocks and `inline` spans."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


def exercises(path):
    """The starter code of each exercise: the python blocks of the cells that pose one."""
    return [block for text in cells(path, "markdown")
            if re.match(r"\*\*(Exercise|练习) \d+", text)
            for block in re.findall(r"```python\n(.*?)```", text, re.S)]


def test_three_notebooks_in_each_language():
    assert CHAPTER in ENGLISH and len(ENGLISH) >= 3
    assert all(path.is_file() for path in CHINESE)


@pytest.mark.parametrize("english", ENGLISH, ids=[p.stem for p in ENGLISH])
def test_the_chinese_edition_has_exactly_the_english_code(english):
    chinese = english.with_suffix(".cn.ipynb")
    assert cells(chinese, "code") == cells(english, "code")
    zh, en = cells(chinese, "markdown"), cells(english, "markdown")
    assert len(zh) == len(en)  # every section is there
    for zh_cell, en_cell in zip(zh, en):  # Chinese, with the English one's formulas and code
        assert re.search("[\u4e00-\u9fff]", zh_cell), zh_cell[:60]
        assert re.findall(r"\$\$.*?\$\$", en_cell, re.S) == re.findall(r"\$\$.*?\$\$", zh_cell, re.S)
        assert re.findall(r"```python\n.*?```", en_cell, re.S) == re.findall(
            r"```python\n.*?```", zh_cell, re.S)


@pytest.mark.parametrize("path", ENGLISH, ids=[p.stem for p in ENGLISH])
def test_notebook_and_its_exercises_run_in_fast_mode(path, tmp_path, monkeypatch):
    """The English editions only: the Chinese ones' code is the same (tested above)."""
    notebook = nbformat.read(path, as_version=4)
    starters = exercises(path)
    assert starters, "every notebook has exercises with starter code"
    notebook.cells += [nbformat.v4.new_code_cell(code) for code in starters]
    monkeypatch.setenv("RECOGNIZE_DIGITS_FAST", "1")  # the kernel inherits the environment
    # Run in a copy of the notebooks folder, so that the models it saves land in tmp_path.
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    for folder in ("image", "benchmarks"):  # the example image, the benchmarks' results
        (tmp_path / folder).symlink_to(FOLDER.parent / folder)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    # the kernel inherits this thread's cores: give it all of them back, as a Jupyter server
    # would, since OpenMP bound this test process's thread to one core when it trained
    if fast_cpu.CORES:
        mask = os.sched_getaffinity(0)
        os.sched_setaffinity(0, fast_cpu.CORES)
    try:
        client.execute()  # raises CellExecutionError on any failing cell
    finally:
        if fast_cpu.CORES:
            os.sched_setaffinity(0, mask)
    text = "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for out in cell.get("outputs", []))
    assert "sample" in text  # fast mode says it uses the sample
    if path == CHAPTER:
        assert "image/infer_3.png is a " in text
        assert (workdir / "recognize_digits.inference.model" / "model.json").is_file()


@pytest.mark.parametrize("path", BOTH, ids=NAMES)
def test_the_committed_run_is_whole_and_without_errors(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in code), "run every cell, in order"
    outputs = [out for cell in code for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"
                or "Traceback" in out.get("text", "")]
    # a full run, on MNIST, not the fast one on the bundled sample
    assert "bundled with the package" not in "".join(out.get("text", "") for out in outputs)


def seconds(path):
    """How long the committed run took, by the cells' own recorded timings."""
    total = 0.0
    for cell in nbformat.read(path, as_version=4).cells:
        timing = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code":
            start, end = (datetime.datetime.fromisoformat(timing[key].replace("Z", "+00:00"))
                          for key in ("iopub.execute_input", "shell.execute_reply"))
            total += (end - start).total_seconds()
    return total


def test_the_chapter_is_short_and_its_run_takes_five_minutes_at_most():
    words = sum(len(re.findall(r"[A-Za-z]+(?:'[a-z]+)?", prose(text)))
                for text in cells(CHAPTER, "markdown"))
    assert words <= 4500
    assert seconds(CHAPTER) <= 300


@pytest.mark.parametrize("path", BOTH, ids=NAMES)
def test_the_first_cell_says_how_to_install_beside_a_paddle_already_there(path):
    first = nbformat.read(path, as_version=4).cells[0].source
    # Paddle first (CPU or GPU), then requirements.txt, which never replaces it
    assert "pip install -r requirements.txt" in first and "paddlepaddle-gpu" in first
    assert "AI Studio" in first and "!cd .. && pip install -r requirements.txt" in first


@pytest.mark.parametrize("path", BOTH, ids=NAMES)
def test_markdown_has_no_control_characters_and_balanced_formulas(path):
    for text in cells(path, "markdown"):
        # a literal TAB once turned "$\tanh$" into "<TAB>anh" (a Python string's "\t")
        assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", text), repr(text[:80])
        words = prose(text)
        assert words.count("$$") % 2 == 0, words[:80]
        inline = re.sub(r"\$\$.*?\$\$", "", words, flags=re.S)
        dollars = re.findall(r"(?<!\\)\$", inline)
        assert len(dollars) % 2 == 0, words[:80]
        for formula in re.findall(r"(?<!\\)\$(.+?)(?<!\\)\$", inline, re.S):
            assert "\n\n" not in formula, formula[:60]  # a span never runs across paragraphs


@pytest.mark.parametrize("english", ENGLISH, ids=[p.stem for p in ENGLISH])
def test_figures_are_numbered_in_order_and_alike_in_both_editions(english):
    text = "\n".join(map(prose, cells(english, "markdown")))
    numbers = [int(n) for pair in re.findall(r"Figures? (\d+)(?:\s+and\s+(\d+))?", text)
               for n in pair if n]
    chinese = [int(n) for n in re.findall(r"图 ?(\d+)", "\n".join(
        map(prose, cells(english.with_suffix(".cn.ipynb"), "markdown"))))]
    assert sorted(set(chinese)) == sorted(set(numbers))
    if numbers:
        assert sorted(set(numbers)) == list(range(1, max(numbers) + 1))
        first_mentions = list(dict.fromkeys(numbers))
        assert first_mentions == sorted(first_mentions)  # introduced in reading order


@pytest.mark.parametrize("path", BOTH, ids=NAMES)
def test_every_reference_listed_is_cited(path):
    text = "\n".join(map(prose, cells(path, "markdown")))  # x[0] in code is no citation
    listed = [int(n) for n in re.findall(r"^(\d+)\. [A-Z]", text, re.M)]
    body = re.sub(r"^\d+\. [A-Z].*$", "", text, flags=re.M)
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", body)}
    assert listed == list(range(1, len(listed) + 1))
    assert cited == set(listed)


# A figure a run measures: a percentage, a rate of images, seconds or milliseconds, a ratio.
FIGURE = re.compile(r"(?<![\w.,])(\d[\d,]*(?:\.\d+)?)(%|x|×|倍| ?秒| images/s| ms| s)(?![\w])")


def sentences(text):
    """A markdown cell's prose in sentences (English or Chinese)."""
    return [s for s in re.split(r"(?<=[.!?])\s+|(?<=[。！？])|\n\n", prose(text)) if s.strip()]


def unsourced_figures(path):
    """The figures of the notebook's prose that no output or code of that notebook holds
    and no reference ([n]) in the same sentence vouches for."""
    notebook = nbformat.read(path, as_version=4)
    produced = "\n".join(
        [cell.source for cell in notebook.cells if cell.cell_type == "code"]
        + [out.get("text", "") + "".join(str(v) for k, v in out.get("data", {}).items()
                                         if k.startswith("text/"))
           for cell in notebook.cells if cell.cell_type == "code"
           for out in cell.get("outputs", [])])
    missing = []
    for text in (cell.source for cell in notebook.cells if cell.cell_type == "markdown"):
        if text.lstrip().startswith("### References") or "参考文献" in text[:20]:
            continue
        for sentence in sentences(text):
            if re.search(r"\[\d+\]", sentence):
                continue
            for number, unit in FIGURE.findall(sentence):
                # the very figure, not one that merely begins with it (98.3 in 98.34)
                if not re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", produced):
                    missing.append(f"{number}{unit} in: {sentence.strip()[:90]}")
    return missing


@pytest.mark.parametrize("path", BOTH, ids=NAMES)
def test_every_figure_in_the_prose_comes_from_the_run_or_a_reference(path):
    assert unsourced_figures(path) == []


def test_the_figures_check_finds_a_figure_no_cell_printed(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("The convolutions take it to 98.3%. Published: 99.20% [1]."),
        nbformat.v4.new_code_cell("print(acc)", outputs=[nbformat.v4.new_output(
            "stream", name="stdout", text="accuracy 98.81%\n")])])
    nbformat.write(notebook, tmp_path / "n.ipynb")
    assert [m.split(" in:")[0] for m in unsourced_figures(tmp_path / "n.ipynb")] == ["98.3%"]
