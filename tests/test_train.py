import json
from unittest import mock

import numpy as np
import paddle
import pytest

from recognize_digits.data import MNIST, batches, load_mnist
from recognize_digits.errors import ConfigError
from recognize_digits.infer import InferenceModel, evaluate
from recognize_digits.train import (PassEvent, Programs, StepEvent, select_place, train,
                                    use_onednn_convolutions)

from conftest import full_mnist_dir


def quiet(**kwargs):
    return dict(event_handler=lambda event: None, log=lambda *a: None, **kwargs)


def subset(mnist, n_train, n_test=200):
    return MNIST(mnist.train_images[:n_train], mnist.train_labels[:n_train],
                 mnist.test_images[:n_test], mnist.test_labels[:n_test], mnist.source)


def test_training_lowers_the_loss(trained_cnn):
    save_dir, metrics = trained_cnn
    first, second = metrics["passes"]
    assert second["train_cost"] < first["train_cost"] < np.log(10)
    assert second["test_acc"] > 0.85  # two passes over 3,000 sample digits
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


def test_best_pass_is_what_stays_saved(sample, tmp_path):
    # With test labels shifted by one, better training means a worse test cost, so the
    # first pass is the best: the saved model must be that pass's, not the last one's.
    data = subset(sample, 1000, 500)
    data.test_labels = (data.test_labels + 1) % 10
    metrics = train("softmax", epochs=3, data=data, save_dir=tmp_path, seed=2, **quiet())
    costs = [p["test_cost"] for p in metrics["passes"]]
    assert metrics["best_pass"] == int(np.argmin(costs)) == 0
    assert costs[-1] > costs[0]
    cost, acc = evaluate(InferenceModel(tmp_path), data.test_images, data.test_labels)
    assert cost == pytest.approx(costs[0], rel=1e-4)
    assert acc == pytest.approx(metrics["passes"][0]["test_acc"], abs=1e-6)


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
            use_onednn_convolutions(programs.main)
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
                        event_handler=events.append, log=lambda *a: None, onednn=onednn)
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


def test_onednn_rewrites_only_the_convolutions():
    paddle.enable_static()
    programs = Programs("cnn", seed=0)
    exe = paddle.static.Executor(paddle.CPUPlace())
    with paddle.static.scope_guard(paddle.static.Scope()):
        exe.run(programs.startup)
        before = [op.name() for op in programs.main.global_block().ops]
        use_onednn_convolutions(programs.main)
    after = [op.name() for op in programs.main.global_block().ops]
    assert after.count("onednn_op.conv2d") == 2 and "pd_op.conv2d" not in after
    # the image's convolution keeps the plain backward: it needs no input gradient
    assert after.count("onednn_op.conv2d_grad") == 1 and after.count("pd_op.conv2d_grad") == 1
    assert [n for n in after if "conv2d" not in n] == [n for n in before if "conv2d" not in n]
    assert not any("onednn" in op.name() for op in programs.test.global_block().ops)


def test_device_selection(monkeypatch):
    assert isinstance(select_place("cpu"), paddle.CPUPlace)
    if not paddle.is_compiled_with_cuda():
        assert isinstance(select_place("auto"), paddle.CPUPlace)
        with pytest.raises(ConfigError, match="no GPU.*--device cpu"):
            select_place("gpu")
    with mock.patch("paddle.is_compiled_with_cuda", return_value=True), \
            mock.patch("paddle.device.cuda.device_count", return_value=1), \
            mock.patch("paddle.CUDAPlace", side_effect=lambda i: ("cuda", i)):
        assert select_place("auto") == ("cuda", 0)
        assert select_place("gpu") == ("cuda", 0)
        assert isinstance(select_place("cpu"), paddle.CPUPlace)
    with mock.patch("paddle.is_compiled_with_cuda", return_value=True), \
            mock.patch("paddle.device.cuda.device_count", return_value=0):
        assert isinstance(select_place("auto"), paddle.CPUPlace)
        with pytest.raises(ConfigError):
            select_place("gpu")


@pytest.mark.parametrize("options, message", [
    (dict(model="lenet"), "unknown model 'lenet'"),
    (dict(epochs=0), "epochs must be > 0"),
    (dict(batch_size=-1), "batch-size must be > 0"),
    (dict(learning_rate=0.0), "learning-rate must be > 0"),
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
