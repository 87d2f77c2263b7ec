import gzip
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import recognize_digits  # noqa: F401  (quietens Paddle's logging before it is imported)
from recognize_digits.data import ENV_VAR, MNIST, load_mnist
from recognize_digits.training import train

ROOT = Path(__file__).resolve().parents[1]
INFER_3 = ROOT / "image" / "infer_3.png"


def write_idx(path, array, magic=None, compress=None):
    """Write ``array`` (uint8) as an IDX file, gzip-compressed when the name ends in .gz."""
    array = np.asarray(array, np.uint8)
    magic = magic or (2051 if array.ndim == 3 else 2049)
    header = np.array([magic, *array.shape], ">u4").tobytes()
    raw = header + array.tobytes()
    compress = str(path).endswith(".gz") if compress is None else compress
    Path(path).write_bytes(gzip.compress(raw) if compress else raw)
    return path


def write_mnist(folder, n_train=20, n_test=10, seed=0):
    """A tiny but well-formed MNIST folder (random pixels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return folder


@pytest.fixture(autouse=True)
def paddle_mode():
    """Paddle's static or dynamic mode as it was before each test, whatever the test left:
    no result may depend on the order the tests ran in."""
    import paddle

    dynamic = paddle.in_dynamic_mode()
    yield
    if paddle.in_dynamic_mode() != dynamic:
        paddle.disable_static() if dynamic else paddle.enable_static()


@pytest.fixture
def file_server(tmp_path):
    """Serve a folder over HTTP on 127.0.0.1; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def sample():
    return load_mnist(sample=True)


@pytest.fixture(scope="session")
def trained_cnn(tmp_path_factory, sample):
    """LeNet-5 trained for three passes on the bundled sample (about 91% on its test
    images, enough to read image/infer_3.png surely); (save_dir, metrics)."""
    save_dir = tmp_path_factory.mktemp("cnn")
    metrics = train("cnn", epochs=3, data=sample, save_dir=save_dir, seed=0,
                    event_handler=lambda event: None, log=lambda *a: None)
    return save_dir, metrics


@pytest.fixture(scope="session")
def paddle_quickstart_lenet(tmp_path_factory, sample):
    """A model saved as Paddle's own quick start saves one: ``paddle.vision.models.LeNet``
    (which ends in logits, not softmax) trained through ``paddle.Model`` for a few batches
    on pixels normalised to [-1, 1], then ``paddle.jit.save``; its folder."""
    import paddle

    from recognize_digits.data import normalize
    from recognize_digits.engine import MODEL_PREFIX, graph_mode

    folder = tmp_path_factory.mktemp("quickstart")
    with graph_mode("dynamic"):
        paddle.seed(0)
        net = paddle.vision.models.LeNet()
        model = paddle.Model(net)
        model.prepare(paddle.optimizer.Adam(learning_rate=0.001, parameters=net.parameters()),
                      paddle.nn.CrossEntropyLoss(), paddle.metric.Accuracy())
        for start in range(0, 64 * 30, 64):
            model.train_batch([normalize(sample.train_images[start:start + 64])],
                              [sample.train_labels[start:start + 64, None]])
        paddle.jit.save(net, str(folder / MODEL_PREFIX),
                        input_spec=[paddle.static.InputSpec([None, 1, 28, 28], "float32")])
    return folder


def full_mnist_dir():
    """The full MNIST folder named by the environment, or None."""
    folder = os.environ.get(ENV_VAR)
    return Path(folder) if folder and Path(folder).is_dir() else None


def quiet(**kwargs):
    """train() options that silence its event handler and log."""
    return dict(event_handler=lambda event: None, log=lambda *a: None, **kwargs)


def subset(mnist, n_train, n_test=200):
    """The first ``n_train`` training and ``n_test`` test images of ``mnist``."""
    return MNIST(mnist.train_images[:n_train], mnist.train_labels[:n_train],
                 mnist.test_images[:n_test], mnist.test_labels[:n_test], mnist.source)
