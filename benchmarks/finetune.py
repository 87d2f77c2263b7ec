"""A learning curve of fine-tuning: how many of a writer's own digits a model needs.

    python benchmarks/finetune.py --model-dir DIR --data-dir ../shared/mnist
        [--half report|tune] [--sizes 10 30 100 300] [--seeds 0 1 2] [--count 500]
        [--epochs N] [--lr X] [--repeat N] [--json results.json]

For each source that is not MNIST (recognize_digits.sources: UCI's writers, handwriting
fonts, pen strokes) and each size, the model in DIR is fine-tuned on that many digits of
the source's TUNE half (a seeded choice among its first 300, rendered with the seed) and
then reads ``--count`` digits it never saw: with ``--half report`` (the figures to quote)
the REPORT half, with ``--half tune`` (to choose the defaults) later digits of the TUNE
half. The table gives the mean over seeds (and the range) of that accuracy, the MNIST
test accuracy after fine-tuning, and the seconds a fine-tuning took.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from recognize_digits import InferenceModel, load_image, load_mnist
from recognize_digits.own_digits import sources
from recognize_digits.own_digits.finetune import FINETUNE, REPEAT, finetune
from recognize_digits.infer import evaluate

POOL = 300  # the tune-half digits fine-tuning chooses from


def write_digits(source, folder, indices, seed):
    """Items of ``source`` as labelled files in ``folder``, rendered with ``seed``."""
    folder.mkdir(parents=True)
    for i in indices:
        image, label, suffix, quality = sources.item(source, i, seed)
        Image.fromarray(image).save(folder / f"{label}_{i:05d}{suffix}",
                                    **({"quality": quality} if quality else {}))


def unseen(source, half, count):
    """The digits a fine-tuned model is graded on, as model inputs, and their labels."""
    if half == "report":
        at = sources.indices(source, count, "report")
    else:  # beyond the pool that fine-tuning chooses from
        at = sources.indices(source, POOL + count, "tune")[POOL:]
    items = [sources.item(source, i, seed=0) for i in at]
    inputs = []
    for image, _, suffix, quality in items:
        with tempfile.NamedTemporaryFile(suffix=suffix) as f:  # read as a user's file is
            Image.fromarray(image).save(f.name, **({"quality": quality} if quality else {}))
            inputs.append(load_image(f.name))
    return np.concatenate(inputs), np.array([label for _, label, _, _ in items])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data-dir")
    parser.add_argument("--half", choices=["report", "tune"], default="report")
    parser.add_argument("--sources", nargs="+", default=["uci", "fonts", "pen"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 100, 300])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=FINETUNE["epochs"])
    parser.add_argument("--lr", type=float, default=FINETUNE["learning_rate"])
    parser.add_argument("--repeat", type=int, default=REPEAT)
    parser.add_argument("--json")
    args = parser.parse_args()

    mnist = load_mnist(args.data_dir)
    base = InferenceModel(args.model_dir)
    base_mnist = evaluate(base, mnist.test_images, mnist.test_labels)[1]
    print(f"{args.model_dir}: fine-tuned {args.epochs} passes, lr {args.lr}, repeat "
          f"{args.repeat}; graded on {args.count} unseen digits of the {args.half} half; "
          f"MNIST test {100 * base_mnist:.2f}% before; seeds {args.seeds}\n")
    print("| source | digits | accuracy on unseen digits | MNIST test after | seconds |")
    print("|---|---|---|---|---|")
    results = {}
    for source in args.sources:
        try:
            sources.check(source)
        except sources.SourceUnavailable as e:
            print(f"| {source} | skipped: {e} | | | |")
            continue
        x, y = unseen(source, args.half, args.count)
        before = float((base.predict(x)[0] == y).mean())
        print(f"| {source} | 0 (the model as it is) | {100 * before:.1f}% | "
              f"{100 * base_mnist:.2f}% | |")
        results[source] = {"before": before, "sizes": {}}
        for size in args.sizes:
            runs = []
            for seed in args.seeds:
                pool = sources.indices(source, POOL, "tune")
                chosen = np.random.default_rng(seed).permutation(pool)[:size]
                with tempfile.TemporaryDirectory() as work:
                    write_digits(source, Path(work) / "mine", chosen, seed)
                    start = time.perf_counter()
                    metrics = finetune(args.model_dir, Path(work) / "mine", Path(work) / "out",
                                       epochs=args.epochs, learning_rate=args.lr,
                                       repeat=args.repeat, seed=seed, data=mnist,
                                       event_handler=lambda event: None, log=lambda *a: None)
                    seconds = time.perf_counter() - start
                    tuned = InferenceModel(Path(work) / "out")
                    runs.append({"accuracy": float((tuned.predict(x)[0] == y).mean()),
                                 "mnist": metrics["finetune"]["after"]["mnist_test_accuracy"],
                                 "seconds": seconds})
            acc = [r["accuracy"] for r in runs]
            print(f"| {source} | {size} | {100 * np.mean(acc):.1f}% ({100 * min(acc):.1f}-"
                  f"{100 * max(acc):.1f}) | {100 * np.mean([r['mnist'] for r in runs]):.2f}% | "
                  f"{statistics.median(r['seconds'] for r in runs):.1f} |", flush=True)
            results[source]["sizes"][size] = runs
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "mnist_before": base_mnist,
                                               "results": results}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
