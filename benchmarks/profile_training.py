"""Where LeNet-5's training time goes: per operator, per step, and per phase of a process.

    python benchmarks/profile_training.py [--data-dir ../shared/mnist] [--steps 300] [--no-process]

1. Paddle's profiler over ``--steps`` training steps (batch 64, Adam 0.001, after a
   warm-up) of two programs, each in its own process: the package's (as ``train`` builds
   and speeds it up) and the plain-layer baseline (stock ``nn.Conv2D`` with its bias,
   Paddle's default kernels). One table: milliseconds per step of every operator,
   forward, backward and optimizer, and what is left of the step outside the operators
   (the executor's own work, feeding and fetching).
2. A whole ``train --model cnn --epochs 1`` run in a fresh process, split into import,
   data loading, building the programs, training, the validation and test passes, and
   saving.
"""

import argparse
import collections
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
WARMUP = 20


def kind(op):
    """forward, backward or optimizer, from an operator's name."""
    if op.startswith("adam"):
        return "optimizer"
    return "backward" if op.rstrip("_").endswith("_grad") or op == "full_like" else "forward"


def profile_steps(variant, data_dir, steps):
    """{op: ms per step}, plus "(step)" for the whole step, of ``steps`` steps."""
    import numpy as np
    import paddle
    import paddle.profiler as profiler

    from recognize_digits import load_mnist
    from recognize_digits.data import batches

    if variant == "package":
        from recognize_digits.plumbing import fast_cpu as speed
        from recognize_digits.static_graph import Programs

        paddle.enable_static()
        programs = Programs("cnn", seed=0)
        exe = paddle.static.Executor(paddle.CPUPlace())
        failed = speed.speed_up(programs, exe)
        if failed:
            raise SystemExit(f"the fast path failed: {failed}")
        exe.run(programs.startup)
    else:
        from throughput import plain_programs
        programs, exe = plain_programs()
    data = load_mnist(data_dir)
    n = (WARMUP + steps) * 64
    feed = batches(data.train_images[:n], data.train_labels[:n], 64, True,
                   np.random.default_rng(0))
    with tempfile.TemporaryDirectory() as trace:
        with profiler.Profiler(targets=[profiler.ProfilerTarget.CPU],
                               scheduler=(WARMUP, WARMUP + steps),
                               on_trace_ready=profiler.export_chrome_tracing(trace)) as prof:
            for x, y in feed:
                exe.run(programs.main, feed={"img": x, "label": y},
                        fetch_list=[programs.avg_cost, programs.acc])
                prof.step()
        events = json.loads(next(Path(trace).glob("*.json")).read_text())["traceEvents"]
    times = collections.Counter()
    for e in events:
        if e.get("cat") == "Operator":
            # "pd_op.conv2d_grad[0.61 ms]" -> "conv2d_grad"; oneDNN's ops keep their prefix
            times[re.sub(r"\[.*\]$", "", e["name"]).removeprefix("pd_op.")] += e.get("dur", 0)
        elif e.get("cat") == "ProfileStep":
            times["(step)"] += e.get("dur", 0)
    return {op: us / 1000 / steps for op, us in times.items()}


def process_phases(data_dir):
    """Seconds of each phase of one whole-process training pass, timed inside it."""
    start = time.perf_counter()
    import importlib

    import recognize_digits  # noqa: F401
    train = importlib.import_module("recognize_digits.training")
    phases = collections.Counter(**{"import": time.perf_counter() - start})

    def timed(name, function):
        def wrapper(*args, **kwargs):
            begin = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                phases[name] += time.perf_counter() - begin
        return wrapper

    train.load_mnist = timed("data loading", train.load_mnist)
    loop = train.Training
    loop.start = timed("programs and start-up", loop.start)
    loop.run_pass = timed("training", loop.run_pass)
    train.StaticEngine.test = timed("validation and test passes", train.StaticEngine.test)
    loop.save_model = timed("saving", loop.save_model)
    with tempfile.TemporaryDirectory() as save_dir:
        train.train("cnn", epochs=1, data=(data_dir, False), save_dir=save_dir, seed=0,
                    log=lambda *a: None)
    phases["total (after the interpreter started)"] = time.perf_counter() - start
    return dict(phases)


def spawn(*args):
    out = subprocess.run([sys.executable, __file__, *map(str, args)], capture_output=True,
                         text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(out.stderr.strip().splitlines()[-1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="the full MNIST (default: as the package finds it)")
    parser.add_argument("--steps", type=int, default=300, help="profiled steps (default 300)")
    parser.add_argument("--no-process", action="store_true", help="skip the whole-process part")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    extra = ["--data-dir", args.data_dir] if args.data_dir else []
    if args.worker == "process":
        return print(json.dumps(process_phases(args.data_dir)))
    if args.worker:
        return print(json.dumps(profile_steps(args.worker, args.data_dir, args.steps)))

    variants = ("package", "plain")
    results = {v: spawn("--worker", v, "--steps", args.steps, *extra) for v in variants}
    print(f"LeNet-5 training, batch 64: milliseconds per step over {args.steps} steps\n")
    print("| operator | kind | " + " | ".join(variants) + " |")
    print("|---|---|" + "---|" * len(variants))
    ops = sorted({op for r in results.values() for op in r if op != "(step)"},
                 key=lambda op: -max(r.get(op, 0) for r in results.values()))
    for op in ops:
        print(f"| {op} | {kind(op)} | "
              + " | ".join(f"{results[v].get(op, 0):.3f}" for v in variants) + " |")
    for label, pick in (("all forward", "forward"), ("all backward", "backward"),
                        ("all optimizer", "optimizer")):
        print(f"| **{label}** | | " + " | ".join(
            f"{sum(t for op, t in results[v].items() if op != '(step)' and kind(op) == pick):.3f}"
            for v in variants) + " |")
    print("| outside the operators (executor, feed, fetch) | | " + " | ".join(
        f"{results[v]['(step)'] - sum(t for op, t in results[v].items() if op != '(step)'):.3f}"
        for v in variants) + " |")
    print("| **whole step** | | " + " | ".join(
        f"**{results[v]['(step)']:.3f}**" for v in variants) + " |")
    if args.no_process:
        return
    phases = spawn("--worker", "process", *extra)
    print("\nOne pass as a process (`train --model cnn --epochs 1`), seconds\n")
    print("| phase | seconds |\n|---|---|")
    for name, seconds in phases.items():
        print(f"| {name} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
