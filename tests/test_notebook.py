"""The tutorial notebooks (English and Chinese) run top to bottom, in their fast mode, in
a real Jupyter kernel, and share every line of code."""

import os
import re
from pathlib import Path

import nbclient
import nbformat
import pytest

from recognize_digits.plumbing import fast_cpu as speed

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "recognize_digits.ipynb"
CHINESE = NOTEBOOK.with_suffix(".cn.ipynb")


def code_cells(path):
    return [cell.source for cell in nbformat.read(path, as_version=4).cells
            if cell.cell_type == "code"]


def test_the_chinese_notebook_has_exactly_the_english_code():
    assert code_cells(CHINESE) == code_cells(NOTEBOOK)
    chinese = [cell.source for cell in nbformat.read(CHINESE, as_version=4).cells
               if cell.cell_type == "markdown"]
    english = [cell.source for cell in nbformat.read(NOTEBOOK, as_version=4).cells
               if cell.cell_type == "markdown"]
    assert len(chinese) == len(english)  # every section is there
    # each Chinese cell is Chinese, and keeps the English one's formulas
    for zh, en in zip(chinese, english):
        assert re.search("[\u4e00-\u9fff]", zh), zh[:60]
        assert re.findall(r"\$\$.*?\$\$", en, re.S) == re.findall(r"\$\$.*?\$\$", zh, re.S)


def test_notebook_runs_in_fast_mode(tmp_path, monkeypatch):
    # the English edition only: the Chinese one's code cells are the same (tested above)
    path = NOTEBOOK
    notebook = nbformat.read(path, as_version=4)
    monkeypatch.setenv("RECOGNIZE_DIGITS_FAST", "1")  # the kernel inherits the environment
    # Run in a copy of the notebooks folder, so that the models it saves land in tmp_path.
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    for folder in ("image", "benchmarks"):  # the example image, the benchmark's figures
        (tmp_path / folder).symlink_to(NOTEBOOK.parents[1] / folder)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    # the kernel inherits this thread's cores: give it all of them back, as a Jupyter server
    # would, since OpenMP bound this test process's thread to one core when it trained
    if speed.CORES:
        mask = os.sched_getaffinity(0)
        os.sched_setaffinity(0, speed.CORES)
    try:
        client.execute()  # raises CellExecutionError on any failing cell
    finally:
        if speed.CORES:
            os.sched_setaffinity(0, mask)

    outputs = [out for cell in notebook.cells if cell.cell_type == "code"
               for out in cell.get("outputs", [])]
    text = "".join(out.get("text", "") for out in outputs)
    assert "sample" in text  # fast mode says it uses the sample
    assert "image/infer_3.png is a " in text
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 6  # digits, activations, live curves, accuracy, image, probabilities
    assert (workdir / "recognize_digits.inference.model" / "model.json").is_file()


@pytest.mark.parametrize("path", [NOTEBOOK, CHINESE], ids=["en", "cn"])
def test_the_first_cell_says_how_to_install_beside_a_paddle_already_there(path):
    first = nbformat.read(path, as_version=4).cells[0].source
    # Paddle first (CPU or GPU), then requirements.txt, which never replaces it
    assert "pip install -r requirements.txt" in first and "paddlepaddle-gpu" in first
    assert "AI Studio" in first and "!cd .. && pip install -r requirements.txt" in first


def markdown_cells(path):
    return [cell.source for cell in nbformat.read(path, as_version=4).cells
            if cell.cell_type == "markdown"]


def prose(text):
    """A markdown cell without its code: fenced blocks and `inline` spans."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


@pytest.mark.parametrize("path", [NOTEBOOK, CHINESE], ids=["en", "cn"])
def test_markdown_has_no_control_characters_and_balanced_formulas(path):
    for text in markdown_cells(path):
        # a literal TAB once turned "$\tanh$" into "<TAB>anh" (a Python string's "\t")
        assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", text), repr(text[:80])
        words = prose(text)
        assert words.count("$$") % 2 == 0, words[:80]
        inline = re.sub(r"\$\$.*?\$\$", "", words, flags=re.S)
        dollars = re.findall(r"(?<!\\)\$", inline)
        assert len(dollars) % 2 == 0, words[:80]
        for formula in re.findall(r"(?<!\\)\$(.+?)(?<!\\)\$", inline, re.S):
            assert "\n\n" not in formula, formula[:60]  # a span never runs across paragraphs


def test_figures_are_numbered_in_order_and_alike_in_both_editions():
    english = [int(n) for n in re.findall(r"Figures? (\d+)(?:\s+and\s+(\d+))?",
                                          "\n".join(markdown_cells(NOTEBOOK))) for n in n if n]
    chinese = [int(n) for n in re.findall(r"图 (\d+)", "\n".join(markdown_cells(CHINESE)))]
    assert english and sorted(set(english)) == list(range(1, max(english) + 1))
    assert sorted(set(chinese)) == sorted(set(english))
    first_mentions = list(dict.fromkeys(english))
    assert first_mentions == sorted(first_mentions)  # introduced in reading order


@pytest.mark.parametrize("path", [NOTEBOOK, CHINESE], ids=["en", "cn"])
def test_every_reference_listed_is_cited(path):
    text = "\n".join(markdown_cells(path))
    listed = [int(n) for n in re.findall(r"^(\d+)\. [A-Z]\. ", text, re.M)]
    body = re.sub(r"^\d+\. [A-Z]\. .*$", "", text, flags=re.M)
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", body)}
    assert listed == list(range(1, len(listed) + 1)) and len(listed) >= 10
    assert cited == set(listed)
