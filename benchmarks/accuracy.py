"""Train the three models with the chapter's settings and print their test accuracy.

    python benchmarks/accuracy.py --data-dir ../shared/mnist [--seeds 0 1 2] [--models cnn]
        [--graph static|dynamic] [--workers 2]

Each run is 5 passes, batch 64, Adam 0.001. 5,000 training images are held out; the
pass with the lowest validation cost is the run's model, and its test accuracy is the
run's accuracy (the test set grades the model, it does not choose it). ``--workers 2``
trains in 2 data-parallel processes (dynamic graph), each on half of every batch.
"""

import argparse
import statistics
import tempfile
import time

from recognize_digits import load_mnist, train
from recognize_digits.models import MODELS

CHAPTER = {"softmax": 92.34, "mlp": 97.66, "cnn": 99.20}
# (one run, mean of the seeds): the perceptron's is set by what the chapter's [-1, 1]
# inputs allow (see the README), not by the chapter's figure, which another network gave.
FLOOR = {"softmax": (91.5, 91.5), "mlp": (96.8, 97.0), "cnn": (98.6, 98.6)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="full MNIST folder (default: as the package finds it)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--graph", choices=["static", "dynamic"], default="static")
    parser.add_argument("--workers", type=int, default=1, help="data-parallel processes "
                        "(with --graph dynamic)")
    args = parser.parse_args()

    data = load_mnist(args.data_dir)
    print(f"data: {data.source}; {args.epochs} passes, batch 64, Adam 0.001, best pass by "
          f"validation cost; seeds {args.seeds}; {args.graph} graph, {args.workers} worker(s)")
    rows = []
    for name in args.models:
        accs, seconds, best_passes = [], [], []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as save_dir:
                start = time.perf_counter()
                m = train(name, epochs=args.epochs, data=data, save_dir=save_dir, seed=seed,
                          graph=args.graph, workers=args.workers,
                          event_handler=lambda event: None,
                          log=lambda *a: None)
            best = m["passes"][m["best_pass"]]
            accs.append(100 * best["test_acc"])
            best_passes.append(m["best_pass"])
            seconds.append((time.perf_counter() - start) / args.epochs)
            print(f"  {name} seed {seed}: best pass {m['best_pass']} (validation cost "
                  f"{best['val_cost']:.4f}, accuracy {100 * best['val_acc']:.2f}%), test accuracy "
                  f"{accs[-1]:.2f}%, {seconds[-1]:.1f} s/pass", flush=True)
        rows.append((name, accs, best_passes, statistics.mean(seconds)))

    print("\n| model | test accuracy, mean (min-max) | best passes | floor: one run / mean "
          "| chapter | s/pass |")
    print("|---|---|---|---|---|---|")
    for name, accs, best_passes, sec in rows:
        one, mean = FLOOR[name]
        ok = min(accs) >= one and statistics.mean(accs) >= mean
        print(f"| {name} | {statistics.mean(accs):.2f}% ({min(accs):.2f}-{max(accs):.2f}) | "
              f"{', '.join(map(str, best_passes))} | {one}% / {mean}% {'✓' if ok else '✗'} | "
              f"{CHAPTER[name]}% | {sec:.1f} |")


if __name__ == "__main__":
    main()
