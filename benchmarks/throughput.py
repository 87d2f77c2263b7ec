"""Training and prediction speed of LeNet-5, side by side in one run.

    python benchmarks/throughput.py [--data-dir ../shared/mnist] [--steps 300] [--against DIR]

Each training variant runs in its own process (so that flags and memory do not mix)
on the same data, batch 64, Adam 0.001, and reports images/s over ``--steps`` steps
after a warm-up, and its peak memory:

- project: the package's own training loop, ``recognize_digits.train``;
- project, dynamic mode: the same with ``graph="dynamic"`` (the Layer run eagerly);
- plain PIR: the same network from stock layers (``nn.Conv2D`` with its own bias) fed
  numpy batches, with Paddle's default CPU kernels: the baseline;
- chapter feeding: the plain network fed as the chapter fed it: a per-sample reader,
  ``paddle.reader.shuffle`` with a buffer of 500, ``paddle.batch`` of 64, each batch
  stacked into arrays;
- PyTorch: the same network in PyTorch eager mode (skipped when torch is missing).

Then evaluation and prediction speed, import time and the time of a whole
``recognize-digits predict`` process; and, taking turns, a whole one-pass
``recognize-digits train --model cnn --epochs 1`` process against the same work in a
PyTorch process (``benchmarks/pytorch_lenet.py``, 2 threads).

``--onnx`` runs only the ONNX side by side instead (it needs the ``[export]`` extra): each
of the three networks trained for one pass (seed 0), exported, then Paddle Inference and
ONNX Runtime on the same model, each in its own process, taking turns: the test set in
batches of 1,000 (images/s) and one image at a time (ms, median of 300), the largest
difference of their probabilities on the whole test set, the digits that differ, and the
file sizes. ``--json PATH`` also writes those figures.

``--against DIR`` also runs the package's own variants (both training loops and
prediction) with the package of another checkout (``git worktree add DIR COMMIT``), in
the same turns, and prints its figures beside this checkout's: how a change moved speed.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 20


def _timed_steps(step, batches, steps):
    """images/s of ``step(x, y)`` over ``steps`` batches after a warm-up."""
    for i, (x, y) in enumerate(batches):
        if i == WARMUP:
            start = time.perf_counter()
        if i == WARMUP + steps:
            return steps * len(x) / (time.perf_counter() - start)
        step(x, y)
    raise SystemExit("not enough data for the requested steps")


def _numpy_batches(data, steps):
    import numpy as np

    from recognize_digits.data import batches

    n = (WARMUP + steps + 1) * 64
    return batches(data.train_images[:n], data.train_labels[:n], 64, True,
                   np.random.default_rng(0))


def run_project(data, steps, graph="static", workers=1):
    try:
        from recognize_digits.events import StepEvent
        from recognize_digits.training import train
    except ImportError:  # an --against checkout from before the package's present layout
        from recognize_digits.train import StepEvent, train

    n = (WARMUP + steps) * 64
    data.train_images, data.train_labels = data.train_images[:n], data.train_labels[:n]
    data.test_images, data.test_labels = data.test_images[:64], data.test_labels[:64]
    times = []

    def handler(event):
        if isinstance(event, StepEvent):
            times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as save_dir:
        train("cnn", epochs=1, data=data, save_dir=save_dir, seed=0, event_handler=handler,
              log=lambda *a: None, graph=graph, workers=workers)
    return (len(times) - WARMUP) * 64 / (times[-1] - times[WARMUP - 1])


def run_dynamic(data, steps):
    return run_project(data, steps, graph="dynamic")


def run_two_workers(data, steps):
    """The dynamic loop in 2 data-parallel workers; the steps are timed here, as rank 0's
    events arrive."""
    return run_project(data, steps, graph="dynamic", workers=2)


def plain_programs():
    """The plain-layer baseline's programs, initialised, and its executor."""
    import paddle

    from recognize_digits import models
    from recognize_digits.engines.compare import ChapterConvPool
    from recognize_digits.static_graph import Programs

    models.ConvPool = ChapterConvPool  # stock layers in place of the package's
    paddle.enable_static()
    programs = Programs("cnn", seed=0)
    exe = paddle.static.Executor(paddle.CPUPlace())
    exe.run(programs.startup)
    return programs, exe


def _plain_step():
    programs, exe = plain_programs()

    def step(x, y):
        exe.run(programs.main, feed={"img": x, "label": y},
                fetch_list=[programs.avg_cost, programs.acc])
    return step


def run_plain(data, steps):
    return _timed_steps(_plain_step(), _numpy_batches(data, steps), steps)


def run_chapter(data, steps):
    import numpy as np
    import paddle

    from recognize_digits.data import normalize

    step = _plain_step()

    def reader():  # what paddle.dataset.mnist.train() yields: one sample at a time
        for image, label in zip(data.train_images, data.train_labels):
            yield normalize(image).reshape(784), int(label)

    def feeding():
        for batch in paddle.batch(paddle.reader.shuffle(reader, buf_size=500), 64)():
            yield (np.stack([image for image, _ in batch]).reshape(-1, 1, 28, 28),
                   np.array([[label] for _, label in batch], np.int64))
    return _timed_steps(step, feeding(), steps)


def run_pytorch(data, steps):
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(20),
                        nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(800, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.001)

    def step(x, y):
        loss = F.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y).view(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # the project's loop reads cost and accuracy back every step too
    return _timed_steps(step, _numpy_batches(data, steps), steps)


def run_pipeline(data, steps):
    """images/s of the package's batching alone (shuffled numpy batches, normalised)."""
    return _timed_steps(lambda x, y: None, _numpy_batches(data, steps), steps)


def worker(variant, data_dir, steps, model_dir):
    """Run one variant in this process; print its images/s and peak memory as JSON."""
    if variant == "PyTorch":
        try:  # before Paddle, so that torch keeps its own OpenMP runtime
            import torch  # noqa: F401
        except ImportError:
            raise SystemExit("torch is not installed") from None
    from recognize_digits import load_mnist

    data = load_mnist(data_dir, sample=data_dir is None and not os.environ.get("RECOGNIZE_DIGITS_DATA"))
    if variant in ONNX_VARIANTS:
        result = ONNX_VARIANTS[variant](data, model_dir)
    elif variant in WORKER_VARIANTS:
        result = WORKER_VARIANTS[variant](data, steps)
    else:
        result = VARIANTS[variant](data, model_dir if variant == "prediction" else steps)
    result = result if isinstance(result, dict) else {"rate": result}
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def spawn(*args, env=None):
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env)
    if proc.returncode:
        lines = proc.stderr.strip().splitlines()
        return None, lines[-1] if lines else f"exit code {proc.returncode}"
    return proc.stdout, None


def run_prediction(data, model_dir):
    """Evaluation and prediction speed of the model in ``model_dir``, in a fresh process."""
    from recognize_digits import InferenceModel
    from recognize_digits.data import normalize
    from recognize_digits.infer import evaluate

    model = InferenceModel(model_dir)
    images = normalize(data.test_images)

    def rate(work, repeats=5):  # median of repeats, after one warm-up
        work()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
        return len(images) / statistics.median(times)

    result = {"evaluate": rate(lambda: evaluate(model, data.test_images, data.test_labels)),
              "predict": rate(lambda: [model.predict(images[i:i + 1000])
                                       for i in range(0, len(images), 1000)])}
    latencies = []
    for i in range(300):
        start = time.perf_counter()
        model.predict(images[i:i + 1])
        latencies.append(time.perf_counter() - start)
    result["latency_ms"] = 1000 * statistics.median(latencies)
    return result


def run_engine(data, model):
    """Batch and one-image speed of ``model`` (a saved folder: Paddle Inference; a .onnx
    file: ONNX Runtime), in this process."""
    from recognize_digits.data import normalize
    from recognize_digits.deploy.export import open_model

    model = open_model(model)
    images = normalize(data.test_images)

    def batches():
        for i in range(0, len(images), 1000):
            model.predict(images[i:i + 1000])

    batches()  # warm-up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        batches()
        times.append(time.perf_counter() - start)
    latencies = []
    for i in range(300):
        start = time.perf_counter()
        model.predict(images[i:i + 1])
        latencies.append(time.perf_counter() - start)
    return {"rate": len(images) / statistics.median(times),
            "latency_ms": 1000 * statistics.median(latencies)}


def run_equality(data, models):
    """How far the ONNX model's probabilities lie from Paddle's on the whole test set."""
    from recognize_digits.deploy.export import compare, open_model

    folder, onnx_file = models.split("|")
    return compare(open_model(folder), open_model(onnx_file), data.test_images)


def _median_run(runs):
    """The run with the median rate (or speed), or the error if any run failed."""
    for run in runs:
        if not isinstance(run, dict):
            return run
    key = "rate" if "rate" in runs[0] else "predict"
    return sorted(runs, key=lambda run: run[key])[len(runs) // 2]


ONNX_VARIANTS = {"Paddle Inference": run_engine, "ONNX Runtime": run_engine,
                 "equality": run_equality}
VARIANTS = {"project": run_project, "project, dynamic mode": run_dynamic, "plain PIR": run_plain,
            "chapter feeding": run_chapter, "PyTorch": run_pytorch, "data pipeline": run_pipeline,
            "prediction": run_prediction}
WORKER_VARIANTS = {"static graph, 1 process (the default)": run_project,
                   "dynamic graph, 1 worker": run_dynamic,
                   "dynamic graph, 2 workers": run_two_workers, "PyTorch, 1 process": run_pytorch}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST folder (default: as the package finds it, "
                        "else the bundled sample)")
    parser.add_argument("--steps", type=int, default=300, help="timed training steps (default 300)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each variant, taking turns; the median counts (default 3)")
    parser.add_argument("--against", metavar="DIR",
                        help="a checkout of another version to compare the package's own "
                        "variants with, side by side")
    parser.add_argument("--onnx", action="store_true", help="only Paddle Inference against "
                        "ONNX Runtime on the same models (needs the [export] extra)")
    parser.add_argument("--workers", action="store_true", help="only data-parallel training "
                        "against one process: training speed, whole 3-pass processes and the "
                        "start-up of the workers (needs --data-dir)")
    parser.add_argument("--json", metavar="PATH", help="with --onnx or --workers: also write "
                        "the figures here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.data_dir, args.steps, args.model_dir)
    if args.onnx:
        return onnx_side_by_side(args.data_dir, args.rounds, args.json)
    if args.workers:
        return workers_side_by_side(args.data_dir, args.steps, args.rounds, args.json)

    print(f"{os.cpu_count()} cores; {args.steps} timed steps of 64 images after {WARMUP} warm-up "
          f"steps; median of {args.rounds} rounds")
    print("\n| training (LeNet-5, batch 64) | images/s | vs plain PIR | vs PyTorch | peak MB |")
    print("|---|---|---|---|---|")
    # prediction runs on a model trained briefly on the sample by another process
    model_dir = tempfile.mkdtemp()
    spawn("-m", "recognize_digits", "train", "--sample", "--epochs", "1", "--seed", "0",
          "--save-dir", model_dir)
    # Variants take turns, round after round, and each reports its median round, so
    # that a passing disturbance of the machine hits them all alike.
    turns = [(variant, None) for variant in VARIANTS]
    if args.against:  # the other checkout's package first on the path
        env = {**os.environ, "PYTHONPATH": str(Path(args.against).resolve())}
        turns += [(variant, env) for variant in OWN]
    runs = {turn: [] for turn in range(len(turns))}
    extra = ["--data-dir", args.data_dir] if args.data_dir else []
    for _ in range(args.rounds):
        for turn, (variant, env) in enumerate(turns):
            out, err = spawn(__file__, "--worker", variant, "--steps", args.steps,
                             "--model-dir", model_dir, *extra, env=env)
            runs[turn].append(json.loads(out) if out else err)
    medians = [_median_run(runs[turn]) for turn in range(len(turns))]
    results, rates = dict(zip(VARIANTS, medians)), {}
    base, torch_rate = (results.get(k) for k in ("plain PIR", "PyTorch"))
    for variant, result in results.items():
        if variant in ("data pipeline", "prediction"):
            continue
        if not isinstance(result, dict):
            print(f"| {variant} | skipped: {result} | | | |")
            continue
        rate = rates[variant] = result["rate"]
        vs_base = f"{rate / base['rate']:.2f}x" if isinstance(base, dict) else "-"
        vs_torch = f"{rate / torch_rate['rate']:.2f}x" if isinstance(torch_rate, dict) else "-"
        print(f"| {variant} | {rate:,.0f} | {vs_base} | {vs_torch} | {result['peak_mb']:,.0f} |")
    pipeline = results["data pipeline"]
    if isinstance(pipeline, dict) and "project" in rates:
        print(f"\ndata pipeline alone: {pipeline['rate']:,.0f} images/s, "
              f"{100 * rates['project'] / pipeline['rate']:.1f}% of a training step")

    pred = results["prediction"]
    if not isinstance(pred, dict):
        raise SystemExit(f"prediction failed: {pred}")
    print("\n| prediction (paddle.inference, oneDNN) | value |\n|---|---|")
    print(f"| evaluate: test set in batches of 1000, with the cost | {pred['evaluate']:,.0f} images/s |")
    print(f"| predict: test set in batches of 1000 | {pred['predict']:,.0f} images/s |")
    print(f"| predict: one image in-process (median of 300) | {pred['latency_ms']:.3f} ms |")
    for name, cmd in (("import recognize_digits", ["-c", "import recognize_digits"]),
                      ("whole process: recognize-digits predict image/infer_3.png",
                       ["-m", "recognize_digits", "predict", "image/infer_3.png",
                        "--model-dir", model_dir])):
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            spawn(*cmd)
            runs.append(time.perf_counter() - start)
        print(f"| {name} (median of 3) | {statistics.median(runs):.2f} s |")
    if args.against:
        against(args.against, results, medians[len(VARIANTS):])
    whole_process(args.data_dir, args.rounds)


OWN = ("project", "project, dynamic mode", "prediction")  # what --against runs again


def against(folder, results, others):
    """This checkout's figures beside the other checkout's, from the same turns."""
    commit = subprocess.run(["git", "-C", folder, "log", "-1", "--format=%h"],
                            capture_output=True, text=True).stdout.strip() or folder
    print(f"\n| side by side (median of the same rounds) | this checkout | {commit} | "
          f"this / {commit} |")
    print("|---|---|---|---|")
    for variant, other in zip(OWN, others):
        mine = results[variant]
        if not (isinstance(mine, dict) and isinstance(other, dict)):
            print(f"| {variant} | failed: {mine if not isinstance(mine, dict) else other} | | |")
            continue
        keys = ({"rate": "images/s"} if variant != "prediction" else
                {"evaluate": "evaluate images/s", "predict": "predict images/s",
                 "latency_ms": "one image, ms"})
        for key, unit in keys.items():
            shown = "{:.3f}" if key == "latency_ms" else "{:,.0f}"
            print(f"| {variant}: {unit} | {shown.format(mine[key])} | "
                  f"{shown.format(other[key])} | {mine[key] / other[key]:.2f}x |")


def _turns(commands, rounds):
    """Seconds of each whole command (name: spawn arguments), taking turns, every round."""
    times = {name: [] for name in commands}
    for _ in range(rounds):
        for name, cmd in commands.items():
            start = time.perf_counter()
            _, err = spawn(*cmd)
            if err:
                raise RuntimeError(f"{name} failed: {err}")
            times[name].append(time.perf_counter() - start)
    return times


def whole_process(data_dir, rounds):
    """One-pass training as a whole process, the package's and PyTorch's, taking turns."""
    import importlib.util

    if importlib.util.find_spec("torch") is None or not data_dir:
        return print("\nwhole process against PyTorch: skipped (it needs torch and --data-dir)")
    with tempfile.TemporaryDirectory() as out:
        commands = {
            "recognize-digits train --model cnn --epochs 1": [
                "-m", "recognize_digits", "train", "--model", "cnn", "--epochs", "1",
                "--seed", "0", "--save-dir", f"{out}/model", "--data-dir", data_dir],
            "PyTorch, the same work (benchmarks/pytorch_lenet.py)": [
                "benchmarks/pytorch_lenet.py", "--data-dir", data_dir, "--save", f"{out}/net.pt"]}
        try:
            times = _turns(commands, rounds)
        except RuntimeError as e:
            return print(f"\nwhole process: {e}")
    print(f"\n| whole process, one pass (median of {rounds}) | seconds |\n|---|---|")
    for name, runs in times.items():
        print(f"| {name} | {statistics.median(runs):.2f} |")
    package, torch = (statistics.median(runs) for runs in times.values())
    print(f"| PyTorch's time / the package's | {torch / package:.2f}x |")


def workers_side_by_side(data_dir, steps, rounds, json_path=None):
    """Data-parallel training against one process, all taking turns (see --workers)."""
    if not data_dir:
        raise SystemExit("--workers needs --data-dir (the full MNIST)")
    figures = {"cores": os.cpu_count(), "steps": steps, "rounds": rounds}
    runs = {variant: [] for variant in WORKER_VARIANTS}
    for _ in range(rounds):
        for variant in WORKER_VARIANTS:
            out, err = spawn(__file__, "--worker", variant, "--steps", steps, "--data-dir", data_dir)
            runs[variant].append(json.loads(out)["rate"] if out else err)
    figures["training images/s"] = runs
    with tempfile.TemporaryDirectory() as out:
        train = ["-m", "recognize_digits", "train", "--model", "cnn", "--seed", "0"]
        whole = {f"3 passes, {name}": [*train, "--epochs", "3", "--data-dir", data_dir,
                                       "--save-dir", f"{out}/{i}", *options]
                 for i, (name, options) in enumerate((
                     ("static graph, 1 process", []),
                     ("dynamic graph, 1 worker", ["--graph", "dynamic"]),
                     ("dynamic graph, 2 workers", ["--graph", "dynamic", "--workers", "2"])))}
        tiny = ["train", "--sample", "--model", "softmax", "--epochs", "1", "--graph", "dynamic",
                "--seed", "0", "--save-dir"]
        script = Path(sys.executable).with_name("recognize-digits")
        start_up = {
            "1 process": ["-m", "recognize_digits", *tiny, f"{out}/a"],
            "2 workers, our starter (--workers 2)": ["-m", "recognize_digits", *tiny,
                                                     f"{out}/b", "--workers", "2"],
            "2 workers, Paddle's launcher": [
                "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
                f"{out}/log", str(script), *tiny, f"{out}/c"]}
        try:
            figures["whole process seconds"] = _turns(whole, rounds)
            figures["start-up seconds"] = _turns(start_up, rounds)
        except RuntimeError as e:
            raise SystemExit(str(e)) from None
    _print_workers(figures)
    if json_path:
        figures["load_average_at_end"] = os.getloadavg()
        Path(json_path).write_text(json.dumps(figures, indent=1) + "\n")


def _print_workers(figures):
    def median(values):
        numbers = [v for v in values if isinstance(v, (int, float))]
        return statistics.median(numbers) if numbers else None

    print(f"{figures['cores']} cores; LeNet-5, batch 64; median of {figures['rounds']} rounds "
          f"taken in turns")
    rates = {k: median(v) for k, v in figures["training images/s"].items()}
    one = rates["dynamic graph, 1 worker"]
    print(f"\n| training, {figures['steps']} steps | images/s (rounds' range) | vs 1 dynamic "
          f"worker |\n|---|---|---|")
    for name, rate in rates.items():
        values = [v for v in figures["training images/s"][name] if isinstance(v, (int, float))]
        if rate is None:
            print(f"| {name} | failed: {figures['training images/s'][name][0]} | |")
            continue
        print(f"| {name} | {rate:,.0f} ({min(values):,.0f}-{max(values):,.0f}) | "
              f"{rate / one:.2f}x |" if one else f"| {name} | {rate:,.0f} | - |")
    for table in ("whole process seconds", "start-up seconds"):
        times = {k: median(v) for k, v in figures[table].items()}
        base = next(iter(times.values())) if table == "start-up seconds" else \
            times["3 passes, dynamic graph, 1 worker"]
        print(f"\n| {table.replace(' seconds', '')} | seconds (range) | "
              f"{'more than 1 process' if table == 'start-up seconds' else 'speed vs 1 dynamic worker'} |"
              f"\n|---|---|---|")
        for name, t in times.items():
            runs = figures[table][name]
            versus = f"+{t - base:.1f} s" if table == "start-up seconds" else f"{base / t:.2f}x"
            print(f"| {name} | {t:.1f} ({min(runs):.1f}-{max(runs):.1f}) | {versus} |")


def onnx_side_by_side(data_dir, rounds, json_path=None):
    """Paddle Inference and ONNX Runtime on the same three models, taking turns."""
    extra = ["--data-dir", data_dir] if data_dir else ["--sample"]
    figures = {}
    with tempfile.TemporaryDirectory() as out:
        for net in ("softmax", "mlp", "cnn"):
            folder, onnx_file = f"{out}/{net}", f"{out}/{net}.onnx"
            for command in (["train", "--model", net, "--epochs", "1", "--seed", "0",
                             "--save-dir", folder, *extra],
                            ["export", "--model-dir", folder, "--onnx", onnx_file]):
                _, err = spawn("-m", "recognize_digits", *command)
                if err:
                    raise SystemExit(f"{net}: {command[0]} failed: {err}")
            figures[net] = {"paddle_bytes": sum(Path(folder, f"model{suffix}").stat().st_size
                                                for suffix in (".json", ".pdiparams")),
                            "onnx_bytes": Path(onnx_file).stat().st_size}
        worker_data = ["--data-dir", data_dir] if data_dir else []
        turns = [(net, engine, f"{out}/{net}" + (".onnx" if engine == "ONNX Runtime" else ""))
                 for net in figures for engine in ("Paddle Inference", "ONNX Runtime")]
        runs = {turn: [] for turn in turns}
        for _ in range(rounds):
            for turn in turns:
                result, err = spawn(__file__, "--worker", turn[1], "--model-dir", turn[2],
                                    *worker_data)
                runs[turn].append(json.loads(result) if result else err)
        for net in figures:
            result, err = spawn(__file__, "--worker", "equality", "--model-dir",
                                f"{out}/{net}|{out}/{net}.onnx", *worker_data)
            figures[net]["equality"] = json.loads(result) if result else err
    for (net, engine, _), results in runs.items():
        figures[net][engine] = _median_run(results)
        figures[net][f"{engine}, every round"] = results
    _print_onnx(figures, rounds, data_dir)
    if json_path:
        Path(json_path).write_text(json.dumps({"cores": os.cpu_count(), "rounds": rounds,
                                               "load_average_at_end": os.getloadavg(),
                                               "data": data_dir or "sample", "models": figures},
                                              indent=1) + "\n")


def _print_onnx(figures, rounds, data_dir):
    print(f"{os.cpu_count()} cores; each network trained one pass on "
          f"{'MNIST' if data_dir else 'the sample'} (seed 0); median of {rounds} rounds taken "
          f"in turns")
    print("\n| network | engine | test set, batches of 1000: images/s (rounds' range) | one "
          "image: ms (range) | file size |\n|---|---|---|---|---|")
    for net, found in figures.items():
        for engine, size in (("Paddle Inference", found["paddle_bytes"]),
                             ("ONNX Runtime", found["onnx_bytes"])):
            result = found[engine]
            if not isinstance(result, dict):
                print(f"| {net} | {engine} | failed: {result} | | |")
                continue
            rounds = [r for r in found[f"{engine}, every round"] if isinstance(r, dict)]
            rates, latencies = ([r[key] for r in rounds] for key in ("rate", "latency_ms"))
            print(f"| {net} | {engine} | {result['rate']:,.0f} ({min(rates):,.0f}-"
                  f"{max(rates):,.0f}) | {result['latency_ms']:.3f} ({min(latencies):.3f}-"
                  f"{max(latencies):.3f}) | {size / 1024:,.0f} KB |")
    print("\n| network | test images | largest difference of a probability | digits that "
          "differ |\n|---|---|---|---|")
    for net, found in figures.items():
        same = found["equality"]
        if not isinstance(same, dict):
            print(f"| {net} | failed: {same} | | |")
            continue
        print(f"| {net} | {same['images']:,} | {same['max_difference']:.1e} | "
              f"{same['digits_differing']} |")


if __name__ == "__main__":
    main()
