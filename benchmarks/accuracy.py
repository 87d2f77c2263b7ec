"""Train the three models with the chapter's settings and print their test accuracy.

    python benchmarks/accuracy.py --data-dir ../shared/mnist [--seeds 0 1 2] [--models cnn]

Each run is 5 passes, batch 64, Adam 0.001; the accuracy of a run is that of its best
pass (lowest test cost), as the chapter reports it.
"""

import argparse
import statistics
import tempfile
import time

from recognize_digits import load_mnist, train
from recognize_digits.models import MODELS

CHAPTER = {"softmax": 92.34, "mlp": 97.66, "cnn": 99.20}
TARGET = {"softmax": 91.5, "mlp": 97.3, "cnn": 98.6}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="full MNIST folder (default: as the package finds it)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    data = load_mnist(args.data_dir)
    print(f"data: {data.source}; {args.epochs} passes, batch 64, Adam 0.001; seeds {args.seeds}")
    rows = []
    for name in args.models:
        accs, seconds = [], []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as save_dir:
                start = time.perf_counter()
                m = train(name, epochs=args.epochs, data=data, save_dir=save_dir, seed=seed,
                          event_handler=lambda event: None, log=lambda *a: None)
            best = m["passes"][m["best_pass"]]
            accs.append(100 * best["test_acc"])
            seconds.append((time.perf_counter() - start) / args.epochs)
            print(f"  {name} seed {seed}: best pass {m['best_pass']}, test accuracy "
                  f"{accs[-1]:.2f}%, {seconds[-1]:.1f} s/pass", flush=True)
        rows.append((name, accs, statistics.mean(seconds)))

    print("\n| model | test accuracy (best pass of %d) | runs | target | chapter | s/pass |" % args.epochs)
    print("|---|---|---|---|---|---|")
    for name, accs, sec in rows:
        spread = f" (min {min(accs):.2f}, max {max(accs):.2f})" if len(accs) > 1 else ""
        print(f"| {name} | {statistics.mean(accs):.2f}%{spread} | {len(accs)} | "
              f">= {TARGET[name]}% | {CHAPTER[name]}% | {sec:.1f} |")


if __name__ == "__main__":
    main()
