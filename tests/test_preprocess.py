import numpy as np
import pytest
from PIL import Image

from recognize_digits.errors import ImageError
from recognize_digits.infer import load_image
from recognize_digits.preprocess import mnist_style

from conftest import INFER_3

DIGIT = np.asarray(Image.open(INFER_3))


def on_canvas(digit, size=(200, 160), at=(10, 20), scale=3, dark_on_light=False):
    """The digit scaled up and pasted off-centre on a larger canvas."""
    big = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.BILINEAR))
    canvas = np.zeros(size[::-1], np.uint8)
    canvas[at[1]:at[1] + big.shape[0], at[0]:at[0] + big.shape[1]] = big
    return 255 - canvas if dark_on_light else canvas


def centre_of_mass(x):
    ys, xs = np.indices(x.shape)
    return (ys * x).sum() / x.sum(), (xs * x).sum() / x.sum()


def ink_box(x):
    rows, cols = np.nonzero(x.sum(axis=1))[0], np.nonzero(x.sum(axis=0))[0]
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_mnist_style_digit_passes_unchanged():
    np.testing.assert_array_equal(mnist_style(DIGIT), DIGIT)


@pytest.mark.parametrize("dark_on_light", [False, True])
def test_polarity_centring_and_size(dark_on_light):
    out = mnist_style(on_canvas(DIGIT, dark_on_light=dark_on_light))
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out[0].max() == 0 and out[:, 0].max() == 0  # light ink on a dark background
    cy, cx = centre_of_mass(out.astype(float))
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5  # centred by mass, as MNIST is
    assert max(ink_box(out)) == 20  # fitted to the 20x20 box
    # and close to the MNIST original, which was prepared the same way
    assert np.corrcoef(out.ravel(), DIGIT.ravel())[0, 1] > 0.8


def test_aspect_ratio_is_kept():
    bar = np.zeros((300, 300), np.uint8)
    bar[40:220, 100:130] = 255  # 180 tall, 30 wide: 6 to 1
    h, w = ink_box(mnist_style(bar))
    assert h == 20 and w in (3, 4)


@pytest.mark.parametrize("image", [
    np.full((100, 100), 200, np.uint8),
    np.random.default_rng(0).normal(128, 4, (300, 200)).clip(0, 255).astype(np.uint8),
])
def test_blank_images_are_refused(image, tmp_path):
    with pytest.raises(ImageError, match="blank"):
        mnist_style(image)
    Image.fromarray(image).save(tmp_path / "blank.png")
    with pytest.raises(ImageError, match="blank.png: no digit found"):
        load_image(tmp_path / "blank.png")
    assert load_image(tmp_path / "blank.png", preprocess=False).shape == (1, 1, 28, 28)


def test_preprocessing_beats_the_plain_resize_on_user_like_images(trained_cnn, sample, tmp_path):
    from recognize_digits.handwriting import save_user_like
    from recognize_digits.infer import InferenceModel

    model = InferenceModel(trained_cnn[0])  # LeNet-5, two passes on the sample
    rng = np.random.default_rng(0)
    digits, labels = sample.test_images[:150], sample.test_labels[:150]  # never trained on
    paths = save_user_like(digits, tmp_path, rng)
    accuracy = {}
    for preprocess in (False, True):
        images = np.concatenate([load_image(p, preprocess=preprocess) for p in paths])
        accuracy[preprocess] = (model.predict(images)[0] == labels).mean()
    assert accuracy[True] > accuracy[False] + 0.4, accuracy
    assert accuracy[True] > 0.7, accuracy
