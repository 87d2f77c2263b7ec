import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recognize_digits import cli, data
from recognize_digits.plumbing import download

from conftest import INFER_3, ROOT, write_mnist


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "recognize_digits", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    """The command line's own training, of the quickest model (the other commands' tests
    use conftest's LeNet-5, trained once for the whole suite)."""
    save_dir = tmp_path_factory.mktemp("cli") / "model"
    proc = run("train", "--model", "softmax", "--epochs", "2", "--sample", "--seed", "4",
               "--save-dir", save_dir)
    return save_dir, proc.stdout + proc.stderr


def test_train_draws_the_cost_curves(tmp_path):
    plot = tmp_path / "curves.png"
    run("train", "--model", "softmax", "--epochs", "2", "--sample", "--save-dir",
        tmp_path / "model", "--plot", plot)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image
    assert Image.open(plot).size == (700, 360)
    # a path the curves cannot go to is refused before any training
    for bad in (tmp_path / "curves.txt", tmp_path / "missing" / "curves.png"):
        proc = run("train", "--sample", "--save-dir", tmp_path / "m2", "--plot", bad, check=False)
        assert proc.returncode == 1
        assert "recognize-digits: error:" in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "m2").exists()


def test_train_end_to_end(cli_model):
    save_dir, output = cli_model
    assert "sample" in output
    assert "Best pass is" in output and "The classification accuracy is" in output
    assert {"model.json", "model.pdiparams", "metrics.json"} <= set(os.listdir(save_dir))
    assert json.loads((save_dir / "metrics.json").read_text())["epochs"] == 2


def test_evaluate_end_to_end(trained_cnn):
    proc = run("evaluate", "--model-dir", trained_cnn[0], "--sample")
    assert "accuracy" in proc.stdout and "1000 test images" in proc.stdout
    assert "sample" in proc.stdout
    # the plain kernels on one thread give the same figures
    assert run("evaluate", "--model-dir", trained_cnn[0], "--sample", "--no-onednn",
               "--threads", "1").stdout == proc.stdout


def test_predict_text_and_json(trained_cnn, sample, tmp_path):
    proc = run("predict", INFER_3, INFER_3, "--model-dir", trained_cnn[0])
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{INFER_3}: 3 (probability ")
    assert lines[0].count("; then ") == 1 and lines[0].count("(") == 3  # the next two digits

    proc = run("predict", INFER_3, "--model-dir", trained_cnn[0], "--json")
    [result] = json.loads(proc.stdout)
    assert set(result) == {"image", "digit", "probabilities"}
    assert result["digit"] == 3 and len(result["probabilities"]) == 10
    assert sum(result["probabilities"]) == pytest.approx(1, rel=1e-5)


def test_errors_exit_non_zero_without_traceback(trained_cnn, tmp_path):
    for args in (["predict", tmp_path / "nope.png", "--model-dir", trained_cnn[0]],
                 ["predict", INFER_3, "--model-dir", tmp_path],
                 ["train", "--epochs", "0", "--sample", "--save-dir", tmp_path],
                 ["train", "--batch-size", "0", "--sample", "--save-dir", tmp_path],
                 ["predict", INFER_3, "--model-dir", trained_cnn[0], "--threads", "0"],
                 ["train", "--data-dir", tmp_path, "--save-dir", tmp_path]):
        proc = run(*args, check=False)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().startswith("recognize-digits: error:"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "recognize-digits")
    assert subprocess.run([script, "--help"], capture_output=True).returncode == 0


def test_download_command(tmp_path, monkeypatch, file_server, capsys):
    served, url = file_server
    write_mnist(served)
    monkeypatch.setattr(download, "FILES", {p.name: hashlib.md5(p.read_bytes()).hexdigest()
                                        for p in served.iterdir()})
    monkeypatch.setattr(download, "PADDLE_CACHE", tmp_path / "cache")
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    assert cli.main(["download", "--mirror", url]) == 0
    assert str(tmp_path / "cache") in capsys.readouterr().out
    assert len(list((tmp_path / "cache").iterdir())) == 4
    # a second call finds it without downloading
    assert cli.main(["download", "--mirror", "http://127.0.0.1:9/"]) == 0


def test_evaluate_report(trained_cnn, sample, tmp_path):
    from PIL import Image

    proc = run("evaluate", "--model-dir", trained_cnn[0], "--sample", "--report", tmp_path / "r")
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    confusion = report["confusion"]
    assert len(confusion) == 10 and sum(map(sum, confusion)) == 1000
    assert [sum(row) for row in confusion] == [int((sample.test_labels == d).sum()) for d in range(10)]
    wrong = 1000 - sum(confusion[d][d] for d in range(10))
    assert report["accuracy"] == pytest.approx(1 - wrong / 1000)
    mistakes = report["most_confident_mistakes"]
    assert len(mistakes) == min(24, wrong) and all(m["true"] != m["predicted"] for m in mistakes)
    assert [m["probability"] for m in mistakes] == sorted((m["probability"] for m in mistakes),
                                                          reverse=True)
    for name in ("confusion.png", "mistakes.png"):
        with Image.open(tmp_path / "r" / name) as im:
            assert im.format == "PNG" and im.width > 300
    assert "accuracy (%)" in proc.stdout and "true \\ predicted" in proc.stdout


def test_compare(tmp_path):
    from PIL import Image

    proc = run("compare", "--sample", "--epochs", "1", "--out", tmp_path / "cmp")
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "sample" in table and table in proc.stdout + "\n"
    rows = [line for line in table.splitlines() if line.startswith("| ") and "%" in line]
    assert [row.split(" | ")[0] for row in rows] == ["| softmax", "| mlp", "| cnn"]
    with Image.open(tmp_path / "cmp" / "accuracy.png") as im:
        assert im.format == "PNG"
    for name in ("softmax", "mlp", "cnn"):
        assert (tmp_path / "cmp" / name / "model.json").is_file()


BAD_OPTIONS = [  # every sub-command, every kind of mistake: (arguments, what the line says)
    (["train", "--model", "lenet"], "invalid choice: 'lenet'"),
    (["train", "--epochs", "0", "--sample"], "error: --epochs 0: must be > 0"),
    (["train", "--epochs", "two"], "invalid int value"),
    (["train", "--batch-size", "-5", "--sample"], "error: --batch-size -5: must be > 0"),
    (["train", "--lr", "nan", "--sample"], "error: --lr nan: must be > 0"),
    (["train", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["train", "--device", "gpu", "--sample"], "no GPU: this Paddle build has no CUDA or sees no "
     "GPU; use --device cpu or --device auto"),
    (["train", "--validation", "-1", "--sample"], "error: --validation -1: must be a whole number"),
    (["train", "--validation", "3000", "--sample"], "from 0 to 2999"),
    (["train", "--seed", "-3", "--sample"], "error: --seed -3: must be a whole number"),
    (["train", "--threads", "0", "--sample"], "error: --threads 0: must be > 0"),
    (["train", "--sample", "--save-dir", "."], "cannot be the current folder"),
    (["train", "--sample", "--save-dir", ".."], "cannot be the current folder"),
    (["train", "--sample", "--save-dir", "/"], "cannot be the current folder"),
    (["train", "--sample", "--save-dir", "{file}"], "is a file, not a folder; choose another "
     "--save-dir DIR"),
    (["train", "--sample", "--plot", "curves.txt"], "end the name with .png"),
    (["train", "--data-dir", "{tmp}"], "does not hold the MNIST files"),
    (["train", "--sample", "--resume"], "no checkpoint to resume from; start a new training "
     "without --resume"),
    (["compare", "--epochs", "-1", "--sample"], "error: --epochs -1: must be > 0"),
    (["compare", "--sample", "--out", "{file}"], "is a file, not a folder; choose another --out"),
    (["evaluate", "--model-dir", "{tmp}/none"], "no such folder"),
    (["evaluate", "--model-dir", "{tmp}"], "no saved model"),
    (["evaluate", "--sample", "--report", "{file}"], "is a file, not a folder"),
    (["evaluate", "--threads", "-1"], "error: --threads -1: must be > 0"),
    (["predict"], "the following arguments are required: IMAGE"),
    (["predict", "{tmp}/none.png"], "no such file"),
    (["predict", "{file}"], "cannot read it as an image"),
    (["predict", "{tmp}"], "is a folder, not an image"),
    (["predict", "--threads", "many", "x.png"], "invalid int value"),
    # more OpenMP threads than cores is refused before OpenMP aborts with a C++ trace
    (["predict", "--threads", "100000", "x.png"], "error: --threads 100000: this process may "
     "use"),
    (["train", "--threads", "100000", "--sample"], "or fewer"),
    (["serve", "--port", "70000"], "not a port number from 0 to 65535"),
    (["serve", "--port", "-1"], "not a port number"),
    (["serve", "--port", "http"], "not a port number"),
    (["serve", "--model-dir", "{tmp}/none"], "no such folder"),
    (["serve", "--corrections", "{file}"], "is a file, not a folder; choose another "
     "--corrections DIR"),
    (["fly"], "invalid choice: 'fly'"),
]


@pytest.mark.parametrize("args, message", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_every_mistake_is_one_line_without_traceback(args, message, trained_cnn, tmp_path,
                                                     monkeypatch, capsys):
    (tmp_path / "file").write_text("not a model, not an image")
    args = [a.format(tmp=tmp_path, file=tmp_path / "file") for a in args]
    if args[0] == "train" and "--save-dir" not in args:
        args += ["--save-dir", str(tmp_path / "model")]
    if args[0] in ("evaluate", "predict") and "--model-dir" not in args:
        args += ["--model-dir", str(trained_cnn[0])]
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main(args)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code in (1, 2) and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert re.match(r"recognize-digits( \w+)?: error: ", err) and message in err
    assert not re.search(r"\b[a-z_]+=", err)  # no Python argument on the command line
    assert not (tmp_path / "model").exists()  # a refused training leaves no folder behind


def test_port_and_save_dir_checks_come_before_any_work(trained_cnn, tmp_path, monkeypatch):
    # nothing of the model in the current folder is touched by a refused --save-dir .
    monkeypatch.chdir(trained_cnn[0])
    before = sorted(os.listdir("."))
    assert cli.main(["train", "--sample", "--epochs", "1", "--save-dir", "."]) == 1
    assert sorted(os.listdir(".")) == before


def test_resume_follows_the_checkpoints_settings(sample, tmp_path, monkeypatch, capsys):
    import signal

    import tqdm

    from recognize_digits.figures import plot
    from recognize_digits.errors import TrainingInterrupted
    from recognize_digits.events import StepEvent
    from recognize_digits.training import train

    def ctrl_c_at_batch_5(event):
        if isinstance(event, StepEvent) and event.batch_id == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train("softmax", epochs=2, batch_size=32, data=sample, save_dir=tmp_path / "m", seed=1,
              event_handler=ctrl_c_at_batch_5, log=lambda *a: None)

    bars, titles = [], []

    class Bar(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            bars.append((kwargs["total"], kwargs["initial"]))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    curves_init = plot.CostCurves.__init__
    monkeypatch.setattr(plot.CostCurves, "__init__", lambda self, title, **kw: (
        titles.append(title), curves_init(self, title, **kw))[1])
    # the command line's own defaults (cnn, batch 64, 5 passes) must not apply
    assert cli.main(["train", "--resume", "--sample", "--save-dir", str(tmp_path / "m"),
                     "--plot", str(tmp_path / "curves.png")]) == 0
    assert titles == ["softmax on the MNIST sample"]
    assert bars == [(86, 6), (86, 0)]  # ceil(2,750 / 32) batches; pass 0 resumes at batch 6
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert (metrics["model"], metrics["batch_size"], len(metrics["passes"])) == ("softmax", 32, 2)
    assert "Resuming softmax at pass 0, batch 6" in capsys.readouterr().out


def test_evaluate_your_own_folder_of_digits(trained_cnn, sample, tmp_path, capsys):
    from PIL import Image

    from recognize_digits.own_digits.handwriting import user_like

    rng = np.random.default_rng(5)
    folder = tmp_path / "mine"
    for i in range(30):  # half in sub-folders 0-9, half named after their digit
        digit, label = sample.test_images[i], int(sample.test_labels[i])
        path = folder / str(label) / f"scan{i}.png" if i % 2 else folder / f"{label}_photo{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(user_like(digit, rng)).save(path)
    (folder / "notes.txt").write_text("not an image, not labelled: ignored")
    (folder / "7_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # labelled but unreadable

    assert cli.main(["evaluate", "--model-dir", str(trained_cnn[0]), "--images", str(folder),
                     "--report", str(tmp_path / "r")]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"Accuracy \d+\.\d\d% on 30 of your images in .* \(1 skipped\)", out)
    assert "skipped" in err and "7_broken.png" in err and "cannot read it as an image" in err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["images"] == 30
    assert [sum(row) for row in report["confusion"]] == np.bincount(
        sample.test_labels[:30], minlength=10).tolist()
    for mistake in report["most_confident_mistakes"]:
        assert mistake["true"] != mistake["predicted"] and Path(mistake["image"]).is_file()
    if report["most_confident_mistakes"]:
        assert (tmp_path / "r" / "mistakes.png").is_file()
    assert "accuracy (%)" in out and "true \\ predicted" in out


def test_evaluate_images_needs_labelled_images(trained_cnn, tmp_path, capsys):
    (tmp_path / "unlabelled.png").write_bytes(b"")
    for folder, message in ((tmp_path, "no labelled images; put them in sub-folders 0 to 9"),
                            (tmp_path / "none", "no such folder")):
        assert cli.main(["evaluate", "--model-dir", str(trained_cnn[0]), "--images",
                         str(folder)]) == 1
        assert message in capsys.readouterr().err


def test_serve_says_where_corrections_go_and_how_to_learn_from_them(trained_cnn, monkeypatch,
                                                                   capsys):
    from http.server import ThreadingHTTPServer

    def stop_at_once(self, *args, **kwargs):  # as if Ctrl-C came right after the start
        raise KeyboardInterrupt

    monkeypatch.setattr(ThreadingHTTPServer, "serve_forever", stop_at_once)
    model_dir = trained_cnn[0]
    assert cli.main(["serve", "--model-dir", str(model_dir), "--port", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2  # no advice the measurements do not bear out (issue 22, point 5)
    assert lines[0].startswith("Drawings you label on the page are kept in my_digits; ")
    assert f"'recognize-digits finetune --model-dir {model_dir} --images my_digits" in lines[0]
    assert lines[1].startswith("Draw a digit at http://127.0.0.1:")


def test_predict_goes_on_past_an_image_it_cannot_read(trained_cnn, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n")
    proc = run("predict", INFER_3, broken, INFER_3, "--model-dir", trained_cnn[0], check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert [line.split(":")[0] for line in proc.stdout.splitlines()] == [str(INFER_3)] * 2
    assert proc.stderr.strip() == f"recognize-digits: error: {broken}: cannot read it as an " \
        f"image (cannot identify image file '{broken}'); is it a complete PNG, JPEG or other picture?"
    proc = run("predict", broken, INFER_3, "--model-dir", trained_cnn[0], "--json", check=False)
    first, second = json.loads(proc.stdout)
    assert proc.returncode == 1 and first["image"] == str(broken) and "cannot read" in first["error"]
    assert second["digit"] == 3


def test_resume_refuses_options_other_than_the_checkpoints(sample, tmp_path, capsys):
    import signal

    from recognize_digits.errors import TrainingInterrupted
    from recognize_digits.events import StepEvent
    from recognize_digits.training import train

    def ctrl_c_at_batch_2(event):
        if isinstance(event, StepEvent) and event.batch_id == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train("softmax", epochs=2, data=sample, save_dir=tmp_path / "m", seed=1,
              event_handler=ctrl_c_at_batch_2, log=lambda *a: None)
    resume = ["train", "--resume", "--save-dir", str(tmp_path / "m")]
    for extra, message in ((["--sample", "--model", "cnn", "--epochs", "5"],
                            "--model cnn (it has 'softmax'); --epochs 5 (it has 2)"),
                           (["--sample", "--augment"], "--augment (it has False)"),
                           (["--sample", "--lr", "0.01"], "--lr 0.01 (it has 0.001)"),
                           (["--data-dir", str(write_mnist(tmp_path / "other"))],
                            "not on " + str(tmp_path / "other"))):
        assert cli.main(resume + extra) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert cli.main(resume + ["--sample", "--model", "softmax", "--epochs", "2"]) == 0


def test_every_option_has_help(capsys):
    """Each option and argument of every command says what it is for."""
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, command in commands.items():
        for action in command._actions:
            if action.dest != "help":
                assert action.help and len(action.help) > 12, (name, action.option_strings or
                                                               action.dest)
    train_help = commands["train"].format_help()
    assert "train, validation and test cost curves" in " ".join(train_help.split())
    assert "random seed, recorded in metrics.json" in " ".join(train_help.split())


def test_sigterm_stops_training_like_ctrl_c(tmp_path):
    import signal

    save_dir = tmp_path / "model"
    proc = subprocess.Popen([sys.executable, "-m", "recognize_digits", "train", "--model", "mlp",
                             "--epochs", "20", "--sample", "--seed", "1", "--save-dir", save_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().startswith("Training mlp")
        assert proc.stdout.readline().startswith("Pass 0: train cost")  # inside the loop
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "FatalError" not in err and "Traceback" not in err
    assert "recognize-digits: stopped: stopped at pass" in err
    assert (save_dir / "checkpoint" / "state.json").is_file()
    assert run("train", "--resume", "--sample", "--save-dir", save_dir).returncode == 0


# Ctrl-C while Paddle loads, made certain: the import of paddle is what it interrupts
INTERRUPTED_IMPORT = """
import builtins, sys
real_import = builtins.__import__
def interrupted(name, *args, **kwargs):
    if name == "paddle":
        raise KeyboardInterrupt
    return real_import(name, *args, **kwargs)
builtins.__import__ = interrupted
from recognize_digits.cli import main
sys.exit(main(["predict", "x.png"]))
"""


def test_ctrl_c_in_the_first_second_is_one_line(tmp_path):
    # importing the package loads no Paddle, so the command's own handler is in place
    proc = subprocess.run([sys.executable, "-c", INTERRUPTED_IMPORT], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 130 and proc.stderr == "recognize-digits: interrupted\n", proc.stderr


def test_predict_with_standard_input_closed(trained_cnn, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "recognize_digits", "predict", "-", "--model-dir",
                           str(trained_cnn[0])], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, stdin=subprocess.DEVNULL,
                          preexec_fn=lambda: os.close(0))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "standard input: closed; pipe an image in" in proc.stderr


def test_file_names_that_are_not_utf_8_or_hold_a_newline_are_printed_on_one_line(
        trained_cnn, tmp_path):
    import shutil

    folder = tmp_path / "mine"
    folder.mkdir()
    # a 3 labelled 5: a confident mistake, drawn with its name in mistakes.png
    for name in (b"5_bad\xff\xfename.png", b"3_new\nline.png", b"3_plain.png"):
        shutil.copy(INFER_3, os.path.join(os.fsencode(folder), name))
    names = sorted(str(p) for p in folder.iterdir())
    command = [sys.executable, "-m", "recognize_digits"]
    proc = subprocess.run([*command, "predict", *names, "--model-dir", str(trained_cnn[0])],
                          capture_output=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    lines = proc.stdout.decode().splitlines()
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 3 and f"{folder}/3_new\\nline.png: 3 (" in lines[0]
    assert lines[2].startswith(f"{folder}/5_bad\\xff\\xfename.png: 3 (")
    proc = subprocess.run([*command, "evaluate", "--model-dir", str(trained_cnn[0]), "--images",
                           str(folder), "--report", str(tmp_path / "r")], capture_output=True,
                          timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [m["image"] for m in report["most_confident_mistakes"]] == \
        [f"{folder}/5_bad\\xff\\xfename.png"]
    assert (tmp_path / "r" / "mistakes.png").is_file()
