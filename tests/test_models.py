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
