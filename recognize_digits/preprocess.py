"""Make a user's image of a digit look like an MNIST digit.

MNIST's digits were prepared in a particular way: light ink on black, the digit scaled
to fit a 20x20 box (keeping its aspect ratio), then placed in a 28x28 image so that its
centre of mass is at the centre. A photo or drawing (dark ink on light paper, anywhere
in the frame, any size, with JPEG noise, uneven light, a frame or the paper's edge in
the picture, strokes of any width) is brought to the same form.
"""

import numpy as np
from PIL import Image
from scipy import ndimage

from .errors import ImageError

WORK_SIDE = 256  # larger images are first reduced to this: plenty for a digit, and fast
SMALL_SIDE = 64  # smaller ones are enlarged to this, so that thresholds cut smooth edges
BOX, SIDE = 20, 28  # MNIST: the digit fits a 20x20 box in a 28x28 image
MIN_CONTRAST = 0.08  # ink at most this far from the background is no ink at all,
NOISE_CONTRAST = 6  # nor is ink less than this many times the noise's level
COLOURFUL = 32  # colour images whose ink or paper has a hue at least this strong
STROKE = 3.0  # MNIST's median stroke width, in pixels of the 20x20 box (as measured here)
PAPER_CONTRAST = 40  # a sheet on a desk is at least this much brighter than the desk


def colour_to_grey(rgb):
    """A colour image (``uint8 [H, W, 3]``) as grey (``uint8 [H, W]``): ink dark on white
    paper by how far each pixel's colour is from the paper's (the commonest colour), for
    red ink on green paper can be as bright as the paper, and luminance alone loses it.
    An image with next to no colour keeps its luminance, light and dark, as before."""
    rgb = np.asarray(rgb, np.uint8)
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 1e6)))  # a million pixels judge
    sample = rgb[::step, ::step].reshape(-1, 3).astype(np.int32)
    if np.percentile(sample.max(axis=1) - sample.min(axis=1), 99) < COLOURFUL:
        return np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    codes = (sample // 16 * [256, 16, 1]).sum(axis=1)  # colours to 16 levels a channel
    paper = np.median(sample[codes == np.bincount(codes).argmax()], axis=0)
    grey = np.empty(rgb.shape[:2], np.uint8)
    rows = max(1, 2**20 // rgb.shape[1])  # a million pixels at a time: memory stays small
    for top in range(0, len(grey), rows):
        part = rgb[top:top + rows]
        squared = sum((part[..., c] - np.float32(paper[c])) ** 2 for c in range(3))
        # black ink on white paper comes out 0 on 255, as its luminance would
        grey[top:top + rows] = (255 - np.sqrt(squared / 3)).round().clip(0, 255)
    return grey


def on_paper(image):
    """A photo of a sheet of paper lying on a darker desk (``uint8 [H, W]`` or
    ``[H, W, 3]``), cut down to the sheet, the desk in its corners painted the sheet's
    colour; any other image as it is.

    A note on a desk is the one picture in which the paper is not the commonest colour:
    the desk is, and the whole note would be taken for ink. The sheet is the largest
    bright region (above the level that best splits dark from bright) that covers 3% to
    85% of the picture, is a quadrilateral (it fills 85% of the smallest rectangle
    around it, turned as it may be: a digit's strokes, even bold ones, do not), holds
    some ink (1-25% of it dark: a light stroke with no loop holds none, a loop holds
    more) and is clearly brighter than what lies around it.
    """
    image = np.asarray(image, np.uint8)
    grey = image if image.ndim == 2 else image.mean(axis=2)
    step = max(1, max(grey.shape) // WORK_SIDE)  # judged on a small copy
    small = grey[::step, ::step].astype(np.float32)
    if min(small.shape) < SMALL_SIDE // 2:
        return image
    labels, count = ndimage.label(small > _otsu(small))
    if not count:
        return image
    sheet = labels == np.bincount(labels.ravel())[1:].argmax() + 1
    filled = ndimage.binary_fill_holes(sheet)
    ink = 1 - sheet.sum() / filled.sum()
    if not (0.03 <= filled.mean() <= 0.85 and 0.01 <= ink <= 0.25
            and np.median(small[sheet]) - np.median(small[~filled]) >= PAPER_CONTRAST
            and filled.sum() >= 0.85 * _smallest_rectangle(np.argwhere(filled))):
        return image
    # the sheet's box in the image's pixels, less a margin for its edge and shadow
    ys, xs = np.nonzero(filled)
    margin = max(1, round(0.03 * max(np.ptp(ys), np.ptp(xs))))
    top, bottom = (ys.min() + margin) * step, (ys.max() + 1 - margin) * step
    left, right = (xs.min() + margin) * step, (xs.max() + 1 - margin) * step
    cut = image[top:bottom, left:right].copy()
    desk = ~ndimage.binary_erosion(filled, iterations=margin)[top // step:, left // step:]
    desk = np.repeat(np.repeat(desk, step, 0), step, 1)[:cut.shape[0], :cut.shape[1]]
    cut[desk] = np.median(image[::step, ::step][sheet], axis=0)
    return cut


def _smallest_rectangle(points):
    """The area of the smallest rectangle, turned any way, around ``points`` ``[N, 2]``:
    one of its sides lies along an edge of their convex hull."""
    from scipy.spatial import ConvexHull

    hull = points[ConvexHull(points).vertices].astype(np.float64)
    edges = np.diff(np.vstack([hull, hull[:1]]), axis=0)
    best = np.inf
    for dy, dx in edges:  # points are (row, column): turn each edge onto the columns' axis
        angle = np.arctan2(dy, dx)
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        turned = hull @ turn.T
        best = min(best, np.prod(np.ptp(turned, axis=0) + 1))  # +1: pixels, not points
    return best


def _otsu(x):
    """The level that best splits ``x`` into a dark and a bright class (Otsu's)."""
    hist = np.bincount(np.clip(x, 0, 255).astype(np.uint8).ravel(), minlength=256) / x.size
    weight = np.cumsum(hist)
    mean = np.cumsum(hist * np.arange(256))
    dark, total = weight[:-1], weight[-1]
    between = (mean[-1] * dark - mean[:-1] * total) ** 2 / np.maximum(dark * (total - dark),
                                                                     1e-12)
    return int(np.argmax(between))


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
    steps.append(("light ink on dark, resized", _resize(_light_ink(gray))))
    steps.append(("background and noise removed", _ink(steps[-1][1], _noise(gray))))
    if steps[-1][1].max() <= 0:
        raise ImageError("no digit found: the image is blank (no ink stands out from "
                         "its background)", "blank_image")
    steps.append(("frames and paper edges removed", _without_frames(steps[-1][1])))
    steps.append(("cropped to the ink", _crop(steps[-1][1])))
    steps.append(("strokes of MNIST's width", _stroke_width(steps[-1][1])))
    steps.append(("fitted to 20x20", _fit(steps[-1][1])))
    steps.append(("centred by mass in 28x28", _centre(steps[-1][1])))
    return steps


def _border(x):
    return np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])


def _light_ink(gray):
    """The image with its ink light (``uint8``). Ink is the minority of the image's
    levels, the long tail of its histogram (its skew): a frame, a desk or a shadow at
    the border, far fewer pixels than the paper, does not turn it round, nor does
    uneven light (a slope of light is as bright as it is dark). Only a digit cropped
    tight, as much ink as paper, has no such tail; its ink touches the border here and
    there (a border dark all round is a frame), and the border, mostly paper, decides."""
    hist = np.bincount(gray.ravel(), minlength=256) / gray.size
    levels = np.arange(256) - (np.arange(256) * hist).sum()
    skew = (hist * levels ** 3).sum() / max((hist * levels ** 2).sum(), 1e-9) ** 1.5
    dark_border = (_border(gray) < gray.mean()).mean()
    if abs(skew) < 1 and 0.05 < min(dark_border, 1 - dark_border) < 0.3:
        dark_ink = dark_border < 0.5
    else:
        dark_ink = skew < 0
    return 255 - gray if dark_ink else gray


def _resize(ink):
    """As floats in [0, 1], at most WORK_SIDE pixels a side and at least SMALL_SIDE.
    Large images are reduced by the maximum of each block, so that a stroke one pixel
    wide on a 2000-pixel drawing keeps its full contrast; small ones are enlarged
    smoothly."""
    h, w = ink.shape
    k = -(-max(h, w) // WORK_SIDE)
    if k > 1:
        ink = np.pad(ink, ((0, -h % k), (0, -w % k)), mode="edge")
        ink = ink.reshape(ink.shape[0] // k, k, ink.shape[1] // k, k).max(axis=(1, 3))
    elif max(h, w) < SMALL_SIDE:
        scale = SMALL_SIDE / max(h, w)
        ink = np.asarray(Image.fromarray(ink).resize(
            (round(w * scale), round(h * scale)), Image.BICUBIC))
    return ink.astype(np.float32) / 255


def _noise(gray):
    """The level of the image's pixel noise (a standard deviation, in [0, 1]), from the
    differences of neighbours: their lowest quarter, which neither a slope of light nor
    the edges of strokes reach, even in a tiny image that is mostly edges."""
    step = max(1, gray.shape[0] // 512)  # a sample of the rows is plenty
    differences = np.abs(np.diff(gray[::step].astype(np.int16), axis=1))
    # the difference of two Gaussians' samples is under 0.45 sd a quarter of the time
    return np.percentile(differences, 25) / 0.45 / 255


def _ink(x, noise=0):
    """Light ink on zero: uneven background removed, noise cut off; all zero if no ink
    stands out from the background, or from the plane of light that best fits the
    image (a small image's background follows a slope of light only roughly)."""
    ys, xs = np.indices(x.shape) / max(x.shape)
    plane = np.stack([np.ones_like(ys), ys, xs], axis=-1).reshape(-1, 3)
    off_plane = x.ravel() - plane @ np.linalg.lstsq(plane, x.ravel(), rcond=None)[0]
    x = x - _background(x)
    # the ink's level: the brightest spot once single-pixel noise is averaged away
    top = ndimage.uniform_filter(x, 3, mode="nearest").max()
    spread = np.ptp(ndimage.uniform_filter(off_plane.reshape(x.shape), 3, mode="nearest"))
    if min(top, spread) < max(MIN_CONTRAST, NOISE_CONTRAST * noise):
        return np.zeros_like(x)
    x = np.clip(x / top, 0, 1)
    x[x < 0.3] = 0  # what is left of paper texture, JPEG noise and shadows
    return x


def _background(x):
    """The background's level everywhere: the darkest value of each cell of a grid,
    spread smoothly over the image. A cell that a thick stroke fills, near the ink's
    level, takes the level of the nearest cell that none fills instead. Only such
    cells: a soft shadow or a slope of light is far fainter than ink, and the grid must
    follow it (else it is kept as ink, grey blobs that shrink the digit), so cells are
    only about 16 pixels (8 a side at most; a small image has few, one if need be)."""
    h, w = x.shape
    cells = int(np.clip(round(min(h, w) / 16), 1, 8))
    ys = np.linspace(0, h, cells + 1).astype(int)
    xs = np.linspace(0, w, cells + 1).astype(int)
    grid = np.array([[np.percentile(x[ys[i]:ys[i + 1], xs[j]:xs[j + 1]], 2)
                      for j in range(cells)] for i in range(cells)], np.float32)
    filled = grid - grid.min() > 0.6 * (np.percentile(x, 99.5) - grid.min())
    if filled.any():  # (the darkest cell never is)
        nearest = ndimage.distance_transform_edt(filled, return_distances=False,
                                                 return_indices=True)
        grid = grid[tuple(nearest)]
    return np.asarray(Image.fromarray(grid, "F").resize((w, h), Image.BILINEAR))


def _without_frames(ink):
    """The ink less what frames the digit: a hollow shape around the rest of the ink (a
    frame, a drawn box) or a band along the image's edge (the desk beyond the paper's
    edge, a shadow). A digit cropped tight touches the edges but is neither."""
    # parts a pixel apart are one: a faint frame or shadow breaks up into dashes
    labels, n = ndimage.label(ndimage.binary_dilation(ink > 0), np.ones((3, 3)))
    labels[ink <= 0] = 0
    h, w = ink.shape
    keep = np.ones(n + 1, bool)
    for i, box in enumerate(ndimage.find_objects(labels)):
        if box[0].stop - box[0].start < h / 2 and box[1].stop - box[1].start < w / 2:
            continue  # too small to frame anything or to run along an edge
        part = labels[box] == i + 1
        rest = (labels > 0) & (labels != i + 1) & keep[labels]
        rows, cols = np.nonzero(rest.any(axis=1))[0], np.nonzero(rest.any(axis=0))[0]
        if rows.size == 0 or max(rows[-1] - rows[0], cols[-1] - cols[0]) < 0.15 * max(h, w):
            continue  # what would be left is too little to be the digit
        if _is_band(part, box, h, w) or _is_hollow_around(part, box, rest):
            keep[i + 1] = False
    keep[0] = False
    return np.where(keep[labels], ink, 0)


def _is_band(part, box, h, w):
    """Along an edge of the image, for most of its length, and thin across it."""
    (top, bottom), (left, right) = (box[0].start, box[0].stop), (box[1].start, box[1].stop)
    if bottom - top <= 0.35 * h and (top == 0 or bottom == h):
        edge = part[0] if top == 0 else part[-1]
        return edge.sum() >= 0.7 * w
    if right - left <= 0.35 * w and (left == 0 or right == w):
        edge = part[:, 0] if left == 0 else part[:, -1]
        return edge.sum() >= 0.7 * h
    return False


def _is_hollow_around(part, box, rest):
    """Its ink hugs the sides of its bounding box (a frame, or the desk along two or
    three sides), and that box holds the rest of the ink."""
    margin = max(1, round(0.3 * min(part.shape)))
    if part[margin:-margin, margin:-margin].sum() > 0.1 * part.sum():
        return False
    return rest[box].sum() >= 0.9 * rest.sum()


def _crop(ink):
    """The smallest box that holds all but a sliver (0.5% a side) of the ink's mass,
    so that a stray speck far away does not count."""
    def span(mass):
        cumulative = np.cumsum(mass) / mass.sum()
        return np.searchsorted(cumulative, 0.005), np.searchsorted(cumulative, 0.995) + 1
    top, bottom = span(ink.sum(axis=1))
    left, right = span(ink.sum(axis=0))
    return ink[top:bottom, left:right]


def _stroke_width(ink):
    """Strokes thickened or thinned towards MNIST's width once fitted to 20x20: a fine
    pen's line would otherwise all but vanish in the reduction, a marker's blot the
    digit's shape."""
    strokes = ink > 0
    # a band w pixels wide has a mean distance to its edge of about (w + 2) / 4
    width = 4 * ndimage.distance_transform_edt(np.pad(strokes, 1))[1:-1, 1:-1][strokes].mean() - 2
    scale = BOX / max(ink.shape)
    change = STROKE / scale - width  # in pixels of this image
    if width * scale < 0.7 * STROKE:
        r = change / 2
    elif width * scale > 1.6 * STROKE:
        r = change / 4  # only part of the way: thinning a blot breaks it
    else:
        return ink
    radius = int(np.ceil(abs(r)))
    ys, xs = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disc = ys ** 2 + xs ** 2 <= r ** 2
    if r > 0:
        return _crop(ndimage.grey_dilation(np.pad(ink, radius), footprint=disc))
    return _crop(ndimage.grey_erosion(ink, footprint=disc))


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
