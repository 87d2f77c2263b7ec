"""Data augmentation: each training digit a little different every pass.

MNIST's digits were written on forms and carefully centred; a digit you write is more
slanted, tilted, larger or smaller, off-centre, with a thinner or thicker pen, even
after :func:`~recognize_digits.preprocess.mnist_style`. Training on digits moved the
same ways teaches the model that these changes do not change the digit. It helps on
digits changed that way (MNIST's own, photographed) and costs a little on clean pen
strokes: README's "Your own handwriting" has the figures per source. The chapter trains
without it (``augment=False``).
"""

import numpy as np

# How far each digit may be moved: the ranges usual for MNIST (Ciresan et al., 2010,
# rotated theirs by up to 15 degrees and scaled them by up to 15%). Each alone keeps a
# 20x20 MNIST digit inside the 28x28 frame, and none turns a 6 into a 9 (that takes 180);
# all at their extremes at once may cut the tip of a stroke at the edge, which is rare.
ROTATION = 15  # degrees either way: a hand tilts the page or the line
SCALE = 0.15  # 0.85 to 1.15: preprocessing sizes a digit by its box, so a digit with a
# long tail or a wide bar comes out smaller or larger than MNIST's
SHEAR = 0.25  # horizontal shear either way, about 14 degrees: the slant of handwriting
SHIFT = 3  # pixels either way: the centre of mass is not where a reader puts the centre
STROKE = 1 / 3  # the share of moved digits made thinner, and the share made thicker
KEEP = 0.5  # the share of each batch left as MNIST has it: a model trained on moved
# digits only reads clean ones and straight pen strokes worse (a plain 1 with a flag as 7)

SIZE = 28
CENTRE = (SIZE - 1) / 2
# (x, y) of every pixel about the centre, row by row: where each output pixel is
GRID = np.stack(np.mgrid[0:SIZE, 0:SIZE][::-1]).reshape(2, -1).astype(np.float32) - CENTRE


def augment(images, rng):
    """A copy of a training batch with half of its digits randomly moved and re-stroked.

    ``images`` is ``float32 [B, 1, 28, 28]`` in [-1, 1] (background -1); so is the
    result. A share ``KEEP`` of the images stays as it is; each of the others gets one
    random rotation, scale, shear and shift, and a third of them thinner strokes, a
    third thicker ones. Everything random comes from ``rng`` (an
    ``np.random.Generator``): the same generator state gives the same batch.
    """
    moved = np.flatnonzero(rng.random(len(images)) >= KEEP)
    n = len(moved)
    stroke = rng.choice([-1, 0, 1], n, p=[STROKE, 1 - 2 * STROKE, STROKE])
    angle = np.deg2rad(rng.uniform(-ROTATION, ROTATION, n))
    scale = rng.uniform(1 - SCALE, 1 + SCALE, n)
    shear = rng.uniform(-SHEAR, SHEAR, n)
    shift = rng.uniform(-SHIFT, SHIFT, (n, 2))
    digits = change_strokes(images[moved, 0], stroke)
    out = images.copy()
    out[moved, 0] = warp(digits, affine(angle, scale, shear), shift)
    return out


def change_strokes(digits, stroke):
    """Thinner strokes where ``stroke`` is -1, thicker where it is 1, as they are at 0.

    Grey erosion and dilation with a 2x2 square: each pixel takes the darkest (or
    brightest) of itself and its neighbours right, below and diagonally, which makes
    every stroke about a pixel thinner (or thicker), the difference between a fine and
    a broad pen at MNIST's size. Many MNIST strokes are barely two pixels wide, and
    erosion leaves only their fainter rim: a thinned digit's ink is brought back up to
    the brightness it had, as a fine pen draws as dark a line as a broad one.
    """
    padded = np.pad(digits, ((0, 0), (0, 1), (0, 1)), constant_values=-1)
    square = np.stack([padded[:, :-1, :-1], padded[:, 1:, :-1], padded[:, :-1, 1:],
                       padded[:, 1:, 1:]])
    thicker = square.max(axis=0)
    ink, thin_ink = digits + 1, square.min(axis=0) + 1  # 0 background, 2 full ink
    peak = ink.max(axis=(1, 2), keepdims=True)
    thin_peak = np.maximum(thin_ink.max(axis=(1, 2), keepdims=True), 1e-6)  # 0 if blank
    thinner = thin_ink * (peak / thin_peak) - 1
    stroke = stroke[:, None, None]
    return np.where(stroke < 0, thinner, np.where(stroke > 0, thicker, digits))


def affine(angle, scale, shear):
    """``[B, 2, 2]`` matrices that slant (shear), rotate and scale each digit, in (x, y)."""
    cos, sin = np.cos(angle), np.sin(angle)
    rotate = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    slant = np.zeros_like(rotate)
    slant[:, 0, 0] = slant[:, 1, 1] = 1
    slant[:, 0, 1] = shear  # x moves with y: the top of the digit leans right or left
    return scale[:, None, None] * rotate @ slant


def warp(digits, matrices, shift):
    """Move each of ``digits`` ``[B, 28, 28]`` by its matrix about the centre, then by its
    ``shift`` (x, y) in pixels.

    Each output pixel reads the input where the inverse move takes it, interpolating
    bilinearly between the four pixels around that point; points outside the image read
    background, so nothing wraps round and no ink is invented.
    """
    n = len(digits)
    out = GRID - shift[:, :, None].astype(np.float32)  # [B, 2, 784]: about the centre
    source = np.linalg.inv(matrices).astype(np.float32) @ out + CENTRE  # where to read
    # a border of background round the image (two pixels on the right and below, where
    # the right and lower neighbours are read): a point outside is moved onto it
    padded = np.pad(digits, ((0, 0), (1, 2), (1, 2)), constant_values=-1)
    width = padded.shape[-1]
    x, y = np.clip(source[:, 0] + 1, 0, SIZE + 1), np.clip(source[:, 1] + 1, 0, SIZE + 1)
    left, top = np.floor(x), np.floor(y)
    fx, fy = x - left, y - top
    # each point's upper-left pixel in the flattened batch, then its three neighbours
    corner = (np.arange(n)[:, None] * width + top.astype(np.intp)) * width + left.astype(np.intp)
    upper_left, upper_right, lower_left, lower_right = (
        padded.ravel()[corner + step] for step in (0, 1, width, width + 1))
    upper = upper_left + fx * (upper_right - upper_left)
    lower = lower_left + fx * (lower_right - lower_left)
    return np.clip(upper + fy * (lower - upper), -1, 1).reshape(n, SIZE, SIZE)
