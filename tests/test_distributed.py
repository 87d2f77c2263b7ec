"""Data-parallel training (recognize_digits.distributed): N workers train as one process.

Every test here starts real worker processes (gloo on this machine's CPU), bounded in
time, and checks that none is left running.
"""

import json
import os
import shutil
import signal
import subprocess
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import paddle
import pytest

from conftest import INFER_3, subset
from recognize_digits.engines import compare, workers
from recognize_digits.engines import parallel as distributed
from recognize_digits.cli import main
from recognize_digits.data import batches, normalize
from recognize_digits.errors import ConfigError, WorkerError, TrainingInterrupted
from recognize_digits.infer import InferenceModel, load_image
from recognize_digits.settings import Settings
from recognize_digits.events import StepEvent
from recognize_digits.plumbing.fast_cpu import CORES
from recognize_digits.training import train

pytestmark = pytest.mark.skipif(distributed.available_cores() < 2 and not os.environ.get("CI"),
                                reason="needs 2 cores: one a worker")

HERE = Path(__file__).resolve().parent


# in the environment of every process these tests start, to tell them from others' on the
# machine (a worker outlives its starter by being reparented, so is no child of ours)
MARK = f"RECOGNIZE_DIGITS_TESTED_BY={os.getpid()}"
os.environ.update([MARK.split("=")])


def workers_running():
    """This process's worker processes (and the launchers'), by pid."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = stat.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            mine = MARK.encode() in (stat.parent / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if mine and ("recognize_digits.engines.workers" in command
                     or "paddle.distributed.launch" in command):
            found.append(int(stat.parent.name))
    return found


@pytest.fixture(autouse=True)
def no_worker_left():
    before = set(workers_running())
    yield
    deadline = time.monotonic() + 5
    while set(workers_running()) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(workers_running()) - before, "a worker process was left running"


def rank_pid(rank):
    """The pid of this test's worker ``rank``."""
    for pid in workers_running():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"PADDLE_TRAINER_ID={rank}".encode() in environ:
            return pid
    raise LookupError(rank)


def events(when=lambda event: False, do=lambda: None):
    """An event handler recording batch costs, calling ``do()`` when ``when(event)``."""
    costs = []

    def handler(event):
        if isinstance(event, StepEvent):
            costs.append(event.cost)
            if when(event):
                do()
    handler.costs = costs
    return handler


def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)


def without_seconds(metrics):
    return {k: ([{**p, "seconds": 0} for p in v] if k == "passes" else v)
            for k, v in metrics.items()}


def close(a, b, tol=1e-5):
    """Metrics alike but for seconds, numbers to ``tol``."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - b) <= tol
    return a == b


@pytest.mark.parametrize("model", ["softmax", "mlp", "cnn"])
def test_workers_keep_identical_parameters_and_equal_one_process_without_batch_norm(model,
                                                                                    sample):
    steps = list(batches(sample.train_images[:640], sample.train_labels[:640], 64, True,
                         np.random.default_rng(0)))
    result = compare.lockstep(model, steps, workers=2)
    assert result["spread"] == [0.0] * len(steps)  # after every step, on every worker
    costs = np.abs(np.subtract(result["one"], result["several"]))
    if model == "cnn":  # batch norm normalises each half of a batch by the half's statistics
        assert 1e-4 < costs.max() < 0.1
    else:
        assert costs.max() < 1e-5 and result["difference"] < 1e-5


@pytest.fixture(scope="module")
def two_workers(sample, tmp_path_factory):
    """The MLP trained for two passes by 2 workers, seed 7: (save_dir, metrics, costs)."""
    save_dir = tmp_path_factory.mktemp("two") / "model"
    lines, handler = [], events()
    metrics = train("mlp", epochs=2, data=subset(sample, 800, 300), save_dir=save_dir, seed=7,
                    graph="dynamic", workers=2, event_handler=handler, log=lines.append)
    return save_dir, metrics, handler.costs, lines


def test_two_workers_train_as_one_process_and_write_once(two_workers, sample, tmp_path):
    save_dir, metrics, costs, lines = two_workers
    handler = events()
    alone = train("mlp", epochs=2, data=subset(sample, 800, 300), save_dir=tmp_path / "one",
                  seed=7, graph="dynamic", event_handler=handler, log=lambda *a: None)
    assert metrics["workers"] == 2 and alone["workers"] == 1
    assert close(without_seconds({**metrics, "workers": 1}), without_seconds(alone))
    assert np.allclose(costs, handler.costs, atol=1e-5)  # rank 0's events, each batch once
    assert lines[0] == "Training in 2 worker processes, each batch of 64 split into 32, 32 images"
    assert sum(line.startswith("Best pass is") for line in lines) == 1
    assert sorted(p.name for p in save_dir.iterdir()) == [
        "metrics.json", "model.json", "model.pdiparams", "model.sha256"]
    assert json.loads((save_dir / "metrics.json").read_text()) == metrics


def test_batch_norm_statistics_are_averaged_before_testing_and_saving(sample, tmp_path):
    data = subset(sample, 640, 500)
    metrics = train("cnn", epochs=1, data=data, save_dir=tmp_path, seed=0, validation=0,
                    graph="dynamic", workers=2, event_handler=lambda e: None,
                    log=lambda *a: None)
    # the saved model, run by one process, scores what the workers measured together
    digits, _ = InferenceModel(tmp_path).predict(normalize(data.test_images))
    accuracy = float(np.mean(digits == data.test_labels))
    assert accuracy == pytest.approx(metrics["passes"][0]["test_acc"], abs=1e-9)


def test_ctrl_c_stops_every_worker_at_one_batch_and_resume_goes_on_in_one(two_workers, sample,
                                                                         tmp_path, monkeypatch):
    _, expected, expected_costs, _ = two_workers
    data = subset(sample, 800, 300)
    first = events(lambda e: (e.pass_id, e.batch_id) == (0, 3), ctrl_c)
    with pytest.raises(TrainingInterrupted, match=r"stopped at pass \d, batch \d+"):
        train("mlp", epochs=2, data=data, save_dir=tmp_path, seed=7, graph="dynamic",
              workers=2, event_handler=first, log=lambda *a: None)
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["metrics"]["workers"] == 2 and len(first.costs) >= 4
    assert not (tmp_path / "model.json").exists() or state["pass_id"] > 0
    # on a machine with one core for them now: the checkpoint's 2 workers are refused, the
    # number suggested is accepted, and the training goes on in it as it would have in 2
    monkeypatch.setattr(distributed, "available_cores", lambda: 1)
    with pytest.raises(ConfigError, match=r"^workers=2: this process may use 1 cores, one a "
                                          r"worker; choose workers=1 or fewer$"):
        train(data=data, save_dir=tmp_path, resume=True, log=lambda *a: None)
    rest, lines = events(), []
    resumed = train(data=data, save_dir=tmp_path, resume=True, workers=1, event_handler=rest,
                    log=lines.append)
    assert lines[0].startswith("Resuming mlp at pass") and "worker processes" not in lines[0]
    assert np.allclose(first.costs + rest.costs, expected_costs, atol=1e-5)
    assert close(without_seconds(resumed), without_seconds({**expected, "workers": 1}), 1e-5)
    assert not (tmp_path / "checkpoint").exists()


def test_two_ctrl_c_blame_no_worker_and_keep_the_last_pass_s_checkpoint(two_workers, sample,
                                                                         tmp_path):
    _, expected, _, _ = two_workers
    data = subset(sample, 800, 300)
    twice = events(lambda e: (e.pass_id, e.batch_id) == (1, 2), lambda: (ctrl_c(), ctrl_c()))
    with pytest.raises(TrainingInterrupted) as stopped:
        train("mlp", epochs=2, data=data, save_dir=tmp_path, seed=7, graph="dynamic",
              workers=2, event_handler=twice, log=lambda *a: None)
    assert "worker" not in str(stopped.value)
    assert re.match(r"stopped at once by a second Ctrl-C; the checkpoint of pass 1, batch 0 "
                    r"is in .*: go on with resume=True|stopped at pass 1, batch \d+; a "
                    r"checkpoint is in ", str(stopped.value)), str(stopped.value)
    resumed = train(data=data, save_dir=tmp_path, resume=True, log=lambda *a: None)
    assert close(without_seconds(resumed), without_seconds(expected), 1e-5)


def test_a_second_ctrl_c_stops_the_workers_at_once_and_says_what_was_kept(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    with pytest.raises(TrainingInterrupted, match=r"^stopped at once by a second Ctrl-C; KEPT$"):
        workers.run_workers("distributed_targets:wait_for_ctrl_c", {}, 2, kept=lambda: "KEPT",
                            on_message=lambda kind, value: (ctrl_c(), ctrl_c()))


def test_a_stopped_worker_ends_the_run_named_with_what_it_last_did(two_workers, sample,
                                                                   tmp_path, monkeypatch):
    _, expected, _, _ = two_workers
    data = subset(sample, 800, 300)
    monkeypatch.setattr(workers, "SILENT_SECONDS", 8)
    stopped = []

    def stop_rank_1():
        if not stopped:
            stopped.append(time.monotonic())
            os.kill(rank_pid(1), signal.SIGSTOP)
    handler = events(lambda e: (e.pass_id, e.batch_id) == (1, 2), stop_rank_1)
    with pytest.raises(WorkerError, match=(
            r"^worker 1 of 2 stopped answering (8|9|1\d) s ago, after pass 1 batch \d+; every "
            r"worker was stopped; the checkpoint of pass 1, batch 0 is in .*checkpoint: go on "
            r"with resume=True and save_dir=.* \(and the same data\)$")):
        train("mlp", epochs=2, data=data, save_dir=tmp_path, seed=7, graph="dynamic",
              workers=2, event_handler=handler, log=lambda *a: None)
    assert time.monotonic() - stopped[0] < workers.SILENT_SECONDS + 10
    resumed = train(data=data, save_dir=tmp_path, resume=True, log=lambda *a: None)
    assert close(without_seconds(resumed), without_seconds(expected), 1e-5)  # in 2 again


def test_a_worker_that_dies_stops_the_training_within_seconds(sample, tmp_path):
    killed = []

    def kill_rank_1():
        if not killed:
            killed.append(time.monotonic())
            os.kill(rank_pid(1), signal.SIGKILL)
    handler = events(lambda e: e.batch_id == 2, kill_rank_1)
    with pytest.raises(WorkerError, match=(
            r"^worker 1 of 2 was killed by signal 9 \(SIGKILL\); every worker was stopped; "
            r"nothing to go on from \(a checkpoint is written after every pass\)$")):
        train("mlp", epochs=3, data=subset(sample, 2000, 100), save_dir=tmp_path / "model",
              seed=1, graph="dynamic", workers=2, event_handler=handler, log=lambda *a: None)
    assert time.monotonic() - killed[0] < workers.GRACE_SECONDS + 3
    # nothing half-written: no model yet, or the last whole pass's (rank 0 runs ahead of
    # the events that reach this process)
    assert sorted(p.name for p in tmp_path.iterdir()) in ([".model.lock"],
                                                          [".model.lock", "model"])
    if (tmp_path / "model" / "metrics.json").exists():
        assert len(json.loads((tmp_path / "model" / "metrics.json").read_text())["passes"]) < 3
        InferenceModel(tmp_path / "model")
    else:  # no pass was saved: no folder was left behind either
        assert not (tmp_path / "model").exists()


def test_a_worker_that_fails_is_named_with_its_error(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    with pytest.raises(WorkerError,
                       match=r"^worker 1 of 2 failed: no such thing; every worker was stopped$"):
        workers.run_workers("distributed_targets:fail_on_rank_1", {}, 2)


def test_the_package_s_own_errors_come_back_as_they_are(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    with pytest.raises(ConfigError, match="^a config error in rank 0$"):
        workers.run_workers("distributed_targets:config_error", {}, 2)


def test_workers_are_refused_beyond_the_cores_the_static_graph_and_the_batch(sample, tmp_path,
                                                                           monkeypatch):
    options = dict(data=sample, save_dir=tmp_path / "m", graph="dynamic")
    monkeypatch.setattr(distributed, "available_cores", lambda: 1)
    with pytest.raises(ConfigError, match=r"^workers=2: this process may use 1 cores, one a "
                                          r"worker; choose workers=1 or fewer$"):
        train(workers=2, **options)
    with pytest.raises(ConfigError, match="trains the dynamic graph.*add graph='dynamic'"):
        train(workers=2, **{**options, "graph": "static"})
    monkeypatch.setattr(distributed, "available_cores", lambda: 16)
    with pytest.raises(ConfigError, match="^a batch of 4 cannot be split over 8 workers; "
                                          "choose workers=4 or fewer$"):
        train(workers=8, batch_size=4, **options)
    with pytest.raises(ConfigError, match="workers=0: must be > 0"):
        train(workers=0, **options)
    assert not (tmp_path / "m").exists()


def test_the_cli_refuses_too_many_workers_in_one_line(capsys, tmp_path):
    code = main(["train", "--sample", "--graph", "dynamic", "--workers", "64",
                 "--save-dir", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("recognize-digits: error: --workers 64: this process may use ")


def test_too_many_workers_are_told_a_number_that_is_accepted(capsys, tmp_path):
    code = main(["train", "--sample", "--graph", "dynamic", "--workers", "999",
                 "--save-dir", str(tmp_path / "m")])
    err = capsys.readouterr().err
    suggested = int(re.search(r"choose --workers (\d+) or fewer$", err.strip()).group(1))
    assert code == 1 and err.count("\n") == 1 and "--workers 999: this process may use" in err
    assert distributed.check_workers(Settings(workers=suggested, graph="dynamic")) == suggested


def test_a_killed_worker_s_cause_is_its_own_last_error_never_a_banner(tmp_path):
    log = tmp_path / "worker1.log"
    log.write_text("I1205 14:03:55.123 gloo.cc:12] started\n" + "=" * 40 + "\n")
    assert workers._ended(-signal.SIGKILL, log) == "was killed by signal 9 (SIGKILL)"
    log.write_text(
        "terminate called after throwing an instance of 'gloo::IoException'\n"
        "  what():  [pair.cc:534] Connection closed by peer [127.0.0.1]:41234\n\n"
        "--------------------------------------\nC++ Traceback (most recent call last):\n"
        "--------------------------------------\n0   paddle::distributed::ProcessGroupGloo::x\n"
        "----------------------\nError Message Summary:\n----------------------\n"
        "FatalError: `Process abort signal` is detected by the operating system.\n"
        "  [TimeInfo: *** Aborted at 1764943435 (unix time) try \"date -d @1764943435\" ***]\n"
        "  [SignalInfo: *** SIGABRT (@0x3e800001234) received by PID 4660 (TID 0x7f) ***]\n")
    assert workers._ended(-signal.SIGABRT, log) == (
        "was killed by signal 6 (SIGABRT): [pair.cc:534] Connection closed by peer "
        "[127.0.0.1]:41234")
    log.write_text("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                   "MemoryError: out of memory\n")
    assert workers._ended(1, log) == "exited with 1: MemoryError: out of memory"


def test_a_killed_starter_s_job_files_are_removed_at_the_next_start(sample, tmp_path,
                                                                     monkeypatch):
    before, scratch = set(workers_running()), tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with open(tmp_path / "starter.err", "wb") as err:
        starter = subprocess.Popen(
            [sys.executable, "-c", "from recognize_digits.training import train; train("
             "'softmax', sample=True, graph='dynamic', workers=2, epochs=100, save_dir='model', "
             "log=print, event_handler=lambda e: None)"], cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
            # every core back (a process that has trained is bound to one), as a new kernel has
            preexec_fn=lambda: os.sched_setaffinity(0, CORES))
    try:
        deadline = time.monotonic() + 120
        # under way: every worker has read the job (then it is removed), rank 1 has a folder
        while not (list(scratch.glob("recognize-digits-worker-*/model")) and
                   list(scratch.glob("recognize-digits-workers-*/worker1.log")) and
                   not list(scratch.glob("recognize-digits-workers-*/job.pickle"))):
            assert starter.poll() is None, (tmp_path / "starter.err").read_text()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        starter.kill()  # as a Jupyter kernel restart does
        starter.wait()
    deadline = time.monotonic() + 10
    while set(workers_running()) - before and time.monotonic() < deadline:
        time.sleep(0.1)  # its workers die with it (killed by the system), their folders stay
    left = sorted(p.name.rsplit("-", 1)[0] for p in scratch.iterdir())
    assert left == ["recognize-digits-worker", "recognize-digits-workers"]
    train("softmax", epochs=1, data=subset(sample, 200, 100), save_dir=tmp_path / "again",
          graph="dynamic", workers=2, event_handler=lambda e: None, log=lambda *a: None)
    assert not list(scratch.iterdir())


def test_gpu_workers_get_one_gpu_each_and_nccl(monkeypatch):
    env = workers.worker_env(1, 2, [9000, 9001, 9002], gpu=True)
    assert env["FLAGS_selected_gpus"] == "1" and env["PADDLE_DISTRI_BACKEND"] == "nccl"
    assert env["PADDLE_CURRENT_ENDPOINT"] == "127.0.0.1:9002"
    assert env["PADDLE_MASTER"] == "127.0.0.1:9000" and env["OMP_NUM_THREADS"] == "1"
    cpu = workers.worker_env(0, 2, [9000, 9001, 9002], gpu=False)
    assert cpu["PADDLE_DISTRI_BACKEND"] == "gloo" and "FLAGS_selected_gpus" not in cpu
    monkeypatch.setattr(paddle.device.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(distributed, "uses_gpu", lambda settings: True)
    with pytest.raises(ConfigError, match="this process may use 1 GPUs"):
        distributed.check_workers(Settings(workers=2, graph="dynamic"))
    assert distributed.check_workers(Settings(workers=1, graph="dynamic")) == 1


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0 and bool(shutil.which("ip")),
                    reason="as root, tests/test_machines.py runs the launcher on two real hosts")
def test_two_machines_through_paddle_s_launcher_on_loopback(tmp_path):
    """Two launchers, each a 'machine' of one worker, as the README's commands start them
    (where network namespaces cannot be made: not root)."""
    port = workers._free_ports(1)[0]
    script = Path(sys.executable).with_name("recognize-digits")
    launchers = [subprocess.Popen(
        [sys.executable, "-m", "paddle.distributed.launch", "--nnodes", "2", "--master",
         f"127.0.0.1:{port}", "--nproc_per_node", "1", "--log_dir", str(tmp_path / f"log{node}"),
         str(script), "train", "--sample", "--model", "softmax", "--graph", "dynamic",
         "--epochs", "1", "--seed", "0", "--save-dir", str(tmp_path / "model")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        for node in range(2)]
    try:
        outputs = [launcher.communicate(timeout=150)[0].decode(errors="replace")
                   for launcher in launchers]
    finally:
        for launcher in launchers:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
    assert [launcher.returncode for launcher in launchers] == [0, 0], outputs
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["graph"] == "dynamic"
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "metrics.json", "model.json", "model.pdiparams", "model.sha256"]
    _, probabilities = InferenceModel(tmp_path / "model").predict(load_image(INFER_3))
    assert probabilities.shape == (1, 10)
