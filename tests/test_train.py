import importlib
import json
import os
import re
import signal
from unittest import mock

import numpy as np
import paddle
import pytest

from recognize_digits.data import batches, load_mnist
from recognize_digits.errors import ConfigError
from recognize_digits.infer import InferenceModel, evaluate
from recognize_digits.plumbing import fast_cpu as speed
from recognize_digits.errors import TrainingInterrupted
from recognize_digits.plumbing.fast_cpu import use_onednn_kernels
from recognize_digits.static_graph import StaticEngine
from recognize_digits.engine import select_place
from recognize_digits.events import PassEvent, StepEvent
from recognize_digits.static_graph import Programs
from recognize_digits.training import train

from conftest import full_mnist_dir, quiet, subset

# the module (the package's own `train` attribute is the function)
training = importlib.import_module("recognize_digits.training")


def test_training_lowers_the_loss(trained_cnn):
    save_dir, metrics = trained_cnn
    first, *_, last = metrics["passes"]
    assert last["train_cost"] < first["train_cost"] < np.log(10)
    assert last["test_acc"] > 0.88  # three passes over 2,750 sample digits
    saved = json.loads((save_dir / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["model"] == "cnn" and "sample" in saved["data"]


def test_event_handler_and_default_log(sample, tmp_path):
    events, lines = [], []
    data = subset(sample, 300)
    train("softmax", epochs=2, data=data, save_dir=tmp_path, seed=1,
          event_handler=events.append, log=lines.append)
    steps = [e for e in events if isinstance(e, StepEvent)]
    passes = [e for e in events if isinstance(e, PassEvent)]
    assert [(e.pass_id, e.batch_id) for e in steps] == [(p, b) for p in range(2) for b in range(5)]
    assert [e.pass_id for e in passes] == [0, 1] and events[5] is passes[0]
    assert lines[0].startswith("Best pass is") and "%" in lines[1] and "sample" in lines[1]

    lines = []
    train("softmax", epochs=1, data=data, save_dir=tmp_path, seed=1, log=lines.append)
    assert lines[0].startswith("Pass 0, Batch 0, Cost ")
    assert lines[1].startswith("Test with Pass 0, Cost ")


def test_same_seed_same_run(sample, tmp_path):
    data = subset(sample, 640)

    def costs(seed):
        events = []
        train("cnn", epochs=1, data=data, save_dir=tmp_path, seed=seed,
              event_handler=events.append, log=lambda *a: None)
        return [e.cost for e in events if isinstance(e, StepEvent)]

    first = costs(5)
    assert costs(5) == first
    assert costs(6) != first


def test_best_pass_is_chosen_on_validation_not_test(sample, tmp_path):
    # With the held-out validation labels shifted by one, better training means a worse
    # validation cost while the test cost improves: the first pass must be the one kept,
    # although the test set would have picked the last.
    data = subset(sample, 1200, 500)
    data.train_labels = data.train_labels.copy()
    data.train_labels[:200] = (data.train_labels[:200] + 1) % 10  # the first 200 are held out
    metrics = train("softmax", epochs=3, data=data, save_dir=tmp_path, seed=2, validation=200,
                    **quiet())
    val_costs = [p["val_cost"] for p in metrics["passes"]]
    test_costs = [p["test_cost"] for p in metrics["passes"]]
    assert metrics["best_pass"] == int(np.argmin(val_costs)) == 0
    assert int(np.argmin(test_costs)) == 2
    cost, acc = evaluate(InferenceModel(tmp_path), data.test_images, data.test_labels)
    assert cost == pytest.approx(test_costs[0], rel=1e-4)
    assert acc == pytest.approx(metrics["passes"][0]["test_acc"], abs=1e-6)


def test_validation_is_held_out_of_training(sample, tmp_path):
    events = []
    metrics = train("softmax", epochs=1, data=subset(sample, 1200), save_dir=tmp_path, seed=0,
                    event_handler=events.append, log=lambda *a: None)
    assert metrics["validation"] == 100 and metrics["chosen_by"] == "validation cost"
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert len(steps) == 18 and {e.batches for e in steps} == {18}  # ceil(1,100 / 64)
    assert 0 < metrics["passes"][0]["val_acc"] <= 1


def test_no_validation_keeps_the_last_pass(sample, tmp_path):
    data = subset(sample, 640)
    events = []
    metrics = train("softmax", epochs=3, data=data, save_dir=tmp_path, seed=2, validation=0,
                    event_handler=events.append, log=lambda *a: None)
    assert len([e for e in events if isinstance(e, StepEvent)]) == 30  # all 640 trained on
    assert metrics["best_pass"] == 2 and metrics["chosen_by"] == "last pass"
    assert metrics["passes"][2]["val_cost"] is None
    cost, _ = evaluate(InferenceModel(tmp_path), data.test_images, data.test_labels)
    assert cost == pytest.approx(metrics["passes"][2]["test_cost"], rel=1e-4)


def test_test_pass_weighs_a_smaller_last_batch(sample):
    # 1,250 images are a batch of 1,000 and one of 250: the mean must be over images.
    images = np.concatenate([sample.test_images, sample.test_images[:250]])
    labels = np.concatenate([sample.test_labels, sample.test_labels[:250]])
    with StaticEngine.mode():
        engine = StaticEngine("softmax", 0.001, 4, paddle.CPUPlace())
        cost, acc = engine.test(images, labels)
        programs = engine.programs
        probs = np.concatenate([engine.exe.run(programs.test, fetch_list=[programs.test_predict],
                                               feed={"img": x, "label": y})[0]
                                for x, y in batches(images, labels, 125)])
    assert cost == pytest.approx(-np.log(probs[np.arange(1250), labels]).mean(), rel=1e-5)
    assert acc == np.mean(probs.argmax(axis=1) == labels)


def test_saved_model_reproduces_the_test_program(trained_cnn, sample):
    save_dir, metrics = trained_cnn
    best = metrics["passes"][metrics["best_pass"]]
    model = InferenceModel(save_dir)
    cost, acc = evaluate(model, sample.test_images, sample.test_labels)
    assert cost == pytest.approx(best["test_cost"], rel=1e-4)
    assert acc == pytest.approx(best["test_acc"], abs=1e-6)
    # loading again gives the very same probabilities
    x = next(batches(sample.test_images, sample.test_labels, 50))[0]
    np.testing.assert_array_equal(model.predict(x)[1], InferenceModel(save_dir).predict(x)[1])


@pytest.mark.parametrize("onednn", [False, True])
def test_batch_norm_uses_running_statistics_at_test_time(sample, onednn):
    paddle.enable_static()
    programs = Programs("cnn", seed=3)
    exe = paddle.static.Executor(paddle.CPUPlace())
    with paddle.static.scope_guard(paddle.static.Scope()):
        scope = paddle.static.global_scope()
        exe.run(programs.startup)
        if onednn:
            use_onednn_kernels(programs.main)
        mean_name = next(p.name for p in programs.main.global_block().all_parameters()
                         if p.stop_gradient and "batch_norm" in p.name)

        def running_mean():
            return np.array(scope.find_var(mean_name).get_tensor())

        before = running_mean()
        for x, y in list(batches(sample.train_images, sample.train_labels, 64))[:20]:
            exe.run(programs.main, feed={"img": x, "label": y}, fetch_list=[programs.avg_cost])
        assert not np.allclose(running_mean(), before)  # statistics are updated in training

        def test_probs(x):
            return exe.run(programs.test, feed={"img": x, "label": np.zeros((len(x), 1), np.int64)},
                           fetch_list=[programs.test_predict])[0]

        # At test time an image's prediction must not depend on the rest of its batch,
        # and running the test program must leave the statistics alone.
        x = next(batches(sample.test_images, sample.test_labels, 32))[0]
        stats = running_mean()
        np.testing.assert_allclose(test_probs(x)[:1], test_probs(x[:1]), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(running_mean(), stats)


def test_onednn_convolutions_train_like_plain_kernels(sample, tmp_path):
    # 1,000 images: 15 full batches and a partial one, then the test pass.
    data = subset(sample, 1000, 500)
    runs = {}
    for onednn in (False, True):
        events = []
        metrics = train("cnn", epochs=2, data=data, save_dir=tmp_path / str(onednn), seed=8,
                        validation=0, event_handler=events.append, log=lambda *a: None,
                        onednn=onednn)
        costs = [e.cost for e in events if isinstance(e, StepEvent)]
        probs = InferenceModel(tmp_path / str(onednn), onednn=False).predict(
            next(batches(data.test_images, data.test_labels, 500))[0])[1]
        runs[onednn] = costs, metrics, probs
    (plain_costs, plain, plain_probs), (fast_costs, fast, fast_probs) = runs[False], runs[True]
    assert plain["onednn"] is False and fast["onednn"] is True
    np.testing.assert_allclose(fast_costs, plain_costs, rtol=1e-4)
    for p, f in zip(plain["passes"], fast["passes"]):  # the test pass uses the BN statistics
        assert f["test_cost"] == pytest.approx(p["test_cost"], rel=1e-4)
        assert f["test_acc"] == pytest.approx(p["test_acc"], abs=2e-3)
    np.testing.assert_allclose(fast_probs, plain_probs, atol=1e-4)


def test_onednn_rewrites_only_the_convolutions_and_the_pooling():
    paddle.enable_static()
    programs = Programs("cnn", seed=0)
    exe = paddle.static.Executor(paddle.CPUPlace())
    with paddle.static.scope_guard(paddle.static.Scope()):
        exe.run(programs.startup)
        before = [op.name() for op in programs.main.global_block().ops]
        use_onednn_kernels(programs.main)
    after = [op.name() for op in programs.main.global_block().ops]
    assert after.count("onednn_op.conv2d") == 2 and "pd_op.conv2d" not in after
    # the image's convolution keeps the plain backward: it needs no input gradient
    assert after.count("onednn_op.conv2d_grad") == 1 and after.count("pd_op.conv2d_grad") == 1
    # the pooling's forward only: oneDNN's pooling gradient fails in PIR
    assert after.count("onednn_op.pool2d") == 2 and "pd_op.pool2d" not in after
    assert after.count("pd_op.pool2d_grad") == 2
    assert ([n.replace("onednn_op.pool2d", "pd_op.pool2d") for n in after if "conv2d" not in n]
            == [n for n in before if "conv2d" not in n])
    assert not any("onednn" in op.name() for op in programs.test.global_block().ops)


def test_the_test_passes_run_on_onednn_and_the_saved_program_stays_plain():
    paddle.enable_static()
    programs = Programs("cnn", seed=0)
    assert programs.evaluation[0] is programs.test  # the plain path tests on the test program
    assert speed.speed_up(programs, paddle.static.Executor(paddle.CPUPlace())) is None
    fast = [op.name() for op in programs.evaluation[0].global_block().ops]
    assert fast.count("onednn_op.conv2d") == 2 and "pd_op.conv2d" not in fast
    assert fast.count("onednn_op.pool2d") == 2
    assert not any("onednn" in op.name() for op in programs.test.global_block().ops)


def test_device_selection():
    assert isinstance(select_place("cpu"), paddle.CPUPlace)
    if not paddle.is_compiled_with_cuda():
        assert isinstance(select_place("auto"), paddle.CPUPlace)
        with pytest.raises(ConfigError, match="no GPU.*device='cpu'"):
            select_place("gpu")
    with mock.patch("paddle.is_compiled_with_cuda", return_value=True), \
            mock.patch("paddle.device.cuda.device_count", return_value=0):
        assert isinstance(select_place("auto"), paddle.CPUPlace)
        with pytest.raises(ConfigError, match="no GPU"):
            select_place("gpu")


class Reached(Exception):
    """Raised by a mock once the code under test has got where the test looks."""


@pytest.fixture
def one_gpu():
    """Paddle's CUDA detection mocked to see one GPU; CUDAPlace(i) recorded as ("gpu", i)."""
    with mock.patch("paddle.is_compiled_with_cuda", return_value=True), \
            mock.patch("paddle.device.cuda.device_count", return_value=1), \
            mock.patch("paddle.CUDAPlace", side_effect=lambda i: ("gpu", i)):
        yield


def test_training_runs_on_the_gpu_when_there_is_one(one_gpu, sample, tmp_path):
    places, tried_onednn = [], []

    def executor(place):
        places.append(place)
        return mock.Mock(run=mock.Mock(side_effect=Reached))  # stop at the first run

    for device in ("auto", "gpu", "cpu"):
        with mock.patch("paddle.static.Executor", side_effect=executor), \
                mock.patch("paddle.seed"), \
                mock.patch.object(speed, "speed_up", return_value=None) as speed_up, \
                pytest.raises(Reached):
            train("cnn", data=sample, save_dir=tmp_path, device=device, **quiet())
        tried_onednn.append(speed_up.called)
    assert places[:2] == [("gpu", 0), ("gpu", 0)] and isinstance(places[2], paddle.CPUPlace)
    assert tried_onednn == [False, False, True]  # oneDNN is the CPU's fast path only


def test_prediction_runs_on_the_gpu_when_there_is_one(one_gpu, trained_cnn):
    with mock.patch("paddle.inference.Config") as config, \
            mock.patch("paddle.inference.create_predictor", side_effect=Reached), \
            pytest.raises(Reached):
        InferenceModel(trained_cnn[0])
    config.return_value.enable_use_gpu.assert_called_once_with(256, 0)
    config.return_value.set_cpu_math_library_num_threads.assert_not_called()
    config.return_value.enable_onednn.assert_not_called()


def ctrl_c_at(when):
    """An event handler that presses Ctrl-C (a real SIGINT to this process) when
    ``when(event)`` is true, recording every batch cost it sees."""
    costs = []

    def handler(event):
        if isinstance(event, StepEvent):
            costs.append(event.cost)
        if when(event):
            os.kill(os.getpid(), signal.SIGINT)
    handler.costs = costs
    return handler


def without_seconds(metrics):
    return {k: ([{**p, "seconds": 0} for p in v] if k == "passes" else v)
            for k, v in metrics.items()}


@pytest.mark.parametrize("model, graph", [("mlp", "static"), ("cnn", "static"),
                                          ("mlp", "dynamic"), ("cnn", "dynamic")])
def test_resume_is_exact_in_the_same_process(model, graph, sample, tmp_path):
    data = subset(sample, 800, 300)  # 12 batches a pass (the last of 38), 66 held out
    whole = ctrl_c_at(lambda event: False)
    expected = train(model, epochs=2, data=data, save_dir=tmp_path / "whole", seed=7,
                     event_handler=whole, log=lambda *a: None, graph=graph)

    first = ctrl_c_at(lambda e: isinstance(e, StepEvent) and (e.pass_id, e.batch_id) == (0, 8))
    with pytest.raises(TrainingInterrupted, match="stopped at pass 0, batch 9"):
        train(model, epochs=2, data=data, save_dir=tmp_path / "cut", seed=7,
              event_handler=first, log=lambda *a: None, graph=graph)
    lines = []
    rest = ctrl_c_at(lambda event: False)
    resumed = train(data=data, save_dir=tmp_path / "cut", resume=True, event_handler=rest,
                    log=lines.append)
    assert lines[0] == f"Resuming {model} at pass 0, batch 9"
    assert first.costs + rest.costs == whole.costs  # exactly: no batch lost or repeated
    assert without_seconds(resumed) == without_seconds(expected)
    assert not (tmp_path / "cut" / "checkpoint").exists()


@pytest.mark.parametrize("graph", ["static", "dynamic"])
@pytest.mark.parametrize("validation", [None, 0])
@pytest.mark.parametrize("augment", [False, True])
def test_every_way_to_train_saves_a_model_and_resumes_exactly(graph, validation, augment, sample,
                                                              tmp_path):
    data = subset(sample, 300, 100)  # 5 batches a pass, 25 held out (or none)
    options = dict(epochs=2, data=data, seed=3, validation=validation, augment=augment,
                   graph=graph, log=lambda *a: None)
    whole = ctrl_c_at(lambda event: False)
    expected = train("softmax", save_dir=tmp_path / "whole", event_handler=whole, **options)
    first = ctrl_c_at(lambda e: isinstance(e, StepEvent) and (e.pass_id, e.batch_id) == (0, 1))
    with pytest.raises(TrainingInterrupted, match="stopped at pass 0, batch 2"):
        train("softmax", save_dir=tmp_path / "cut", event_handler=first, **options)
    rest = ctrl_c_at(lambda event: False)
    resumed = train(data=data, save_dir=tmp_path / "cut", resume=True, event_handler=rest,
                    log=lambda *a: None)
    assert first.costs + rest.costs == whole.costs
    assert without_seconds(resumed) == without_seconds(expected)
    if validation == 0:
        assert resumed["best_pass"] == 1 and resumed["chosen_by"] == "last pass"
    cost, _ = evaluate(InferenceModel(tmp_path / "cut"), data.test_images, data.test_labels)
    assert cost == pytest.approx(expected["passes"][expected["best_pass"]]["test_cost"], rel=1e-4)


@pytest.mark.parametrize("during", ["test", "save"])
def test_ctrl_c_during_the_test_pass_or_a_save_stops_after_it(during, sample, tmp_path,
                                                             monkeypatch):
    data = subset(sample, 500, 200)
    whole = train("softmax", epochs=3, data=data, save_dir=tmp_path / "whole", seed=1, **quiet())
    where, name = (StaticEngine, "test") if during == "test" else (training.Training, "save_model")
    original, calls = getattr(where, name), []

    def pressed_during(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(where, name, pressed_during)
    with pytest.raises(TrainingInterrupted, match="stopped at pass 1, batch 0"):
        train("softmax", epochs=3, data=data, save_dir=tmp_path / "cut", seed=1, **quiet())
    saved = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert len(saved["passes"]) == 1  # pass 0 was tested and saved before stopping
    monkeypatch.undo()
    resumed = train(data=data, save_dir=tmp_path / "cut", resume=True, **quiet())
    assert without_seconds(resumed) == without_seconds(whole)


def test_a_failing_fast_path_falls_back_to_the_plain_kernels(sample, tmp_path, monkeypatch):
    data = subset(sample, 640, 200)
    plain_events = []
    plain = train("cnn", epochs=1, data=data, save_dir=tmp_path / "plain", seed=3, onednn=False,
                  event_handler=plain_events.append, log=lambda *a: None)

    def broken_rewrite(program):  # as if a later Paddle renamed an attribute of conv2d
        raise ValueError("attribute 'paddings' not found in pd_op.conv2d")

    monkeypatch.setattr(speed, "use_onednn_kernels", broken_rewrite)
    events, lines = [], []
    metrics = train("cnn", epochs=1, data=data, save_dir=tmp_path / "fallback", seed=3,
                    event_handler=events.append, log=lines.append)
    assert "do not work on this Paddle (ValueError: attribute 'paddings'" in lines[0]
    assert "plain kernels" in lines[0] and "onednn=False" in lines[0]
    assert metrics["onednn"] is False and "paddings" in metrics["onednn_unavailable"]
    assert [e.cost for e in events if isinstance(e, StepEvent)] == [
        e.cost for e in plain_events if isinstance(e, StepEvent)]
    assert metrics["passes"][0]["test_cost"] == plain["passes"][0]["test_cost"]


def test_a_fast_path_that_fails_when_run_falls_back_too(sample, tmp_path, monkeypatch):
    original = speed.use_onednn_kernels

    def rewrite_then_break(program):  # accepted by the rewrite, refused by the executor
        original(program)
        monkeypatch.setattr(paddle.static.Executor, "run", broken_run)

    real_run = paddle.static.Executor.run

    def broken_run(self, program=None, *args, **kwargs):
        monkeypatch.setattr(paddle.static.Executor, "run", real_run)  # only this once
        raise RuntimeError("(Unimplemented) no kernel for onednn_op.conv2d_grad")

    data = subset(sample, 320, 100)
    plain = train("cnn", epochs=1, data=data, save_dir=tmp_path / "plain", seed=3, onednn=False,
                  **quiet())
    monkeypatch.setattr(speed, "use_onednn_kernels", rewrite_then_break)
    lines = []
    metrics = train("cnn", epochs=1, data=data, save_dir=tmp_path / "fallback", seed=3,
                    event_handler=lambda event: None, log=lines.append)
    assert "no kernel for onednn_op.conv2d_grad" in lines[0]
    assert metrics["onednn"] is False
    assert without_seconds(metrics)["passes"] == without_seconds(plain)["passes"]


def test_prediction_falls_back_when_onednn_fails(trained_cnn, monkeypatch):
    from recognize_digits import infer
    from recognize_digits.errors import FallbackWarning

    def no_onednn(config, on):
        if on:
            raise RuntimeError("this Paddle's inference Config cannot turn oneDNN on")

    monkeypatch.setattr(infer, "set_onednn", no_onednn)
    with pytest.warns(FallbackWarning, match="cannot turn oneDNN on.*plain kernels"):
        model = InferenceModel(trained_cnn[0])
    assert model.onednn is False
    reference = InferenceModel(trained_cnn[0], onednn=False)
    x = np.zeros((40, 1, 28, 28), np.float32)
    np.testing.assert_array_equal(model.predict(x)[1], reference.predict(x)[1])


@pytest.mark.parametrize("options, message", [
    (dict(model="lenet"), "model='lenet': must be one of 'softmax', 'mlp', 'cnn'"),
    (dict(epochs=0), "epochs=0: must be > 0"),
    (dict(batch_size=-1), "batch_size=-1: must be > 0"),
    (dict(learning_rate=0.0), "learning_rate=0.0: must be > 0"),
])
def test_bad_options_are_refused(options, message, sample, tmp_path):
    with pytest.raises(ConfigError, match=message):
        train(data=sample, save_dir=tmp_path, **quiet(**options))


@pytest.mark.slow
@pytest.mark.skipif(full_mnist_dir() is None, reason="full MNIST not available")
def test_lenet_one_pass_on_full_mnist(tmp_path):
    metrics = train("cnn", epochs=1, data=load_mnist(full_mnist_dir()), save_dir=tmp_path,
                    seed=0, **quiet())
    assert metrics["passes"][0]["test_acc"] >= 0.975


def test_resume_refuses_settings_or_data_other_than_the_checkpoints(sample, tmp_path):
    from conftest import write_mnist

    data = subset(sample, 640)
    stop = ctrl_c_at(lambda e: isinstance(e, StepEvent) and (e.pass_id, e.batch_id) == (0, 2))
    with pytest.raises(TrainingInterrupted):
        train("softmax", epochs=2, data=data, save_dir=tmp_path, seed=1, event_handler=stop,
              log=lambda *a: None)
    for options, named in ((dict(model="mlp"), "model='mlp' (it has 'softmax')"),
                           (dict(epochs=3, learning_rate=0.01),
                            "epochs=3 (it has 2); learning_rate=0.01 (it has 0.001)"),
                           (dict(graph="dynamic"), "graph='dynamic' (it has 'static')"),
                           (dict(seed=2), "seed=2 (it has 1)")):
        with pytest.raises(ConfigError, match=re.escape(named)):
            train(data=data, save_dir=tmp_path, resume=True, **options, **quiet())
    other = load_mnist(write_mnist(tmp_path / "other", n_train=640, n_test=200))
    with pytest.raises(ConfigError, match="ran on sample .*, not on .*other; give the data "
                                          "options it started with"):
        train(data=other, save_dir=tmp_path, resume=True, **quiet())
    # what equals the checkpoint's may be given; the training goes on
    metrics = train("softmax", epochs=2, seed=1, data=data, save_dir=tmp_path, resume=True,
                    **quiet())
    assert len(metrics["passes"]) == 2
