"""Digit images as users make them, generated from MNIST digits.

A photo or a drawing of a digit is nothing like an MNIST image: dark ink on light paper
(or the other way round), anywhere in a frame of any size, thick or thin strokes, JPEG
noise, uneven light. :func:`user_like` turns an MNIST digit into such an image, so that
what preprocessing gains can be measured on digits whose labels are known.
"""

import numpy as np
from PIL import Image, ImageFilter


def user_like(digit, rng):
    """An MNIST digit (``uint8 [28, 28]``) as a user's image: a grey ``uint8 [H, W]``."""
    side = int(rng.integers(60, 1001))
    height, width = side, int(side * rng.uniform(0.7, 1.4))
    size = int(min(height, width) * rng.uniform(0.3, 0.8))  # the digit's 28x28 frame
    im = Image.fromarray(np.asarray(digit, np.uint8)).resize((size, size), Image.BILINEAR)
    width_change = size // 40 * 2 + 1  # an odd filter about a fifth of a stroke wide
    if width_change > 1:
        stroke = rng.choice(["thin", "as is", "thick"])
        if stroke == "thin":
            im = im.filter(ImageFilter.MinFilter(width_change))
        elif stroke == "thick":
            im = im.filter(ImageFilter.MaxFilter(width_change))
    ink = np.zeros((height, width), np.float32)
    top, left = rng.integers(0, height - size + 1), rng.integers(0, width - size + 1)
    ink[top:top + size, left:left + size] = np.asarray(im, np.float32) / 255
    if rng.random() < 0.7:  # dark ink on light paper
        paper, pen = rng.uniform(170, 250), rng.uniform(0, 90)
    else:
        paper, pen = rng.uniform(0, 60), rng.uniform(180, 255)
    image = paper + (pen - paper) * ink
    ys, xs = np.mgrid[0:height, 0:width] / side  # uneven light: a gentle slope
    image += rng.uniform(-30, 30) * ys + rng.uniform(-30, 30) * xs
    image += rng.normal(0, rng.uniform(2, 8), image.shape)  # sensor noise
    return image.clip(0, 255).astype(np.uint8)


def save_user_like(digits, folder, rng):
    """Write ``user_like`` images of ``digits`` to ``folder`` as JPEG or PNG; their paths."""
    paths = []
    for i, digit in enumerate(digits):
        image = Image.fromarray(user_like(digit, rng))
        if rng.random() < 0.6:
            path = folder / f"{i:05d}.jpg"
            image.save(path, quality=int(rng.integers(60, 96)))
        else:
            path = folder / f"{i:05d}.png"
            image.save(path)
        paths.append(path)
    return paths
