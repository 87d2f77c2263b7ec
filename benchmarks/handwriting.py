"""Accuracy on digits as users make them, from MNIST and from sources that are not MNIST.

    python benchmarks/handwriting.py --model-dir DIR [--model-dir DIR2] [--data-dir ../shared/mnist]
        [--half report|tune] [--count 1000] [--json results.json]

Sources (each image a user-like picture: dark on light or light on dark, off-centre, of
any size, JPEG or PNG, noise, uneven light):

* ``mnist``: MNIST test digits made user-like (recognize_digits.handwriting);
* ``pen``, ``fonts``, ``uci``: digits not derived from MNIST (recognize_digits.sources):
  synthetic pen strokes, handwriting fonts, the UCI writers' digits of scikit-learn.
  Their ``--half`` (``report`` by default) is used: tune on the tune half only.

Each image is loaded three ways: plain resize to 28x28 (the chapter), today's
preprocessing (``load_image`` as committed at f7e469d, loaded from git at run time) and
the new preprocessing (``load_image`` in the working tree); an image a pipeline refuses
counts as misread. Every model in ``--model-dir`` (say a plain and an augmented LeNet-5)
reads every input; the tables also give each model's accuracy on the 10,000 MNIST test
digits, and an overall row pools the non-MNIST sources.
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from recognize_digits import InferenceModel, evaluate, load_image, load_mnist
from recognize_digits.own_digits import sources
from recognize_digits.errors import ImageError
from recognize_digits.own_digits.handwriting import save_user_like

ROOT = Path(__file__).resolve().parents[1]
TODAY = "f7e469d"  # the revision whose preprocessing is "today's"
PIPELINES = {
    "plain": "plain resize to 28x28 (the chapter)",
    "today": f"today's preprocessing ({TODAY})",
    "new": "new preprocessing (working tree)",
}


def module_from_git(name, path, replace=()):
    """``path`` as committed at TODAY, imported as ``recognize_digits.<name>`` (so that
    its relative imports work), with the text replacements ``replace`` made first."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{TODAY}:{path}"], check=True,
                          capture_output=True, text=True).stdout
    for old, new in replace:
        text = text.replace(old, new)
    full = f"recognize_digits.{name}"
    spec = importlib.util.spec_from_loader(full, loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "recognize_digits"
    sys.modules[full] = module
    exec(compile(text, f"{TODAY}:{path}", "exec"), module.__dict__)
    return module


def todays_load_image():
    """``load_image`` as it was at TODAY: its own infer.py on its own preprocess.py."""
    module_from_git("_preprocess_today", "recognize_digits/preprocess.py")
    infer = module_from_git("_infer_today", "recognize_digits/infer.py",
                            [("from .preprocess import", "from ._preprocess_today import")])
    return infer.load_image


def load_all(paths, load):
    """Inputs ``[N, 1, 28, 28]`` and a mask of the images ``load`` refused (left blank)."""
    inputs, refused = np.zeros((len(paths), 1, 28, 28), np.float32), np.zeros(len(paths), bool)
    for i, path in enumerate(paths):
        try:
            inputs[i] = load(path)[0]
        except ImageError:
            refused[i] = True
    return inputs, refused


def predict(model, inputs, batch=500):
    return np.concatenate([model.predict(inputs[i:i + batch])[0]
                           for i in range(0, len(inputs), batch)])


def measure(paths, labels, models, loaders):
    """{pipeline: {"refused": n, "accuracy": {model: a}, "right": {model: bool [N]}}}."""
    out = {}
    for key, load in loaders.items():
        inputs, refused = load_all(paths, load)
        right = {name: (predict(m, inputs) == labels) & ~refused for name, m in models.items()}
        out[key] = {"refused": int(refused.sum()), "right": right,
                    "accuracy": {name: float(r.mean()) for name, r in right.items()}}
    return out


def table(title, rows, models, mnist_test):
    lines = [f"\n### {title}\n", "| input | " + " | ".join(models) + " |",
             "|---|" + "---|" * len(models),
             "| MNIST test digits (10,000, as MNIST has them) | "
             + " | ".join(f"{100 * mnist_test[m]:.2f}%" for m in models) + " |"]
    for key, label in PIPELINES.items():
        refused = f" ({rows[key]['refused']} refused)" if rows[key]["refused"] else ""
        lines.append(f"| {label}{refused} | "
                     + " | ".join(f"{100 * rows[key]['accuracy'][m]:.2f}%" for m in models) + " |")
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", action="append", required=True,
                        help="a saved model; repeat for several (plain, augmented)")
    parser.add_argument("--data-dir", help="the full MNIST (for its test digits)")
    parser.add_argument("--half", choices=sorted(sources.HALVES), default="report",
                        help="which half of the non-MNIST sources (default: report)")
    parser.add_argument("--count", type=int, default=1000, help="images per source")
    parser.add_argument("--sources", default="mnist," + ",".join(sources.SOURCES),
                        help="comma-separated (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    parser.add_argument("--keep", help="write the images into this folder (else a temporary one)")
    parser.add_argument("--show-errors", type=int, default=0, metavar="N",
                        help="list up to N images per source that the new preprocessing and "
                             "the last model misread (tune half only)")
    args = parser.parse_args()
    if args.show_errors and args.half != "tune":
        parser.error("--show-errors lists tune-half images only: the report half is not "
                     "looked at")

    mnist = load_mnist(args.data_dir)
    models = {Path(d).name: InferenceModel(d) for d in args.model_dir}
    mnist_test = {name: evaluate(m, mnist.test_images, mnist.test_labels)[1]
                  for name, m in models.items()}
    loaders = {"plain": lambda p: load_image(p, preprocess=False),
               "today": todays_load_image(), "new": load_image}
    results = {"half": args.half, "count": args.count, "seed": args.seed,
               "models": {name: str(d) for name, d in zip(models, args.model_dir)},
               "pipelines": PIPELINES, "mnist_test": mnist_test, "sources": {}}
    print(f"Model(s): {', '.join(args.model_dir)}; {args.count} images per source, "
          f"{args.half} half of the non-MNIST sources; seed {args.seed}")
    pooled = {}
    with tempfile.TemporaryDirectory() as temp:
        root = Path(args.keep or temp)
        for name in args.sources.split(","):
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            if name == "mnist":
                rng = np.random.default_rng(args.seed)
                pick = rng.choice(len(mnist.test_images), args.count, replace=False)
                labels = mnist.test_labels[pick].astype(np.int64)
                paths = save_user_like(mnist.test_images[pick], folder, rng)
                title = f"MNIST test digits as user-like images ({len(paths)})"
            else:
                try:
                    paths, labels = sources.write(name, folder, args.count, args.seed, args.half)
                except sources.SourceUnavailable as e:
                    print(f"\n### {name}: skipped, {e}")
                    continue
                title = f"{sources.TITLES[name]} ({len(paths)} images, {args.half} half)"
            rows = measure(paths, labels, models, loaders)
            table(title, rows, list(models), mnist_test)
            results["sources"][name] = {
                "images": len(paths), "refused": {k: r["refused"] for k, r in rows.items()},
                "accuracy": {k: r["accuracy"] for k, r in rows.items()}}
            if name != "mnist":
                for key, r in rows.items():
                    for m, right in r["right"].items():
                        pooled.setdefault(key, {}).setdefault(m, []).append(right)
            if args.show_errors:
                wrong = [p for p, ok in zip(paths, rows["new"]["right"][list(models)[-1]])
                         if not ok][:args.show_errors]
                print(f"misread ({name}, new preprocessing, {list(models)[-1]}): "
                      + " ".join(str(p) for p in wrong))
    if pooled:
        names = [n for n in results["sources"] if n != "mnist"]
        overall = {k: {m: float(np.concatenate(v).mean()) for m, v in per.items()}
                   for k, per in pooled.items()}
        worst = {k: {m: min(results["sources"][n]["accuracy"][k][m] for n in names)
                     for m in models} for k in PIPELINES}
        results["overall"] = {"sources": names, "accuracy": overall, "worst_source": worst}
        print(f"\n### Summary, {args.half} half\n")
        print("| source | " + " | ".join(f"{PIPELINES[k].split(' (')[0]}, {m}"
                                         for k in ("today", "new") for m in models) + " |")
        print("|---|" + "---|" * (2 * len(models)))
        for n, r in results["sources"].items():
            print(f"| {n} ({r['images']}) | " + " | ".join(
                f"{100 * r['accuracy'][k][m]:.2f}%" for k in ("today", "new") for m in models) + " |")
        print(f"| **overall, not MNIST ({' + '.join(names)})** | " + " | ".join(
            f"**{100 * overall[k][m]:.2f}%**" for k in ("today", "new") for m in models) + " |")
        print("| worst non-MNIST source | " + " | ".join(
            f"{100 * worst[k][m]:.2f}%" for k in ("today", "new") for m in models) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
