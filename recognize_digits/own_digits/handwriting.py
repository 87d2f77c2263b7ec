"""Digit images as users make them, generated from MNIST digits.

A photo or a drawing of a digit is nothing like an MNIST image: dark ink on light paper
(or the other way round), anywhere in a frame of any size, thick or thin strokes, JPEG
noise, uneven light. :func:`user_like` turns an MNIST digit into such an image, so that
what preprocessing gains can be measured on digits whose labels are known; :func:`tiny`,
:func:`framed`, :func:`thin_strokes_large`, :func:`tight_crop` and :func:`coloured` make
the kinds of image that preprocessing once failed on (``benchmarks/blind_spots.py``).
"""

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


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


def save_user_like(digits, folder, rng, make=user_like, jpeg=0.6):
    """Write ``make(digit, rng)`` images of ``digits`` (``user_like`` ones by default) to
    ``folder``, a share ``jpeg`` of them as JPEG of random quality, the rest as PNG; their
    paths."""
    paths = []
    for i, digit in enumerate(digits):
        image = Image.fromarray(make(digit, rng))
        if rng.random() < jpeg:
            path = folder / f"{i:05d}.jpg"
            image.save(path, quality=int(rng.integers(60, 96)))
        else:
            path = folder / f"{i:05d}.png"
            image.save(path)
        paths.append(path)
    return paths


def _paper_pen(rng, dark_ink=0.7):
    """Grey levels of paper and pen: dark ink on light paper, or (less often) the reverse."""
    if rng.random() < dark_ink:
        return rng.uniform(170, 250), rng.uniform(0, 90)
    return rng.uniform(0, 60), rng.uniform(180, 255)


def _photo(image, rng, light=30, noise=(2, 8)):
    """Uneven light (a gentle slope) and sensor noise on a grey float image, as uint8."""
    height, width = image.shape
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
    image = image + rng.uniform(-light, light) * ys + rng.uniform(-light, light) * xs
    image += rng.normal(0, rng.uniform(*noise), image.shape)
    return image.clip(0, 255).astype(np.uint8)


def _ink_box(digit):
    """The digit cropped to its ink, as floats in [0, 1]."""
    digit = np.asarray(digit, np.float32) / 255
    rows, cols = np.nonzero(digit.max(axis=1) > 0.1)[0], np.nonzero(digit.max(axis=0) > 0.1)[0]
    return digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _resize(ink, height, width, resample=Image.BILINEAR):
    return np.asarray(Image.fromarray(ink, "F").resize((width, height), resample)).clip(0, 1)


def tiny(digit, rng, side=None):
    """A digit drawn small, 8x8 to 16x16 pixels (``side`` high), filling most of its image."""
    side = side or int(rng.integers(8, 17))
    height, width = side, int(np.clip(side + rng.integers(-2, 3), 8, 16))
    ink = _ink_box(digit)
    margin = int(rng.integers(0, 2))  # the digit fills the image but for a pixel or so
    scale = min((height - 2 * margin) / ink.shape[0], (width - 2 * margin) / ink.shape[1])
    h, w = max(1, round(ink.shape[0] * scale)), max(1, round(ink.shape[1] * scale))
    canvas = np.zeros((height, width), np.float32)
    top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    canvas[top:top + h, left:left + w] = _resize(ink, h, w, Image.BOX)
    paper, pen = _paper_pen(rng)
    return _photo(paper + (pen - paper) * canvas, rng, light=10, noise=(1, 5))


def framed(digit, rng, kind=None):
    """A photo of a digit with something as dark as its ink around it: a frame at the
    image's edge (``"frame"``), a box drawn a few pixels in (``"box"``), the paper's edge
    with the desk beyond it along one or two sides (``"edge"``) or a shadow at the border
    (``"shadow"``). Mostly dark ink on light paper, which a dark border used to flip."""
    kind = kind or rng.choice(["frame", "box", "edge", "shadow"])
    side = int(rng.integers(100, 801))
    height, width = side, int(side * rng.uniform(0.8, 1.25))
    ys, xs = np.mgrid[0:height, 0:width]
    dark = np.zeros((height, width), np.float32)  # where the frame, box, desk or shadow is
    inner = [0, 0, height, width]  # the part of the image left for the digit
    if kind == "frame":
        t = [int(side * rng.uniform(0.02, 0.08)) + 1 for _ in range(4)]
        dark[(ys < t[0]) | (ys >= height - t[1]) | (xs < t[2]) | (xs >= width - t[3])] = 1
        inner = [t[0], t[2], height - t[1], width - t[3]]
    elif kind == "box":
        gap = [int(side * rng.uniform(0.01, 0.06)) + 2 for _ in range(4)]
        line = int(side * rng.uniform(0.005, 0.02)) + 1
        top, left, bottom, right = gap[0], gap[1], height - gap[2], width - gap[3]
        dark[top:bottom, left:right] = 1
        dark[top + line:bottom - line, left + line:right - line] = 0
        inner = [top + line, left + line, bottom - line, right - line]
    elif kind == "edge":  # the paper ends along one or two sides, a little askew
        for where in rng.choice(["top", "left", "bottom", "right"], int(rng.integers(1, 3)),
                                replace=False):
            i = ["top", "left", "bottom", "right"].index(where)
            across, along = (xs, ys) if i % 2 else (ys, xs)
            extent = width if i % 2 else height
            if i >= 2:
                across = extent - 1 - across
            depth, tilt = side * rng.uniform(0.05, 0.25), rng.uniform(-0.1, 0.1)
            dark[across < depth + tilt * (along - along.max() / 2)] = 1
            reach = int(depth + 0.05 * along.max()) + 2
            inner[i] += reach if i < 2 else -reach
    else:  # a soft shadow falling in from one or two sides
        for _ in range(int(rng.integers(1, 3))):
            where = rng.choice(["top", "bottom", "left", "right"])
            reach = side * rng.uniform(0.1, 0.35)
            distance = {"top": ys, "left": xs, "bottom": height - 1 - ys,
                        "right": width - 1 - xs}[where]
            dark = np.maximum(dark, np.clip(1 - distance / reach, 0, 1) ** 1.5
                              * rng.uniform(0.4, 0.8))
    room = min(inner[2] - inner[0], inner[3] - inner[1])
    size = max(28, int(room * rng.uniform(0.5, 0.9)))  # the digit's 28x28 frame
    ink = np.zeros((height, width), np.float32)
    top = int(rng.integers(inner[0], max(inner[0], inner[2] - size) + 1))
    left = int(rng.integers(inner[1], max(inner[1], inner[3] - size) + 1))
    im = _resize(np.asarray(digit, np.float32) / 255, size, size)
    ink[top:top + size, left:left + size] = im[:height - top, :width - left]
    paper, pen = _paper_pen(rng, dark_ink=0.8)
    desk = rng.uniform(0, 70) if pen < paper else rng.uniform(190, 255)
    image = paper + (desk - paper) * dark
    image = image + (pen - image) * ink
    return _photo(image, rng)


def _skeleton(mask):
    """Zhang-Suen thinning: ``mask`` (bool) reduced to lines one pixel wide."""
    mask = mask.copy()
    while True:
        changed = False
        for step in (0, 1):
            p = np.pad(mask, 1)
            n = [p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:],  # P2..P9, clockwise
                 p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]]
            count = sum(x.astype(np.int8) for x in n)
            turns = sum((~n[i] & n[(i + 1) % 8]).astype(np.int8) for i in range(8))
            if step == 0:
                keep = (n[0] & n[2] & n[4]) | (n[2] & n[4] & n[6])
            else:
                keep = (n[0] & n[2] & n[6]) | (n[0] & n[4] & n[6])
            remove = mask & (count >= 2) & (count <= 6) & (turns == 1) & ~keep
            if remove.any():
                mask &= ~remove
                changed = True
        if not changed:
            return mask


def thin_strokes_large(digit, rng):
    """A large image (900 to 2000 pixels a side) of a digit drawn with a fine pen:
    strokes 1 to 3 pixels wide, as a drawing program exports them."""
    side = int(rng.integers(900, 2001))
    height, width = side, int(side * rng.uniform(0.7, 1.4))
    size = int(min(height, width) * rng.uniform(0.3, 0.8))  # the digit's 28x28 frame
    big = np.asarray(Image.fromarray(np.asarray(digit, np.uint8)).resize((56, 56), Image.BILINEAR))
    line = _skeleton(big > 100)
    top, left = rng.integers(0, height - size + 1), rng.integers(0, width - size + 1)
    pen_width = int(rng.integers(1, 4))
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    at = lambda y, x: (left + (x + 0.5) * size / 56, top + (y + 0.5) * size / 56)  # noqa: E731
    for y, x in zip(*np.nonzero(line)):  # join each point of the line to its neighbours
        for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
            if 0 <= y + dy < 56 and 0 <= x + dx < 56 and line[y + dy, x + dx]:
                draw.line([at(y, x), at(y + dy, x + dx)], fill=255, width=pen_width)
    paper, pen = _paper_pen(rng, dark_ink=0.8)
    ink = np.asarray(canvas, np.float32) / 255
    return _photo(paper + (pen - paper) * ink, rng, light=20, noise=(1, 4))


def tight_crop(digit, rng, stroke=None):
    """A digit cropped tight: its strokes touch all four edges of the image. ``stroke``:
    ``"thin"``, ``"as is"`` or ``"thick"`` (by default, any)."""
    ink = _ink_box(digit)
    height = int(rng.integers(40, 401))
    width = max(4, round(height * ink.shape[1] / ink.shape[0] * rng.uniform(0.9, 1.1)))
    im = Image.fromarray((_resize(ink, height, width) * 255).astype(np.uint8))
    width_change = height // 40 * 2 + 1  # as user_like: a filter a fifth of a stroke wide
    stroke = stroke or rng.choice(["thin", "as is", "thick"])
    if width_change > 1 and stroke == "thin":
        im = im.filter(ImageFilter.MinFilter(width_change))
    elif width_change > 1 and stroke == "thick":
        im = im.filter(ImageFilter.MaxFilter(width_change))
    paper, pen = _paper_pen(rng)
    return _photo(paper + (pen - paper) * np.asarray(im, np.float32) / 255, rng)


def _luminance(rgb):
    return rgb @ np.array([0.299, 0.587, 0.114])


def coloured(digit, rng, close=None):
    """An RGB ``uint8 [H, W, 3]`` image: ink and paper of different hues; with ``close``
    (by default half the time) of nearly the same luminance, which a grey conversion
    turns into no contrast at all."""
    close = rng.random() < 0.5 if close is None else close
    while True:
        paper, pen = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        hue_apart = np.linalg.norm((paper - paper.mean()) - (pen - pen.mean())) > 80
        difference = abs(_luminance(paper) - _luminance(pen))
        if hue_apart and np.linalg.norm(paper - pen) > 100 and (
                difference < 15 if close else difference >= 15):
            break
    side = int(rng.integers(60, 801))
    height, width = side, int(side * rng.uniform(0.7, 1.4))
    size = int(min(height, width) * rng.uniform(0.3, 0.8))
    ink = np.zeros((height, width, 1), np.float32)
    top, left = rng.integers(0, height - size + 1), rng.integers(0, width - size + 1)
    ink[top:top + size, left:left + size, 0] = _resize(np.asarray(digit, np.float32) / 255,
                                                       size, size)
    ys, xs = (np.mgrid[0:height, 0:width] / side)[..., None]  # uneven light, on every channel
    light = 1 + rng.uniform(-0.12, 0.12) * ys + rng.uniform(-0.12, 0.12) * xs
    image = (paper + (pen - paper) * ink) * light
    image += rng.normal(0, rng.uniform(2, 6), image.shape)
    return image.clip(0, 255).astype(np.uint8)


def note_on_desk(digit, rng):
    """An RGB ``uint8 [H, W, 3]`` photo of a white note with the digit in dark ink, lying
    (a little turned) on a green or brown desk that fills 70-85% of the picture: the one
    photo in which the paper is not the commonest colour."""
    side = int(rng.integers(300, 801))
    desk = np.array([(60, 140, 70), (120, 80, 40)][rng.integers(2)], np.float32)
    image = np.zeros((side, side, 3), np.float32) + desk * rng.uniform(0.8, 1.2)
    note = int(side * rng.uniform(0.4, 0.55))
    paper, pen = rng.uniform(215, 250), rng.uniform(10, 60)
    size = int(note * rng.uniform(0.55, 0.75))
    ink = np.zeros((note, note), np.float32)
    top = (note - size) // 2 + int(rng.integers(-note // 10, note // 10 + 1))
    ink[top:top + size, (note - size) // 2:(note - size) // 2 + size] = _resize(
        np.asarray(digit, np.float32) / 255, size, size)
    sheet = Image.fromarray(paper + (pen - paper) * ink, "F")
    mask = Image.fromarray(np.full((note, note), 255, np.uint8))
    angle = rng.uniform(-12, 12)  # turned a little: the desk shows in the sheet's box
    sheet, mask = (im.rotate(angle, Image.BILINEAR, expand=True) for im in (sheet, mask))
    width, height = sheet.size
    y, x = int(rng.integers(0, side - height)), int(rng.integers(0, side - width))
    on_sheet = np.asarray(mask, np.float32)[..., None] / 255
    window = image[y:y + height, x:x + width]
    window[...] = window * (1 - on_sheet) + np.asarray(sheet, np.float32)[..., None] * on_sheet
    ys, xs = (np.mgrid[0:side, 0:side] / side)[..., None]  # uneven light, sensor noise
    image *= 1 + rng.uniform(-0.1, 0.1) * ys + rng.uniform(-0.1, 0.1) * xs
    image += rng.normal(0, rng.uniform(2, 6), image.shape)
    return image.clip(0, 255).astype(np.uint8)
