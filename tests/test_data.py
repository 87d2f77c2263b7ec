import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest

from recognize_digits import cli, data
from recognize_digits.errors import DataError
from recognize_digits.plumbing import download

from conftest import write_idx, write_mnist


@pytest.mark.parametrize("name", ["x-images-idx3-ubyte.gz", "x-images-idx3-ubyte"])
def test_read_idx_gzip_and_raw(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    got = data.read_idx(write_idx(tmp_path / name, images))
    assert got.dtype == np.uint8 and got.shape == (5, 28, 28)
    np.testing.assert_array_equal(got, images)
    labels = data.read_idx(write_idx(tmp_path / "labels", np.arange(10) % 10))
    np.testing.assert_array_equal(labels, np.arange(10))


@pytest.mark.parametrize("compress", [True, False])
def test_truncated_idx_is_a_clear_error(tmp_path, compress):
    path = write_idx(tmp_path / "images", np.zeros((4, 28, 28)), compress=compress)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(DataError, match="truncated|cannot read"):
        data.read_idx(path)


def test_empty_file_is_a_clear_error(tmp_path):
    (tmp_path / "empty.gz").write_bytes(b"")
    with pytest.raises(DataError, match="too short to be an MNIST IDX file"):
        data.read_idx(tmp_path / "empty.gz")


def test_wrong_magic_and_dimensions(tmp_path):
    with pytest.raises(DataError, match="magic number 1234"):
        data.read_idx(write_idx(tmp_path / "a", np.zeros((2, 28, 28)), magic=1234))
    with pytest.raises(DataError, match="32x32"):
        data.read_idx(write_idx(tmp_path / "b", np.zeros((2, 32, 32))))


def test_image_and_label_counts_must_agree(tmp_path):
    folder = write_mnist(tmp_path / "m")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(9))
    with pytest.raises(DataError, match="10 t10k images but 9 labels"):
        data.load_mnist(folder)


def test_raw_files_are_found_too(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for path in write_mnist(tmp_path / "gz").iterdir():
        (folder / path.name[:-3]).write_bytes(__import__("gzip").decompress(path.read_bytes()))
    mnist = data.load_mnist(folder)
    assert mnist.train_images.shape == (20, 28, 28) and not mnist.is_sample


def test_bundled_sample_is_real_mnist(sample):
    assert sample.train_images.shape == (3000, 28, 28)
    assert sample.test_images.shape == (1000, 28, 28)
    assert sample.is_sample and "sample" in sample.source
    # real digits: all ten classes, with realistic ink coverage
    assert set(np.unique(sample.train_labels)) == set(range(10))
    assert 0.1 < (sample.train_images > 128).mean() < 0.25


def test_normalize_matches_the_chapters_reader(sample):
    # the chapter fed its programs from paddle.dataset.mnist: the same values, to the bit
    chapter = pytest.importorskip("paddle.dataset.mnist")
    reader = chapter.reader_creator(str(data.SAMPLE_DIR / "train-images-idx3-ubyte.gz"),
                                    str(data.SAMPLE_DIR / "train-labels-idx1-ubyte.gz"), 100)
    images, labels = map(np.array, zip(*reader()))
    got = data.normalize(sample.train_images)
    assert got.dtype == np.float32 and got.shape == (3000, 1, 28, 28)
    np.testing.assert_array_equal(got.reshape(3000, 784), images)
    np.testing.assert_array_equal(sample.train_labels, labels)


def test_batches_shapes_shuffle_and_seed(sample):
    images, labels = sample.train_images[:150], sample.train_labels[:150]
    plain = list(data.batches(images, labels, 64))
    assert [len(x) for x, _ in plain] == [64, 64, 22]
    x, y = plain[0]
    assert x.dtype == np.float32 and x.shape == (64, 1, 28, 28)
    assert y.dtype == np.int64 and y.shape == (64, 1)

    def order(rng):
        return np.concatenate([y.ravel() for _, y in data.batches(
            images, np.arange(150), 64, shuffle=True, rng=rng)])

    rng = np.random.default_rng(7)
    first, second = order(rng), order(rng)
    assert sorted(first) == list(range(150))  # every example once per pass
    assert not np.array_equal(first, second)  # a new order every pass
    np.testing.assert_array_equal(first, order(np.random.default_rng(7)))  # seeded


def test_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    given, env, cache = (write_mnist(tmp_path / n) for n in ("given", "env", "cache"))
    monkeypatch.setattr(download, "PADDLE_CACHE", cache)
    monkeypatch.setenv(data.ENV_VAR, str(env))
    assert download.find_data_dir(given) == given
    assert download.find_data_dir() == env
    monkeypatch.delenv(data.ENV_VAR)
    assert download.find_data_dir() == cache


def test_offline_without_data_names_every_way(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "PADDLE_CACHE", tmp_path / "empty")
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(DataError) as e:
        data.load_mnist(download=False)
    # in Python, the API's argument names (as the notebook's user sees them)
    for way in ("data_dir=...", data.ENV_VAR, str(tmp_path / "empty"), "recognize-digits "
                "download", "sample=True"):
        assert way in str(e.value)
    assert "--" not in str(e.value)
    with pytest.raises(DataError, match="does not hold the MNIST files.*data_dir="):
        download.find_data_dir(tmp_path)


def test_offline_the_command_line_names_its_own_options(tmp_path, monkeypatch, capsys):
    from recognize_digits import cli

    monkeypatch.setattr(download, "PADDLE_CACHE", tmp_path / "empty")
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(download, "MIRRORS", ("http://127.0.0.1:9/",))  # refused at once
    for argv in (["train", "--save-dir", str(tmp_path / "m")],
                 ["compare", "--out", str(tmp_path / "c")]):
        assert cli.main(argv) == 1
        message = capsys.readouterr().err
        assert "download failed from every mirror" in message, message
        assert "--data-dir DIR" in message and "--sample" in message
        assert "data_dir=" not in message and "sample=True" not in message
    # download has neither option: its failure names what it has
    assert cli.main(["download"]) == 1
    err = capsys.readouterr().err
    assert "download failed from every mirror" in err and "--mirror URL" in err
    assert "sample" not in err and "data-dir" not in err and "mirror=" not in err


def test_evaluate_fetches_only_the_test_set(tmp_path, monkeypatch, file_server):
    served, url = file_server
    files = _serve_mnist(served)
    monkeypatch.setattr(download, "PADDLE_CACHE", tmp_path / "cache")
    monkeypatch.setattr(download, "FILES", files)
    monkeypatch.setattr(download, "MIRRORS", (url,))
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    mnist = data.load_mnist(train=False)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        name for name in files if name.startswith("t10k"))
    assert mnist.train_images.shape == (0, 28, 28) and mnist.test_images.shape == (10, 28, 28)
    assert data.load_mnist(sample=True, train=False).source == \
        "sample (1000 test images bundled with the package)"


def _serve_mnist(folder):
    write_mnist(folder)
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_download_checks_md5_into_cache(tmp_path, monkeypatch, file_server):
    served, url = file_server
    files = _serve_mnist(served)
    cache = tmp_path / "cache"
    monkeypatch.setattr(download, "PADDLE_CACHE", cache)
    monkeypatch.setattr(download, "FILES", files)
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    assert download.download(mirror=url) == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)
    assert data.load_mnist().train_images.shape == (20, 28, 28)


def test_download_with_wrong_md5_leaves_nothing(tmp_path, file_server):
    served, url = file_server
    files = {name: "0" * 32 for name in _serve_mnist(served)}
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="md5"):
        download.fetch(cache, url, files)
    assert list(cache.iterdir()) == []


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch, file_server):
    _, url = file_server  # serves nothing: every file is a 404
    monkeypatch.setattr(download, "PADDLE_CACHE", tmp_path / "cache")
    monkeypatch.setattr(download, "MIRRORS", ())  # no fallback to the real mirrors
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(DataError, match="download failed.*sample=True") as e:
        download.find_data_dir()
    assert "--" not in str(e.value)
    with pytest.raises(DataError, match="download failed.*try again later.*mirror=...") as e:
        download.download(mirror=url)
    assert "sample" not in str(e.value)
    assert list((tmp_path / "cache").iterdir()) == []


# Mirrors that fail in each way a real one does, all on 127.0.0.1.

@pytest.fixture
def mirror(tmp_path):
    """Start HTTP mirrors: ``mirror(folder)`` serves a folder, ``mirror(status=500)`` answers
    every request with that status; each returns (URL, list of the paths requested)."""
    servers = []

    def start(folder=None, status=None):
        requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder or tmp_path), **kwargs)

            def do_GET(self):
                requests.append(self.path.lstrip("/"))
                if status:
                    self.send_error(status)
                else:
                    super().do_GET()

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval keeps shutdown() from waiting half a second per server.
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/", requests

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def refused():
    """A URL whose port is taken but not listening: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/"


@pytest.fixture
def silent(monkeypatch):
    """A URL that accepts connections and never answers; the timeout is cut to 0.2 s."""
    monkeypatch.setattr(download, "TIMEOUT", 0.2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield f"http://127.0.0.1:{s.getsockname()[1]}/"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty Paddle cache, and no RECOGNIZE_DIGITS_DATA."""
    monkeypatch.setattr(download, "PADDLE_CACHE", tmp_path / "cache")
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    return tmp_path / "cache"


def _good_mirror(tmp_path, monkeypatch, mirror):
    """A mirror of tiny MNIST files that become download.FILES; (URL, requests)."""
    monkeypatch.setattr(download, "FILES", _serve_mnist(tmp_path / "good"))
    return mirror(tmp_path / "good")


def _cached(cache):
    """name -> md5 of every file in ``cache``, temporary ones included."""
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in cache.iterdir()}


@pytest.mark.parametrize("down", ["refused", "404", "500", "timeout"])
def test_first_mirror_down_files_come_from_the_next(tmp_path, monkeypatch, mirror, cache,
                                                     refused, silent, down, capsys):
    url, requests = _good_mirror(tmp_path, monkeypatch, mirror)
    first = {"refused": refused, "timeout": silent, "404": mirror(status=404)[0],
             "500": mirror(status=500)[0]}[down]
    monkeypatch.setattr(download, "MIRRORS", (first, url))
    assert download.find_data_dir() == cache
    assert _cached(cache) == download.FILES
    assert sorted(requests) == sorted(download.FILES)
    # Each failure is a short note on stderr; the progress bars hide off a terminal.
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 4 and all(first in n and "trying the next mirror" in n for n in notes)


def test_wrong_file_on_first_mirror_is_not_kept(tmp_path, monkeypatch, mirror, cache):
    url, _ = _good_mirror(tmp_path, monkeypatch, mirror)
    wrong, wrong_requests = mirror(write_mnist(tmp_path / "wrong", seed=1))
    monkeypatch.setattr(download, "MIRRORS", (wrong, url))
    download.fetch(cache, quiet=True)
    assert len(wrong_requests) == 4
    assert _cached(cache) == download.FILES


def test_every_mirror_failing_is_one_line_naming_each(tmp_path, monkeypatch, mirror, cache,
                                                      refused):
    monkeypatch.setattr(download, "FILES", _serve_mnist(tmp_path / "good"))
    wrong, _ = mirror(write_mnist(tmp_path / "wrong", seed=1))
    missing, _ = mirror(status=404)
    monkeypatch.setattr(download, "MIRRORS", (refused, missing, wrong))
    with pytest.raises(DataError) as e:
        download.find_data_dir()
    message = str(e.value)
    assert "\n" not in message
    for said in (next(iter(download.FILES)), "download failed", f"{refused}: Connection refused",
                 f"{missing}: HTTP 404", f"{wrong}: wrong file (md5", "data_dir=...",
                 "sample=True"):
        assert said.lower() in message.lower()
    assert list(cache.iterdir()) == []


def test_present_correct_files_are_not_downloaded_again(tmp_path, monkeypatch, mirror, cache):
    url, requests = _good_mirror(tmp_path, monkeypatch, mirror)
    monkeypatch.setattr(download, "MIRRORS", (url,))
    names = list(download.FILES)
    cache.mkdir()
    for name in names[:2]:  # two intact files, one wrong, one missing
        (cache / name).write_bytes((tmp_path / "good" / name).read_bytes())
    (cache / names[2]).write_bytes(b"not MNIST")
    download.fetch(cache, quiet=True)
    assert sorted(requests) == sorted(names[2:])
    assert _cached(cache) == download.FILES
    download.fetch(cache, quiet=True)
    assert len(requests) == 2


def test_given_mirrors_come_first(tmp_path, monkeypatch, mirror, cache, refused):
    url, requests = _good_mirror(tmp_path, monkeypatch, mirror)
    other, other_requests = mirror(tmp_path / "good")
    monkeypatch.setattr(download, "MIRRORS", (other,))
    # The given mirror is used before the built-in one; one without its final slash works.
    assert download.download(mirror=url.rstrip("/")) == cache
    assert sorted(requests) == sorted(download.FILES) and other_requests == []
    assert download.mirrors_from([refused, url]) == (refused, url, other)
    assert download.mirrors_from(other) == (other,)


def test_download_command_takes_repeated_mirrors(tmp_path, monkeypatch, mirror, cache, refused,
                                                 capsys):
    url, requests = _good_mirror(tmp_path, monkeypatch, mirror)
    monkeypatch.setattr(download, "MIRRORS", ())
    assert cli.main(["download", "--mirror", refused, "--mirror", url]) == 0
    assert str(cache) in capsys.readouterr().out
    assert _cached(cache) == download.FILES and len(requests) == 4
