"""Export to ONNX: the file, its equality with Paddle, running it without Paddle, bad input."""

import importlib.util
import json
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest

from recognize_digits import cli
from recognize_digits.data import normalize
from recognize_digits.errors import ModelError
from recognize_digits.infer import InferenceModel, load_image, predict_all

from conftest import INFER_3, ROOT, quiet
from test_serve import drawing, request

NETWORKS = [("softmax", "static"), ("mlp", "static"), ("cnn", "static"), ("cnn", "dynamic")]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, sample, trained_cnn):
    """A saved model of each network and graph mode: (model, graph) -> folder."""
    from recognize_digits.training import train

    folders = {("cnn", "static"): trained_cnn[0]}
    for model, graph in NETWORKS:
        if (model, graph) not in folders:
            folders[model, graph] = tmp_path_factory.mktemp(f"{model}-{graph}")
            train(model, epochs=1, data=sample, save_dir=folders[model, graph], seed=0,
                  graph=graph, **quiet())
    return folders


@pytest.fixture(scope="module")
def exported(saved, tmp_path_factory):
    """Each saved model exported: (model, graph) -> (folder, .onnx path, what export found)."""
    from recognize_digits.deploy.export import export_onnx

    out = tmp_path_factory.mktemp("onnx")
    return {key: (folder, out / f"{key[0]}-{key[1]}.onnx",
                  export_onnx(folder, out / f"{key[0]}-{key[1]}.onnx"))
            for key, folder in saved.items()}


@pytest.mark.parametrize("network", NETWORKS, ids="-".join)
def test_onnx_answers_as_paddle_on_the_test_set(exported, sample, network):
    from recognize_digits.deploy.export import OnnxModel

    folder, path, found = exported[network]
    assert found["max_difference"] <= 1e-5 and found["digits_differing"] == 0
    paddle_probs = predict_all(InferenceModel(folder), sample.test_images)
    onnx_probs = predict_all(OnnxModel(path), sample.test_images)
    np.testing.assert_allclose(onnx_probs, paddle_probs, atol=1e-5, rtol=0)
    assert (onnx_probs.argmax(axis=1) == paddle_probs.argmax(axis=1)).all()


@pytest.mark.parametrize("network", NETWORKS, ids="-".join)
def test_the_file_names_its_input_and_takes_any_batch(exported, sample, network):
    import onnx

    from recognize_digits.deploy.export import OnnxModel, metadata

    _, path, _ = exported[network]
    graph = onnx.load(str(path)).graph
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (graph.input[0], graph.output[0])]
    assert [v.name for v in graph.input] == ["img"] and [v.name for v in graph.output] == \
        ["probabilities"]
    assert dims == [["batch", 1, 28, 28], ["batch", 10]]
    notes = metadata(path)
    assert notes["model"] == network[0] and notes["graph"] == network[1]
    assert "pixel / 127.5 - 1" in notes["input"]
    model = OnnxModel(path)
    for n in (1, 7, 17, 300):  # one thread up to 16 images, every core beyond
        digits, probs = model.predict(normalize(sample.test_images[:n]))
        assert probs.shape == (n, 10) and digits.shape == (n,)


def test_export_predict_and_evaluate_on_the_command_line(saved, tmp_path, capsys):
    folder, target = saved["cnn", "static"], tmp_path / "cnn.onnx"
    assert cli.main(["export", "--model-dir", str(folder), "--onnx", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"Exported {folder} to {target}" in out and "no digit differs" in out
    answers = {}
    for option in (["--model-dir", str(folder)], ["--onnx", str(target)],
                   ["--model-dir", str(target)]):
        assert cli.main(["predict", str(INFER_3), *option]) == 0
        answers[option[1]] = capsys.readouterr().out
        assert cli.main(["evaluate", "--sample", *option]) == 0
        answers[option[1]] += capsys.readouterr().out.split(" on ")[0]
    assert len(set(answers.values())) == 1 and f"{INFER_3}: 3 (" in answers[str(target)]
    assert cli.main(["predict", str(INFER_3), "--model-dir", str(folder), "--onnx",
                     str(target)]) == 1
    assert "give --model-dir or --onnx, not both" in capsys.readouterr().err


def test_serve_an_onnx_model(exported, monkeypatch, capsys):
    from http.server import ThreadingHTTPServer

    from recognize_digits.deploy.serve import make_server

    _, path, _ = exported["cnn", "static"]
    server = make_server(path, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status, _, body = request(server.server_address, "POST", "/predict", drawing(),
                                  "image/png")
    finally:
        server.shutdown()
        server.server_close()
    assert status == 200 and json.loads(body)["digit"] == 3

    def stop_at_once(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ThreadingHTTPServer, "serve_forever", stop_at_once)
    assert cli.main(["serve", "--onnx", str(path), "--port", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("Draw a digit at http://127.0.0.1:")
    assert "--model-dir MODEL --images my_digits" in lines[0] and "exported from" in lines[0]


def without_paddle(*args):
    """Run Python with ``args`` where importing paddle (or this package) fails."""
    block = ("import sys, runpy; sys.modules['paddle'] = None; "
             "sys.modules['recognize_digits'] = None; sys.argv = sys.argv[1:]; "
             "runpy.run_path(sys.argv[0], run_name='__main__')")
    return subprocess.run([sys.executable, "-c", block, *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_the_example_reads_infer_3_without_paddle(exported):
    _, path, _ = exported["cnn", "static"]
    proc = without_paddle("examples/onnx_predict.py", path, "image/infer_3.png")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("image/infer_3.png: 3 (probability ")
    proc = without_paddle("-c", "import paddle")  # the block holds
    assert proc.returncode != 0


def test_the_example_preprocesses_infer_3_as_the_package(exported):
    """Its short preprocessing gives the package's input for that image, to the bit."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import onnx_predict
    finally:
        sys.path.pop(0)
    assert np.array_equal(onnx_predict.to_input(INFER_3), load_image(INFER_3))


# --- bad input ---------------------------------------------------------------------------

def one_error_line(capsys, code):
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_a_model_saved_by_paddle_s_quick_start_is_read_and_exported_with_softmax(
        paddle_quickstart_lenet, sample, tmp_path, capfd):
    import onnxruntime

    from recognize_digits.deploy.export import metadata

    folder, target = str(paddle_quickstart_lenet), tmp_path / "quickstart.onnx"
    note = "note: the model ends in scores (logits), not probabilities"
    assert cli.main(["predict", str(INFER_3), "--model-dir", folder, "--json"]) == 0
    out, err = capfd.readouterr()
    probs = np.array(json.loads(out)[0]["probabilities"])
    assert json.loads(out)[0]["digit"] == 3 and err.count(note) == 1
    assert probs.min() >= 0 and probs.max() <= 1 and probs.sum() == pytest.approx(1, abs=1e-5)
    assert cli.main(["evaluate", "--sample", "--model-dir", folder]) == 0
    cost = float(capfd.readouterr().out.split("Test cost ")[1].split(",")[0])
    assert 0 < cost < 2.3
    assert cli.main(["export", "--model-dir", folder, "--onnx", str(target)]) == 0
    assert capfd.readouterr().err.count(note) == 1
    # the file itself ends in the softmax its metadata promises, for any runtime
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    answers = session.run(None, {"img": normalize(sample.test_images[:50])})[0]
    assert answers.min() >= 0 and np.allclose(answers.sum(axis=1), 1, atol=1e-5)
    notes = metadata(target)
    assert "softmax" in notes["output"] and "model" not in notes  # no training recorded
    assert cli.main(["predict", str(INFER_3), "--onnx", str(target)]) == 0
    assert note not in capfd.readouterr().err  # it answers probabilities already


def test_export_checks_metrics_json_against_the_parameters(saved, tmp_path, capsys):
    import shutil

    from recognize_digits.deploy.export import metadata

    folder = tmp_path / "m"
    shutil.copytree(saved["cnn", "static"], folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "model": "mlp"}))
    assert cli.main(["export", "--model-dir", str(folder), "--onnx", str(tmp_path / "a.onnx")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "its metrics.json says the network is 'mlp', but its " \
        "parameters are those of 'cnn'" in err and not (tmp_path / "a.onnx").exists()
    (folder / "metrics.json").write_text("null")  # no record of the training: none written
    assert cli.main(["export", "--model-dir", str(folder), "--onnx", str(tmp_path / "a.onnx")]) == 0
    assert "model" not in metadata(tmp_path / "a.onnx")


def test_export_refuses_a_folder_that_is_no_model(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = cli.main(["export", "--model-dir", str(tmp_path / "empty"), "--onnx",
                     str(tmp_path / "m.onnx")])
    assert "no saved model (model.json, model.pdiparams missing)" in one_error_line(capsys, code)
    (tmp_path / "junk").mkdir()
    for name in ("model.json", "model.pdiparams"):
        (tmp_path / "junk" / name).write_bytes(b"not a model")
    code = cli.main(["export", "--model-dir", str(tmp_path / "junk"), "--onnx",
                     str(tmp_path / "m.onnx")])
    assert "cannot be loaded" in one_error_line(capsys, code)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "junk"]


def test_export_refuses_an_output_it_cannot_write(tmp_path, monkeypatch, capsys):
    """Checked before anything is converted, so also where the extra is missing."""
    missing = tmp_path / "missing" / "m.onnx"
    code = cli.main(["export", "--model-dir", str(tmp_path), "--onnx", str(missing)])
    assert f"the folder {missing.parent} does not exist" in one_error_line(capsys, code)
    code = cli.main(["export", "--model-dir", str(tmp_path), "--onnx", str(tmp_path / "m.txt")])
    assert "with the suffix .onnx" in one_error_line(capsys, code)
    (tmp_path / "dir.onnx").mkdir()
    code = cli.main(["export", "--model-dir", str(tmp_path), "--onnx", str(tmp_path / "dir.onnx")])
    assert "is a folder" in one_error_line(capsys, code)

    def refuse(*args, **kwargs):  # a read-only folder (chmod alone does not stop root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    code = cli.main(["export", "--model-dir", str(tmp_path), "--onnx", str(tmp_path / "m.onnx")])
    assert f"cannot write in {tmp_path} (Permission denied)" in one_error_line(capsys, code)


def test_export_replaces_a_file_only_with_force(saved, tmp_path, capsys):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"mine")
    code = cli.main(["export", "--model-dir", str(saved["softmax", "static"]), "--onnx",
                     str(target)])
    assert "already exists; add --force to replace it" in one_error_line(capsys, code)
    assert target.read_bytes() == b"mine"
    assert cli.main(["export", "--model-dir", str(saved["softmax", "static"]), "--onnx",
                     str(target), "--force"]) == 0
    assert target.stat().st_size > 1000 and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_a_failed_export_leaves_nothing(saved, tmp_path, monkeypatch, capsys):
    import paddle2onnx

    def half_then_fail(model, params, save_file, **kwargs):
        with open(save_file, "wb") as f:
            f.write(b"half a model")
        raise RuntimeError("Unsupported operator: pd_op.something\nmore C++ lines")

    monkeypatch.setattr(paddle2onnx, "export", half_then_fail)
    target = tmp_path / "m.onnx"
    code = cli.main(["export", "--model-dir", str(saved["mlp", "static"]), "--onnx", str(target)])
    assert "paddle2onnx cannot convert this model (Unsupported operator: pd_op.something)" in \
        one_error_line(capsys, code)
    assert list(tmp_path.iterdir()) == []


def test_an_export_that_differs_from_paddle_is_not_written(saved, tmp_path, monkeypatch):
    from recognize_digits.deploy import export

    def drift(reference, model, images):
        return {"images": len(images), "max_difference": 3e-4, "digits_differing": 2}

    monkeypatch.setattr(export, "compare", drift)
    with pytest.raises(ModelError, match=r"differ from Paddle's \(0.0003 at most, 2 digits "
                                         r"differ\), so it was not written"):
        export.export_onnx(saved["mlp", "static"], tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_predict_refuses_a_corrupt_onnx_file(exported, tmp_path, capsys):
    _, path, _ = exported["cnn", "static"]
    for name, content in (("cut.onnx", path.read_bytes()[:5000]), ("text.onnx", b"hello\n")):
        (tmp_path / name).write_bytes(content)
        code = cli.main(["predict", str(INFER_3), "--onnx", str(tmp_path / name)])
        line = one_error_line(capsys, code)
        assert f"{tmp_path / name}: cannot be loaded or run as a model of 28x28 digits" in line
        assert "export it again with 'recognize-digits export" in line
    code = cli.main(["predict", str(INFER_3), "--onnx", str(tmp_path / "none.onnx")])
    assert "none.onnx: no such file; export one with" in one_error_line(capsys, code)


def test_without_the_extras_export_and_predict_say_how_to_install_them(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"an exported model")
    hide = ("import sys; sys.modules['paddle2onnx'] = None; sys.modules['onnxruntime'] = None; "
            "from recognize_digits.cli import main; ")
    for argv, needs in (
            (["export", "--model-dir", str(tmp_path), "--onnx", str(tmp_path / "new.onnx")],
             "exporting to ONNX needs paddle2onnx, which is not installed; install it with "
             "'pip install \".[export]\"'"),
            (["predict", str(INFER_3), "--onnx", str(tmp_path / "m.onnx")],
             "running an ONNX model needs onnxruntime, which is not installed; install it with "
             "'pip install \".[onnx]\"'")):
        proc = subprocess.run([sys.executable, "-c", hide + f"sys.exit(main({argv!r}))"],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 1 and proc.stderr.strip() == \
            f"recognize-digits: error: {needs} in this project's folder"


def test_the_extras_are_declared():
    from test_package import setup_arguments

    extras = setup_arguments()["extras_require"]
    assert extras["export"] == ["paddle2onnx>=2.0", "onnx-graphsurgeon", "onnxruntime"]
    assert extras["onnx"] == ["onnxruntime"]
    assert set(extras["export"]) <= set(extras["notebook"])  # its ONNX section


def test_export_installs_nothing_even_when_the_converter_lacks_a_package(saved, tmp_path):
    """paddle2onnx 2.1 lets Polygraphy pip-install what it lacks while converting: with
    onnx-graphsurgeon hidden, export still writes a checked file, asks pip for nothing,
    leaves the installed packages as they were and no setting that would allow it."""
    freeze = [sys.executable, "-m", "pip", "freeze", "--all"]
    before = subprocess.run(freeze, capture_output=True, text=True, check=True).stdout
    target = tmp_path / "m.onnx"
    script = f"""
import json, os, subprocess, sys
sys.modules["onnx_graphsurgeon"] = None  # as if it were not installed
asked, run = [], subprocess.run
def refuse(command, *args, **kwargs):  # any installer is recorded, and not run
    if "install" in map(str, command):
        asked.append(list(map(str, command)))
        return subprocess.CompletedProcess(command, 1, b"", b"refused by the test")
    return run(command, *args, **kwargs)
subprocess.run = refuse
from recognize_digits.deploy.export import export_onnx
found = export_onnx({str(saved["softmax", "static"])!r}, {str(target)!r})
print(json.dumps([asked, found["digits_differing"], os.environ.get("POLYGRAPHY_AUTOINSTALL_DEPS")]))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    asked, differing, setting = json.loads(proc.stdout.strip().splitlines()[-1])
    assert asked == [] and differing == 0 and setting is None and target.is_file()
    after = subprocess.run(freeze, capture_output=True, text=True, check=True).stdout
    assert after == before


def test_export_prints_nothing_where_python_s_streams_are_not_the_descriptors(saved, tmp_path,
                                                                             monkeypatch):
    """As in a Jupyter kernel, where sys.stdout is not descriptor 1: the converter's own
    log lines (its Python logging and its constant folding's) stay out of the cell."""
    import io

    from recognize_digits.deploy.export import export_onnx

    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    export_onnx(saved["softmax", "static"], tmp_path / "quiet.onnx")
    assert out.getvalue() == err.getvalue() == ""
