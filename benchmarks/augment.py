"""What augmentation costs: LeNet-5 training steps with and without it, side by side.

    python benchmarks/augment.py [--data-dir ../shared/mnist] [--steps 200] [--rounds 5]

LeNet-5 is built and put on the fast CPU path as ``recognize_digits.train`` does it
(batch 64, Adam 0.001, seed 0), then trained on shuffled MNIST batches where plain and
augmented steps take turns, step by step: a plain step is the training step alone, an
augmented one also makes the batch's generator and augments the batch, as ``train(...,
augment=True)`` does before every step. Taking turns this closely gives both the same
machine: this one is shared, and its speed drifts by a factor of two within minutes.
Each round times ``--steps`` steps of each after a warm-up; the figure of a round is the
median step. Prints each round, the median over the rounds, the median of the rounds'
ratios, and the augmentation of one batch alone.
"""

import argparse
import statistics
import time

import numpy as np

WARMUP = 20


def lenet(threads=None):
    """The package's training program for LeNet-5, on its fast path, initialised: a
    function that runs one training step on a batch."""
    import paddle

    from recognize_digits.plumbing import fast_cpu as speed
    from recognize_digits.static_graph import Programs

    paddle.enable_static()
    paddle.seed(0)
    exe = paddle.static.Executor(paddle.CPUPlace())
    programs = Programs("cnn", seed=0)
    if speed.speed_up(programs, exe, threads):
        programs = Programs("cnn", seed=0)  # the plain kernels, as train() falls back
    exe.run(programs.startup)

    def step(x, y):
        exe.run(programs.main, feed={"img": x, "label": y},
                fetch_list=[programs.avg_cost, programs.acc])
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="the MNIST folder (default: the bundled sample)")
    parser.add_argument("--steps", type=int, default=200,
                        help="timed steps of each kind a round (default: 200)")
    parser.add_argument("--rounds", type=int, default=5, help="(default: 5)")
    args = parser.parse_args()

    from recognize_digits import load_mnist
    from recognize_digits.own_digits.augment import augment
    from recognize_digits.data import batches

    data = load_mnist(args.data_dir, sample=args.data_dir is None)
    step = lenet()
    shuffle = np.random.default_rng(0)

    def deal():  # shuffled batches of 64, pass after pass, as training deals them
        while True:
            yield from batches(data.train_images, data.train_labels, 64, True, shuffle)

    dealt, rounds = deal(), {False: [], True: []}
    for round_ in range(args.rounds):
        times = {False: [], True: []}
        for i in range(WARMUP + args.steps):
            for augmented in ((False, True) if i % 2 else (True, False)):  # either first
                x, y = next(dealt)
                if len(x) < 64:
                    x, y = next(dealt)  # a pass's last, smaller batch: not a full step
                start = time.perf_counter()
                if augmented:
                    x = augment(x, np.random.default_rng([0, round_, i]))
                step(x, y)
                times[augmented].append(time.perf_counter() - start)
        for augmented in (False, True):
            rounds[augmented].append(statistics.median(times[augmented][WARMUP:]))
        print(f"round {round_ + 1}: plain {1000 * rounds[False][-1]:.1f} ms/step, augmented "
              f"{1000 * rounds[True][-1]:.1f} ms/step", flush=True)

    plain, augmented = (statistics.median(rounds[a]) for a in (False, True))
    ratio = statistics.median(a / p for p, a in zip(rounds[False], rounds[True]))
    batch = next(dealt)[0]
    alone = []
    for i in range(200):
        start = time.perf_counter()
        augment(batch, np.random.default_rng([1, 0, i]))
        alone.append(time.perf_counter() - start)
    alone = statistics.median(alone)
    print(f"\nMedian of {args.rounds} rounds, {args.steps} timed steps of each kind (LeNet-5, "
          f"batch 64, {data.source}):\n")
    print("| training | ms/step | images/s | vs plain |")
    print("|---|---|---|---|")
    print(f"| plain | {1000 * plain:.1f} | {64 / plain:,.0f} | 1.00x |")
    print(f"| augmented | {1000 * augmented:.1f} | {64 / augmented:,.0f} | "
          f"{augmented / plain:.2f}x |")
    print(f"\nratio, augmented / plain, median of the rounds' own: {ratio:.2f}x")
    print(f"augmenting a batch of 64 alone: {1000 * alone:.2f} ms "
          f"({100 * alone / plain:.0f}% of a plain step)")


if __name__ == "__main__":
    main()
