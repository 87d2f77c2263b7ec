"""The tutorial notebook runs top to bottom, in its fast mode, in a real Jupyter kernel."""

from pathlib import Path

import nbclient
import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "recognize_digits.ipynb"


def test_notebook_runs_in_fast_mode(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("RECOGNIZE_DIGITS_FAST", "1")  # the kernel inherits the environment
    # Run in a copy of the notebooks folder, so that the models it saves land in tmp_path.
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    for folder in ("image", "benchmarks"):  # the example image, the benchmark's figures
        (tmp_path / folder).symlink_to(NOTEBOOK.parents[1] / folder)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()  # raises CellExecutionError on any failing cell

    outputs = [out for cell in notebook.cells if cell.cell_type == "code"
               for out in cell.get("outputs", [])]
    text = "".join(out.get("text", "") for out in outputs)
    assert "sample" in text  # fast mode says it uses the sample
    assert "image/infer_3.png is a " in text
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 6  # digits, activations, live curves, accuracy, image, probabilities
    assert (workdir / "recognize_digits.inference.model" / "model.json").is_file()
