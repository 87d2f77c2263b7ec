import numpy as np
import paddle
import pytest

from recognize_digits.models import MODELS, count_parameters


@pytest.mark.parametrize("name, params", [("softmax", 7850), ("mlp", 199210), ("cnn", 33620)])
def test_builders_parameter_counts_and_outputs(name, params):
    paddle.enable_static()
    main, startup = paddle.static.Program(), paddle.static.Program()
    with paddle.static.program_guard(main, startup):
        img = paddle.static.data("img", [-1, 1, 28, 28], "float32")
        probs = MODELS[name](img)
    assert list(probs.shape) == [-1, 10]
    assert count_parameters(main) == params

    exe = paddle.static.Executor(paddle.CPUPlace())
    with paddle.static.scope_guard(paddle.static.Scope()):
        exe.run(startup)
        x = np.random.default_rng(0).uniform(-1, 1, (3, 1, 28, 28)).astype(np.float32)
        [out] = exe.run(main, feed={"img": x}, fetch_list=[probs])
    assert out.shape == (3, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5)
    assert (out > 0).all()


def test_lenet_matches_stock_layers(sample, monkeypatch):
    """The package's LeNet-5 (separate [C,1,1] biases, pooling before bias and ReLU) trains
    like the chapter's order built from stock layers, from the same initial values."""
    from recognize_digits import models
    from recognize_digits.data import batches
    from recognize_digits.engines.compare import ChapterConvPool
    from recognize_digits.static_graph import Programs

    paddle.enable_static()
    exe = paddle.static.Executor(paddle.CPUPlace())
    data = list(batches(sample.train_images[:1280], sample.train_labels[:1280], 64))
    losses, init = {}, None
    for name in ("package", "stock"):
        if name == "stock":
            monkeypatch.setattr(models, "ConvPool", ChapterConvPool)
        programs = Programs("cnn", seed=0)
        with paddle.static.scope_guard(paddle.static.Scope()):
            scope = paddle.static.global_scope()
            exe.run(programs.startup)
            params = list(programs.main.global_block().all_parameters())
            # same initial values: parameters in building order, biases in either shape
            params.sort(key=lambda p: int(p.get_defining_op().id()))
            if init is None:
                init = [np.array(scope.find_var(p.name).get_tensor()) for p in params]
            else:
                for p, value in zip(params, init):
                    scope.find_var(p.name).get_tensor().set(value.reshape(p.shape), paddle.CPUPlace())
            losses[name] = [float(exe.run(programs.main, feed={"img": x, "label": y},
                                          fetch_list=[programs.avg_cost])[0]) for x, y in data]
    np.testing.assert_allclose(losses["package"], losses["stock"], rtol=1e-4)
