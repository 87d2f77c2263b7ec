import numpy as np
import paddle
import pytest
from PIL import Image

from recognize_digits.data import normalize
from recognize_digits.errors import ImageError, ModelError
from recognize_digits.infer import InferenceModel, load_image

from conftest import INFER_3


def test_load_image_matches_training_input(tmp_path):
    x = load_image(INFER_3)
    assert x.dtype == np.float32 and x.shape == (1, 1, 28, 28)
    # a 28x28 grayscale image goes through exactly as a training image would
    np.testing.assert_array_equal(x, normalize(np.asarray(Image.open(INFER_3))))
    # any size and mode becomes 28x28 grayscale in [-1, 1]
    Image.open(INFER_3).convert("RGB").resize((280, 280)).save(tmp_path / "big.jpg")
    big = load_image(tmp_path / "big.jpg", preprocess=False)
    assert big.shape == (1, 1, 28, 28) and -1 <= big.min() < big.max() <= 1
    assert np.abs(big - x).mean() < 0.1


def test_infer_3_is_recognised_as_3(trained_cnn):
    digits, probs = InferenceModel(trained_cnn[0]).predict(load_image(INFER_3))
    assert digits.tolist() == [3]
    assert probs.shape == (1, 10) and probs[0].argmax() == 3 and probs[0, 3] > 0.5


def test_predict_many_images_in_one_run(trained_cnn, sample):
    model = InferenceModel(trained_cnn[0])
    images = normalize(sample.test_images)
    digits, probs = model.predict(images)
    assert digits.shape == (1000,) and probs.shape == (1000, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert (digits == sample.test_labels).mean() > 0.85
    # the same image gives the same answer alone or in a batch
    np.testing.assert_allclose(model.predict(images[7:8])[1], probs[7:8], rtol=1e-5, atol=1e-7)


def test_missing_model_and_image_are_clear_errors(tmp_path, trained_cnn):
    with pytest.raises(ModelError, match="no saved model.*recognize-digits train"):
        InferenceModel(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ImageError, match="cannot read it as an image"):
        load_image(tmp_path / "notes.txt")


def test_onednn_predictor_matches_plain_kernels(trained_cnn, sample):
    images = normalize(sample.test_images)
    digits, probs = InferenceModel(trained_cnn[0]).predict(images)  # oneDNN, all cores
    plain_digits, plain_probs = InferenceModel(trained_cnn[0], threads=1, onednn=False).predict(images)
    np.testing.assert_array_equal(digits, plain_digits)
    np.testing.assert_allclose(probs, plain_probs, atol=1e-5)


def test_saved_model_loads_in_the_executor_too(trained_cnn, sample):
    """paddle.static.load_inference_model reads the same model, biases in fusable form."""
    paddle.enable_static()
    exe = paddle.static.Executor(paddle.CPUPlace())
    with paddle.static.scope_guard(paddle.static.Scope()):
        program, feeds, fetches = paddle.static.load_inference_model(
            str(trained_cnn[0] / "model"), exe)
        shapes = [list(p.shape) for p in program.global_block().all_parameters()]
        images = normalize(sample.test_images[:100])
        [probs] = exe.run(program, feed={feeds[0]: images}, fetch_list=fetches)
    assert [1, 20, 1, 1] in shapes and [1, 50, 1, 1] in shapes
    np.testing.assert_allclose(InferenceModel(trained_cnn[0]).predict(images)[1], probs, atol=1e-5)


def test_only_a_lone_ascii_digit_labels_an_image(tmp_path):
    from recognize_digits.own_digits.folders import load_labelled_images

    for name in ("3.png", "3_mine.png", "7/scan.png", "13.png", "20240501_photo_of_3.png",
                 "³_x.png", "²/scan.png", "37/scan.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.open(INFER_3).save(tmp_path / name)
    paths, labels, _, skipped = load_labelled_images(tmp_path)
    assert {p.relative_to(tmp_path).as_posix(): int(l) for p, l in zip(paths, labels)} == {
        "3.png": 3, "3_mine.png": 3, "7/scan.png": 7}
    assert skipped == []


def test_a_model_saved_by_paddle_s_quick_start_gets_softmax_once(paddle_quickstart_lenet,
                                                                  sample):
    from recognize_digits.errors import FallbackWarning
    from recognize_digits.infer import evaluate

    with pytest.warns(FallbackWarning, match="ends in scores .logits.*softmax is applied") as said:
        model = InferenceModel(paddle_quickstart_lenet)
        digits, probs = model.predict(load_image(INFER_3))
        _, many = model.predict(normalize(sample.test_images))
        cost, accuracy = evaluate(model, sample.test_images, sample.test_labels)
    assert len(said) == 1  # said once, when the model is loaded
    for p in (probs, many):
        assert p.min() >= 0 and p.max() <= 1
        np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    assert digits.tolist() == [3]
    assert 0 < cost < 2.3 and accuracy > 0.5  # a few batches: better than chance


def test_predict_runs_in_batches_of_1000(trained_cnn, sample):
    # 20,000 images at once peaked at 1.55 GB: the runtime holds every layer's output
    model = InferenceModel(trained_cnn[0])
    sizes, run = [], model._run
    model._run = lambda images, threads: sizes.append(len(images)) or run(images, threads)
    images = normalize(np.concatenate([sample.test_images] * 3)[:2500])
    digits, probs = model.predict(images)
    assert sizes == [1000, 1000, 500] and probs.shape == (2500, 10)
    np.testing.assert_array_equal(digits[:1000], digits[1000:2000])


def test_load_image_takes_a_pillow_image_and_infer_model_names_the_onnx_reader(tmp_path):
    with Image.open(INFER_3) as im:
        np.testing.assert_array_equal(load_image(im), load_image(INFER_3))
        assert im.size == (28, 28)  # still open: a copy was read
    with pytest.raises(ImageError, match="^the image: 1x1 pixels is too small"):
        load_image(Image.new("L", (1, 1)))
    with pytest.raises(ModelError, match=r"a\.onnx: no such folder; read an ONNX file with "
                                         r"deploy\.export\.OnnxModel$"):
        InferenceModel(tmp_path / "a.onnx")
