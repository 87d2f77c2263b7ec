import hashlib

import numpy as np
import pytest

from recognize_digits import data
from recognize_digits.errors import DataError

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


def test_normalize_matches_paddle_dataset(sample):
    images = sample.train_images[:10]
    expected = (images / 255.0 * 2.0 - 1.0).astype(np.float32).reshape(-1, 1, 28, 28)
    got = data.normalize(images)
    assert got.dtype == np.float32 and got.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(got, expected)
    assert set(data.normalize(np.tile([0, 255], 392)).ravel()) == {-1.0, 1.0}


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
    monkeypatch.setattr(data, "PADDLE_CACHE", cache)
    monkeypatch.setenv(data.ENV_VAR, str(env))
    assert data.find_data_dir(given) == given
    assert data.find_data_dir() == env
    monkeypatch.delenv(data.ENV_VAR)
    assert data.find_data_dir() == cache


def test_offline_without_data_names_every_way(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "PADDLE_CACHE", tmp_path / "empty")
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(DataError) as e:
        data.find_data_dir(download=False)
    for way in ("--data-dir", data.ENV_VAR, str(tmp_path / "empty"), "download", "--sample"):
        assert way in str(e.value)
    with pytest.raises(DataError, match="does not hold the four MNIST files"):
        data.find_data_dir(tmp_path)


def _serve_mnist(folder):
    write_mnist(folder)
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_download_checks_md5_into_cache(tmp_path, monkeypatch, file_server):
    served, url = file_server
    files = _serve_mnist(served)
    cache = tmp_path / "cache"
    monkeypatch.setattr(data, "PADDLE_CACHE", cache)
    monkeypatch.setattr(data, "FILES", files)
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    assert data.find_data_dir(mirror=url) == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)
    assert data.load_mnist().train_images.shape == (20, 28, 28)


def test_download_with_wrong_md5_leaves_nothing(tmp_path, file_server):
    served, url = file_server
    files = {name: "0" * 32 for name in _serve_mnist(served)}
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="md5"):
        data.fetch(cache, url, files)
    assert list(cache.iterdir()) == []


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch, file_server):
    _, url = file_server  # serves nothing: every file is a 404
    monkeypatch.setattr(data, "PADDLE_CACHE", tmp_path / "cache")
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(DataError, match="download failed.*--sample"):
        data.find_data_dir(mirror=url)
    assert list((tmp_path / "cache").iterdir()) == []
