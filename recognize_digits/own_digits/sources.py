"""Labelled digit images that do not come from MNIST, made the way users make theirs.

Why: accuracy on MNIST digits dressed up as photos (:mod:`.handwriting`) shows what
preprocessing gains, but not that the model reads digits written by other hands, pens
and writing habits. Three independent sources, each a function in :data:`SOURCES`:

``pen``
    Synthetic pen strokes: every digit drawn as pen paths (lines and smooth curves) in
    several styles (1 with and without flag and base, open and closed 4, 7 with and
    without crossbar, 9 with straight or curved tail, 2 with or without loop, ...), its
    control points jittered, slanted, stretched, rotated, drawn with a thin pen up to a
    marker. Needs nothing but Pillow.
``fonts``
    Handwriting fonts from Debian packages (:data:`FONTS`), chosen for digits that look
    handwritten and are legible; rotated, slanted, thickened at random.
``uci``
    Real handwriting from 43 writers that is not MNIST: the UCI optical digits bundled
    with scikit-learn (``load_digits``, 1,797 images). They are only 8x8 pixels, so
    upscaled they are blurry, coarse digits.

Every digit then becomes a user's picture (:func:`photograph`): 28 to 1200 pixels a side,
dark ink on light paper or light on dark, off-centre, in grey or colour, with uneven
light, shadow, blur and sensor noise, and saved (:func:`write`) as PNG or as JPEG of
quality 35 to 95.

The split, made once: item ``i`` of every source belongs to the *tune* half when ``i``
is even and to the *report* half when ``i`` is odd (:data:`HALVES`). Item ``i`` is the
same whatever count is asked for, as its random numbers come from ``(seed, source, i)``,
so the halves are disjoint and stable; ``uci`` item ``i`` is scikit-learn's image ``i``
whatever the seed (899 tune, 898 report). Look at, and tune preprocessing, training or
these generators on, the tune half only; the report half is only ever measured.
"""

import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..errors import RecognizeDigitsError


class SourceUnavailable(RecognizeDigitsError, RuntimeError):
    """A source of digits needs something that is not installed."""


HALVES = {"tune": 0, "report": 1}  # item i is in the half whose number is i % 2
SIDES = (28, 1200)  # the pictures' sides, in pixels


# ---------------------------------------------------------------------------------------
# pen strokes

# Each digit's styles; a style is a list of strokes, a stroke (kind, points) with points
# (x, y) in a unit box, y downwards: "line" joins them straight, "curve" passes a smooth
# curve through them, "loop" is a closed smooth curve.
STYLES = {
    0: [[("loop", [(.5, 0), (.1, .3), (.12, .75), (.5, 1), (.88, .72), (.9, .25)])],
        [("curve", [(.6, .02), (.2, .15), (.05, .6), (.4, 1), (.85, .75), (.9, .25),
                    (.55, 0), (.4, .08)])]],
    1: [[("line", [(.5, 0), (.5, 1)])],
        [("line", [(.2, .3), (.6, 0), (.6, 1)])],
        [("line", [(.2, .3), (.55, 0), (.55, 1)]), ("line", [(.2, 1), (.9, 1)])]],
    2: [[("curve", [(.08, .3), (.45, 0), (.88, .25), (.6, .65), (.08, 1)]),
         ("line", [(.08, 1), (.95, .97)])],
        [("curve", [(.1, .25), (.5, 0), (.9, .25), (.7, .58), (.3, .88), (.12, .92),
                    (.22, .78), (.4, .86), (.6, 1), (.95, .95)])],
        [("curve", [(.05, .2), (.5, 0), (.9, .2), (.85, .45), (.05, 1), (.5, .95),
                    (.95, 1)])]],
    3: [[("curve", [(.1, .12), (.5, 0), (.85, .2), (.72, .4), (.4, .48)]),
         ("curve", [(.4, .48), (.8, .58), (.9, .8), (.5, 1), (.05, .88)])],
        [("line", [(.08, 0), (.9, 0), (.4, .4)]),
         ("curve", [(.4, .4), (.85, .55), (.88, .85), (.5, 1), (.05, .85)])]],
    4: [[("line", [(.65, 0), (.05, .68), (.95, .68)]), ("line", [(.65, 0), (.65, 1)])],
        [("line", [(.2, 0), (.08, .6), (.95, .6)]), ("line", [(.7, .05), (.7, 1)])],
        [("line", [(.55, 0), (.05, .65), (.95, .65)]), ("line", [(.72, .3), (.72, 1)])]],
    5: [[("line", [(.9, 0), (.2, 0), (.14, .45)]),
         ("curve", [(.14, .45), (.55, .37), (.9, .65), (.55, 1), (.05, .9)])],
        [("line", [(.2, 0), (.14, .45)]),
         ("curve", [(.14, .45), (.55, .38), (.88, .68), (.5, 1), (.08, .88)]),
         ("line", [(.2, 0), (.92, .02)])]],
    6: [[("curve", [(.8, 0), (.35, .25), (.1, .65), (.4, 1), (.85, .78), (.55, .5),
                    (.12, .68)])],
        [("curve", [(.7, 0), (.3, .35), (.15, .75), (.5, 1), (.85, .75), (.5, .52),
                    (.18, .7)])]],
    7: [[("line", [(.05, 0), (.95, 0), (.35, 1)])],
        [("line", [(.05, 0), (.95, 0), (.4, 1)]), ("line", [(.3, .52), (.85, .5)])],
        [("line", [(.05, .18), (.05, 0), (.95, 0), (.45, 1)])],
        [("line", [(.05, 0), (.95, 0)]), ("curve", [(.95, 0), (.6, .45), (.45, 1)])]],
    8: [[("loop", [(.5, .47), (.12, .23), (.5, 0), (.88, .23), (.5, .47), (.1, .74),
                   (.5, 1), (.9, .74)])],
        [("loop", [(.5, 0), (.2, .22), (.5, .44), (.8, .22)]),
         ("loop", [(.5, .44), (.1, .72), (.5, 1), (.9, .72)])]],
    9: [[("loop", [(.5, 0), (.12, .25), (.5, .52), (.86, .28)]), ("line", [(.86, .1), (.82, 1)])],
        [("loop", [(.5, 0), (.12, .25), (.5, .5), (.86, .28)]),
         ("curve", [(.86, .1), (.86, .6), (.65, .95), (.3, .95)])],
        [("curve", [(.86, .3), (.5, .5), (.12, .28), (.5, 0), (.86, .2), (.8, 1)])]],
}


def _smooth(points, closed, steps=16):
    """A Catmull-Rom curve through ``points`` (``[N, 2]``), ``steps`` points a segment."""
    p = np.asarray(points, np.float64)
    p = np.concatenate([p[-1:], p, p[:2]]) if closed else np.concatenate([p[:1], p, p[-1:]])
    t = np.linspace(0, 1, steps, endpoint=False)[:, None]
    out = [0.5 * (2 * b + (c - a) * t + (2 * a - 5 * b + 4 * c - d) * t ** 2
                  + (3 * b - a - 3 * c + d) * t ** 3)
           for a, b, c, d in zip(p, p[1:], p[2:], p[3:])]
    return np.concatenate(out + [p[-2:-1] if not closed else p[1:2]])


def pen_digit(index, height, rng):
    """A digit drawn as pen strokes: ``(ink float [height, w] in [0, 1], label)``."""
    label = index // 2 % 10  # both halves hold every digit equally often
    style = STYLES[label][rng.integers(len(STYLES[label]))]
    aspect, slant = rng.uniform(0.55, 0.9), rng.uniform(-0.15, 0.35)  # most lean forward
    angle, wobble = np.radians(rng.uniform(-8, 8)), rng.uniform(0.01, 0.04)
    width = max(rng.uniform(0.035, 0.16), 1.2 / height)  # thin pen to marker
    strokes = []
    for kind, points in style:
        p = np.asarray(points) + rng.normal(0, wobble, (len(points), 2))
        p = _smooth(p, kind == "loop") if kind != "line" else p
        x, y = (p[:, 0] - 0.5) * aspect - slant * (p[:, 1] - 0.5), p[:, 1] - 0.5
        strokes.append(np.stack([x * np.cos(angle) - y * np.sin(angle),
                                 x * np.sin(angle) + y * np.cos(angle)], axis=1))
    # drawn large (Pillow's lines have hard edges), then reduced: smooth edges
    scale = min(1024, 4 * height)
    low = np.concatenate(strokes).min(axis=0) - width
    high = np.concatenate(strokes).max(axis=0) + width
    size = np.ceil((high - low) * scale).astype(int) + 2
    im = Image.new("L", tuple(size))
    draw, r = ImageDraw.Draw(im), width * scale / 2
    for s in strokes:
        xy = [tuple(q) for q in (s - low) * scale + 1]
        draw.line(xy, fill=255, width=max(1, round(2 * r)), joint="curve")
        for x, y in (xy[0], xy[-1]):  # round pen ends
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return _reduced(im, height), label


def _reduced(im, height):
    """An ink image scaled to ``height`` rows, as floats in [0, 1]."""
    w = max(1, round(im.width * height / im.height))
    method = Image.BOX if height < im.height else Image.BICUBIC
    return np.asarray(im.resize((w, height), method), np.float32).clip(0, 255) / 255


# ---------------------------------------------------------------------------------------
# handwriting fonts

# Debian package -> its font files whose digits look handwritten and are legible. Left
# out: outlined or hatched digits (fonts-femkeklaver, fonts-cabinsketch) and hairline
# copperplate (fonts-ecolier-court).
FONTS = {
    "fonts-bwht": [f"/usr/share/fonts/opentype/bwht/BecauseWe{name}-Regular.otf" for name in
                   ("Build", "Connect", "Create", "Learn", "Mentor", "Organize")],
    "fonts-comic-neue": [f"/usr/share/fonts/opentype/comic-neue/ComicNeue-{name}.otf"
                         for name in ("Regular", "Bold", "Italic", "Light")],
    "fonts-dancingscript": ["/usr/share/fonts/opentype/dancingscript/DancingScript-Regular.otf",
                            "/usr/share/fonts/opentype/dancingscript/DancingScript-Bold.otf"],
    "fonts-kaushanscript": ["/usr/share/fonts/opentype/kaushanscript/KaushanScript-Regular.otf"],
    "fonts-breip": ["/usr/share/fonts/truetype/breip/Breip.ttf"],
    "fonts-dkg-handwriting": [f"/usr/share/fonts/truetype/fifthhorseman/dkg{name}.ttf"
                              for name in ("", "Bd", "It", "BI")],
    "fonts-humor-sans": ["/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf"],
    "fonts-klee": ["/usr/share/fonts/truetype/klee/KleeOne-Regular.ttf",
                   "/usr/share/fonts/truetype/klee/KleeOne-SemiBold.ttf"],
    "fonts-kristi": ["/usr/share/fonts/truetype/kristi/Kristi.ttf"],
}


def font_files():
    """The font files of :data:`FONTS`, all of them; :class:`SourceUnavailable` if any
    is missing (so that the source is the same on every machine)."""
    missing = sorted(package for package, files in FONTS.items()
                     if not all(Path(f).is_file() for f in files))
    if missing:
        raise SourceUnavailable(f"the 'fonts' source needs handwriting fonts; install them "
                                f"with 'apt-get install {' '.join(missing)}'")
    return [f for files in FONTS.values() for f in files]


def font_digit(index, height, rng):
    """A digit in a handwriting font: ``(ink float [height, w] in [0, 1], label)``."""
    label = index // 2 % 10
    files = font_files()
    size = int(np.clip(1.5 * height, 120, 1500))
    font = ImageFont.truetype(files[rng.integers(len(files))], size)
    thicker = int(size * rng.choice([0, 0, rng.uniform(0, 0.04)]))  # now and then a marker
    im = Image.new("L", (3 * size, 3 * size))
    ImageDraw.Draw(im).text((size, size), str(label), font=font, fill=255,
                            stroke_width=thicker, stroke_fill=255)
    slant, stretch = rng.uniform(-0.25, 0.25), rng.uniform(0.8, 1.2)
    im = im.transform(im.size, Image.AFFINE, (1 / stretch, slant, -slant * 1.5 * size, 0, 1, 0),
                      Image.BICUBIC)
    im = im.rotate(rng.uniform(-8, 8), Image.BICUBIC)
    return _reduced(im.crop(im.getbbox()), height), label


# ---------------------------------------------------------------------------------------
# UCI optical digits (scikit-learn)

@lru_cache(maxsize=1)
def uci_digits():
    """The 1,797 UCI digits ``(float [N, 8, 8] in [0, 1], int labels [N])``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SourceUnavailable("the 'uci' source needs scikit-learn; install it with "
                                "'pip install scikit-learn'") from None
    digits = load_digits()
    return digits.images.astype(np.float32) / 16, digits.target.astype(np.int64)


def uci_digit(index, height, rng):
    """UCI digit ``index`` upscaled smoothly and brightened: ``(ink, label)``.

    Each of the 8x8 pixels counts the inked pixels of a 4x4 block of the writer's 32x32
    bitmap, so a stroke that only grazes a block is grey: brightening keeps it (cutting
    the grey away would open a 0 into a C), as a soft pencil line."""
    images, labels = uci_digits()
    im = Image.fromarray(images[index], "F").resize((height, height), Image.BICUBIC)
    return np.clip(np.asarray(im) * rng.uniform(1.3, 2.0), 0, 1), int(labels[index])


SOURCES = {"pen": pen_digit, "fonts": font_digit, "uci": uci_digit}
TITLES = {"pen": "Synthetic pen strokes", "fonts": "Handwriting fonts",
          "uci": "UCI writers' digits (scikit-learn, 8x8 upscaled)"}
CAPACITY = {"uci": 1797}  # how many distinct items a source has; the others have no end


def check(source):
    """Raise :class:`SourceUnavailable` (one line, naming the install) if ``source``
    cannot run here; a ``KeyError`` for an unknown name."""
    if source not in SOURCES:
        raise KeyError(f"no source {source!r}; choose from {', '.join(SOURCES)}")
    if source == "fonts":
        font_files()
    elif source == "uci":
        uci_digits()


# ---------------------------------------------------------------------------------------
# pictures and files

PEN_COLOURS = [(20, 20, 25), (25, 40, 150), (60, 60, 70), (160, 30, 35), (30, 100, 50)]


def photograph(ink_of, rng):
    """A user's picture of a digit: ``uint8 [H, W]`` grey or ``[H, W, 3]`` colour.

    ``ink_of(height)`` draws the digit ``height`` pixels tall as ink in [0, 1]. The
    picture is 28 to 1200 pixels a side (evenly on a log scale); the digit takes 45% to
    85% of its height, anywhere in it.
    """
    h = int(np.exp(rng.uniform(*np.log(SIDES))))
    w = int(np.clip(h * rng.uniform(0.75, 1.33), *SIDES))
    ink = ink_of(max(8, int(min(h, w) * rng.uniform(0.45, 0.85))))
    if ink.shape[1] > 0.95 * w:  # too wide for the picture: narrower
        size = (int(0.95 * w), ink.shape[0])
        ink = np.asarray(Image.fromarray(ink, "F").resize(size, Image.BILINEAR)).clip(0, 1)
    ih, iw = ink.shape
    canvas = np.zeros((h, w), np.float32)
    top, left = rng.integers(0, h - ih + 1), rng.integers(0, w - iw + 1)
    canvas[top:top + ih, left:left + iw] = ink
    if rng.random() < 0.25:  # out of focus
        blur = ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0) * ih / 100)
        canvas = np.asarray(Image.fromarray((canvas * 255).astype(np.uint8)).filter(blur),
                            np.float32) / 255
    colour = rng.random() < 0.35
    if rng.random() < 0.7:  # dark ink on light paper
        paper = rng.uniform(150, 250)
        pen = (np.array(PEN_COLOURS[rng.integers(len(PEN_COLOURS))], np.float32)
               if colour else rng.uniform(0, paper - 90, 1))
    else:  # light on dark: chalk on a board, a screen
        paper, pen = rng.uniform(0, 70), rng.uniform(170, 255, 1)
    tint = rng.uniform(0.85, 1.0, 3) if colour else np.ones(1)
    ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
    light = rng.uniform(-40, 40) * ys + rng.uniform(-40, 40) * xs  # uneven light
    if rng.random() < 0.3:  # a soft shadow somewhere
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.2, 0.6)
        light -= rng.uniform(10, 50) * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / r ** 2)
    paper = paper * tint + light[..., None]
    image = paper + (pen - paper) * canvas[..., None]
    image += rng.normal(0, rng.uniform(1, 8), image.shape)  # sensor noise
    image = image.clip(0, 255).round().astype(np.uint8)
    return image if colour else image[..., 0]


def _rng(source, index, seed):
    return np.random.default_rng([seed, zlib.crc32(source.encode()), index])


def item(source, index, seed=0):
    """Item ``index`` of ``source``: ``(image uint8, label, file suffix, JPEG quality)``."""
    rng = _rng(source, index, seed)
    label = []

    def ink_of(height):
        ink, digit = SOURCES[source](index, height, rng)
        label.append(digit)
        return ink

    image = photograph(ink_of, rng)
    if rng.random() < 0.6:
        return image, label[0], ".jpg", int(rng.integers(35, 96))
    return image, label[0], ".png", None


def indices(source, count, half=None):
    """The first ``count`` item numbers of ``source``, of one half (``"tune"`` or
    ``"report"``) or of both; fewer where the source has no more."""
    step, first = (1, 0) if half is None else (2, HALVES[half])
    stop = CAPACITY.get(source, first + step * count)
    return list(range(first, stop, step))[:count]


def make(source, count, seed=0, half=None):
    """``count`` images of ``source`` (of ``half``, if given) and their labels:
    ``(list of uint8 images, grey [H, W] or colour [H, W, 3], int64 labels)``."""
    check(source)
    images, labels = [], []
    for i in indices(source, count, half):
        image, label, _, _ = item(source, i, seed)
        images.append(image)
        labels.append(label)
    return images, np.array(labels, np.int64)


def write(source, folder, count, seed=0, half=None):
    """Save ``count`` images of ``source`` into ``folder`` as ``<label>_<index>.png`` or
    ``.jpg``; their ``(paths, int64 labels)``."""
    check(source)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths, labels = [], []
    for i in indices(source, count, half):
        image, label, suffix, quality = item(source, i, seed)
        path = folder / f"{label}_{i:05d}{suffix}"
        Image.fromarray(image).save(path, **({"quality": quality} if quality else {}))
        paths.append(path)
        labels.append(label)
    return paths, np.array(labels, np.int64)


def grid(source, path, count=60, seed=0, half="tune", columns=10, cell=96):
    """A contact sheet of ``count`` images of ``source`` (the tune half by default), each
    shown in grey in a ``cell``-pixel square with its label; to look at the generators."""
    images, labels = make(source, count, seed, half)
    rows = -(-len(images) // columns)
    sheet = Image.new("L", (columns * cell, rows * (cell + 14)), 128)
    draw = ImageDraw.Draw(sheet)
    for k, (image, label) in enumerate(zip(images, labels)):
        im = Image.fromarray(image).convert("L")
        scale = (cell - 4) / max(im.size)  # small pictures enlarged, large ones reduced
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
        x, y = k % columns * cell, k // columns * (cell + 14)
        sheet.paste(im, (x + 2, y + 2))
        draw.text((x + 4, y + cell), f"{label}  {image.shape[1]}x{image.shape[0]}", fill=255)
    sheet.save(path)
    return path
