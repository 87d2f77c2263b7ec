"""Accuracy on the preprocessing's blind spots: the preprocessing as committed at f7e469d
against today's.

    python benchmarks/blind_spots.py --model-dir DIR [--model-dir DIR2] --data-dir ../shared/mnist

For each blind spot, 100 MNIST test digits become images as a user makes them
(recognize_digits.handwriting: tiny 8x8 to 16x16 images, framed photos, thin strokes
on 900-2000 pixel drawings, digits cropped tight, coloured ink on coloured paper) and
are written to files; the model reads each file loaded the old way (f7e469d's grey
conversion and mnist_style, taken from git at run time) and today's (load_image). A
refused image counts as wrong. The figures are on test digits of odd index: tune on the
even ones (--half even), never on these.
"""

import argparse
import ast
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
from PIL import Image

from recognize_digits import InferenceModel, load_image, load_mnist
from recognize_digits.own_digits import handwriting
from recognize_digits.data import normalize
from recognize_digits.errors import ImageError
from recognize_digits.infer import open_image

ROOT = Path(__file__).resolve().parents[1]
OLD = "f7e469d"

# category: (how the images are made, share saved as JPEG rather than PNG). Drawings
# (tiny, thin strokes) are PNG; coloured ones too, since a colour JPEG is decoded grey.
CATEGORIES = {
    "tiny (8x8 to 16x16)": (handwriting.tiny, 0),
    "framed (frame, drawn box, paper edge, shadow)": (handwriting.framed, 0.6),
    "thin strokes, 900-2000 px": (handwriting.thin_strokes_large, 0),
    "cropped tight": (handwriting.tight_crop, 0.5),
    "coloured ink on coloured paper": (handwriting.coloured, 0),
    "user-like (benchmarks/handwriting.py)": (handwriting.user_like, 0.6),
}


def old_preprocessing(revision=OLD):
    """``load(path)``: an image file as the model's input, the way ``revision`` made it."""
    def show(path):
        return subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:{path}"],
                              check=True, capture_output=True, text=True).stdout

    preprocess = types.ModuleType("recognize_digits._old_preprocess")
    preprocess.__package__ = "recognize_digits"  # for its relative imports
    exec(compile(show("recognize_digits/preprocess.py"), f"{revision}:preprocess.py", "exec"),
         preprocess.__dict__)
    source = show("recognize_digits/infer.py")
    to_grey = next(node for node in ast.parse(source).body
                   if isinstance(node, ast.FunctionDef) and node.name == "to_grey")
    namespace = {"np": np, "Image": Image}
    exec(ast.get_source_segment(source, to_grey), namespace)

    def load(path):
        grey = namespace["to_grey"](open_image(path))
        return normalize(preprocess.mnist_style(np.asarray(grey)))
    return load


def inputs(load, paths):
    """The model's inputs and which images were refused (their input left blank)."""
    out, refused = np.zeros((len(paths), 1, 28, 28), np.float32), np.zeros(len(paths), bool)
    for i, path in enumerate(paths):
        try:
            out[i] = load(path)
        except ImageError:
            refused[i] = True
    return out, refused


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, action="append")
    parser.add_argument("--data-dir")
    parser.add_argument("--count", type=int, default=100, help="images per blind spot")
    parser.add_argument("--half", choices=["odd", "even"], default="odd",
                        help="test digits of odd index (report) or even (tuning)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="only the categories whose name contains this")
    args = parser.parse_args()

    mnist = load_mnist(args.data_dir)
    models = {d: InferenceModel(d) for d in args.model_dir}
    ways = {f"old ({OLD})": old_preprocessing(), "new": load_image}
    results = {d: {} for d in models}  # model: category: way: (accuracy, refused)
    indices = np.arange(len(mnist.test_images))[1 if args.half == "odd" else 0::2]
    for k, (name, (make, jpeg)) in enumerate(CATEGORIES.items()):
        if args.only and args.only not in name:
            continue
        rng = np.random.default_rng([args.seed, k])
        pick = rng.choice(indices, args.count, replace=False)
        with tempfile.TemporaryDirectory() as folder:
            paths = handwriting.save_user_like(mnist.test_images[pick], Path(folder), rng, make,
                                               jpeg)
            for way, load in ways.items():
                x, refused = inputs(load, paths)
                for d, model in models.items():
                    right = (model.predict(x)[0] == mnist.test_labels[pick]) & ~refused
                    results[d].setdefault(name, {})[way] = (right.mean(), refused.sum())
        print(f"{name}: done", file=sys.stderr)
    for d in models:
        print(f"\nModel {d}: {args.count} images per row from MNIST test digits of "
              f"{args.half} index\n")
        print("| blind spot | " + " | ".join(ways) + " |\n|---|" + "---|" * len(ways))
        for name, row in results[d].items():
            cells = [f"{100 * acc:.0f}%" + (f" ({n} refused)" if n else "")
                     for acc, n in row.values()]
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
