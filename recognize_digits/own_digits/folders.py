"""Your own digits in a folder, labelled by where they lie (sub-folders 0 to 9, or the
digit first in each file name): what ``evaluate --images`` scores and ``finetune`` learns."""

import re
from pathlib import Path

import numpy as np

from ..errors import ImageError
from ..infer import load_image

# one ASCII digit, then anything but a digit: 3_mine.png and 3.png, not 13.png or 2024_3.png
_LABEL = re.compile(r"([0-9])(?![0-9])")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def load_labelled_images(folder, preprocess=True):
    """Your own digits, labelled by where they lie: in sub-folders ``0`` to ``9``, or with
    the digit as the first character of the file name, followed by anything but another
    digit (``3_mine.png``; ``13.png`` or ``20240501_3.png`` are not labelled).

    Returns ``(paths, labels, inputs, skipped)``: the inputs ``[N, 1, 28, 28]`` as
    :func:`load_image` makes them, and ``(path, reason)`` for every image file that
    could not be read, so one bad file does not spoil the rest.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: no such folder; give a folder of your digit images")
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        parent, label = path.parent.name, _LABEL.match(path.name)
        if path.parent != folder and len(parent) == 1 and parent in "0123456789":
            found.append((path, int(parent)))
        elif label:
            found.append((path, int(label.group(1))))
    if not found:
        raise ImageError(f"{folder}: no labelled images; put them in sub-folders 0 to 9, or "
                         f"start each file name with its digit (3_mine.png)")
    paths, labels, inputs, skipped = [], [], [], []
    for path, label in found:
        try:
            inputs.append(load_image(path, preprocess))
        except ImageError as e:
            skipped.append((path, str(e).removeprefix(f"{path}: ")))
            continue
        except MemoryError:  # one huge image must not cost the rest
            skipped.append((path, "too large to read in this machine's memory"))
            continue
        paths.append(path)
        labels.append(label)
    if not inputs:
        raise ImageError(f"{folder}: none of its {len(found)} images could be read "
                         f"({skipped[0][0].name}: {skipped[0][1]})")
    return paths, np.array(labels, np.int64), np.concatenate(inputs), skipped
