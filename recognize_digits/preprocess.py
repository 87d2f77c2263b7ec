"""Make a user's image of a digit look like an MNIST digit.

MNIST's digits were prepared in a particular way: light ink on black, the digit scaled
to fit a 20x20 box (keeping its aspect ratio), then placed in a 28x28 image so that its
centre of mass is at the centre. A photo or drawing (dark ink on light paper, anywhere
in the frame, any size, with JPEG noise and uneven light) is brought to the same form.
"""

import numpy as np
from PIL import Image

from .errors import ImageError

WORK_SIDE = 256  # images are first reduced to this: plenty for a digit, and fast
BOX, SIDE = 20, 28  # MNIST: the digit fits a 20x20 box in a 28x28 image
MIN_CONTRAST = 0.08  # ink at most this far from the background is no ink at all


def mnist_style(gray):
    """A grey image (``uint8 [H, W]``) as an MNIST-style ``uint8 [28, 28]`` digit.

    Raises :class:`ImageError` when the image holds no ink at all. A 28x28 image that
    already is MNIST-style (dark border) is returned unchanged.
    """
    return mnist_style_steps(gray)[-1][1]


def mnist_style_steps(gray):
    """:func:`mnist_style`, step by step: a list of (what was done, image) pairs."""
    gray = np.asarray(gray, np.uint8)
    steps = [("as given", gray)]
    if gray.shape == (SIDE, SIDE) and _border(gray).mean() < 0.1 * 255:
        return steps + [("already MNIST-style", gray)]
    steps.append(("ink on black, background and noise removed", _ink(_reduce(gray))))
    if steps[-1][1].max() <= 0:
        raise ImageError("no digit found: the image is blank (no ink stands out from "
                         "its background)")
    steps.append(("cropped to the ink", _crop(steps[-1][1])))
    steps.append(("fitted to 20x20", _fit(steps[-1][1])))
    steps.append(("centred by mass in 28x28", _centre(steps[-1][1])))
    return steps


def _border(x):
    return np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])


def _reduce(gray):
    """At most WORK_SIDE pixels a side, as floats in [0, 1]."""
    im = Image.fromarray(gray)
    scale = WORK_SIDE / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                       Image.BOX)
    return np.asarray(im, np.float32) / 255


def _ink(x):
    """Light ink on zero: polarity decided, uneven background removed, noise cut off."""
    if np.median(_border(x)) > 0.5:  # dark ink on light paper: make it MNIST's way round
        x = 1 - x
    x = x - _background(x)
    # the ink's level: the brightest spot once single-pixel noise is averaged away
    padded = np.pad(x, 1, mode="edge")
    top = (sum(padded[i:i + x.shape[0], j:j + x.shape[1]] for i in range(3) for j in range(3))
           / 9).max()
    if top < MIN_CONTRAST:
        return np.zeros_like(x)
    x = np.clip(x / top, 0, 1)
    x[x < 0.3] = 0  # what is left of paper texture, JPEG noise and shadows
    return x


def _background(x, cells=8):
    """The background's level everywhere: the darkest value of each of cells x cells
    blocks (no stroke fills a whole block), spread smoothly over the image."""
    h, w = x.shape
    ys = np.linspace(0, h, cells + 1).astype(int)
    xs = np.linspace(0, w, cells + 1).astype(int)
    grid = np.array([[np.percentile(x[ys[i]:max(ys[i + 1], ys[i] + 1), xs[j]:max(xs[j + 1], xs[j] + 1)], 2)
                      for j in range(cells)] for i in range(cells)], np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((w, h), Image.BILINEAR))


def _crop(ink):
    """The smallest box that holds all but a sliver (0.5% a side) of the ink's mass,
    so that a stray speck far away does not count."""
    def span(mass):
        cumulative = np.cumsum(mass) / mass.sum()
        return np.searchsorted(cumulative, 0.005), np.searchsorted(cumulative, 0.995) + 1
    top, bottom = span(ink.sum(axis=1))
    left, right = span(ink.sum(axis=0))
    return ink[top:bottom, left:right]


def _fit(ink):
    """Scaled, keeping its aspect ratio, to fit a BOX x BOX square."""
    h, w = ink.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(ink, "F").resize(size, Image.LANCZOS)).clip(0, 1)


def _centre(ink):
    """In a SIDE x SIDE image, with the centre of mass at the centre, as uint8."""
    h, w = ink.shape
    ys, xs = np.indices(ink.shape)
    mass = ink.sum()
    cy, cx = (ys * ink).sum() / mass, (xs * ink).sum() / mass
    # MNIST's digits have their centre of mass at pixel (14, 14): so do ours
    top = int(np.clip(round(SIDE / 2 - cy), 0, SIDE - h))
    left = int(np.clip(round(SIDE / 2 - cx), 0, SIDE - w))
    out = np.zeros((SIDE, SIDE), np.float32)
    out[top:top + h, left:left + w] = ink
    return (out / out.max() * 255).round().astype(np.uint8)
