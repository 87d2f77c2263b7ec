"""The ``recognize-digits`` command: a thin layer over the library."""

import argparse
import errno
import io
import json
import re
import socket
import sys
import warnings
from pathlib import Path

from . import data as data_module
from .errors import NO_PADDLE, ConfigError, FallbackWarning, RecognizeDigitsError


def _data_options(parser):
    parser.add_argument("--data-dir", metavar="DIR", help=f"folder with the MNIST files (default: "
                        f"${data_module.ENV_VAR}, then Paddle's cache, then download)")
    parser.add_argument("--sample", action="store_true",
                        help="use the small MNIST sample bundled with the package")


# The options of the training settings (settings.Settings), each stored under the
# setting's name: the ones given go to train() as they are. Help says the default.
SETTING_OPTIONS = {
    "model": ("--model", dict(choices=["softmax", "mlp", "cnn"], help="softmax regression, "
                              "multilayer perceptron or LeNet-5")),
    "epochs": ("--epochs", dict(type=int, help="passes over the training set")),
    "batch_size": ("--batch-size", dict(type=int, help="images in a training batch")),
    "learning_rate": ("--lr", dict(type=float, help="Adam's learning rate")),
    "device": ("--device", dict(choices=["auto", "cpu", "gpu"], help="auto takes the GPU "
                                "when Paddle has one")),
    "validation": ("--validation", dict(type=int, metavar="N", help="training images held out "
                                        "to choose the best pass (default: 1/12 of them, 5,000 "
                                        "of MNIST's 60,000); 0 trains on all and keeps the "
                                        "last pass")),
    "seed": ("--seed", dict(type=int, help="make the run reproducible (default: a random "
                            "seed, recorded in metrics.json)")),
    "augment": ("--augment", dict(action="store_true", help="train on randomly rotated, "
                                  "scaled, slanted, shifted, thinner and thicker copies of the "
                                  "training digits; better on some kinds of users' digits, "
                                  "worse on others: score both with evaluate --images (default: "
                                  "off, the chapter's settings)")),
    "graph": ("--graph", dict(choices=["static", "dynamic"], help="static: a program run by "
                              "an executor, as the chapter teaches; dynamic: the same network "
                              "as a paddle.nn.Layer run eagerly, saved with paddle.jit.save")),
    "workers": ("--workers", dict(type=int, help="train in N processes at once, each on its "
                                  "share of every batch (data parallel, with --graph dynamic): "
                                  "for more cores or GPUs than one process uses; on this kind "
                                  "of 2-core machine the static graph is faster")),
    "threads": ("--threads", dict(type=int, help="CPU threads (default: every core this "
                                  "process may use)")),
    "onednn": ("--no-onednn", dict(action="store_false", help="use Paddle's plain CPU kernels "
                                   "instead of oneDNN")),
}


def _settings(parser, *names, shown=None, **defaults):
    """Add the options of the settings ``names``; ``defaults`` are this command's own,
    the others default to None (not given: train() takes the setting's own default);
    ``shown`` (name: text) says a default that is no value."""
    from .settings import Settings

    for name in names:
        flag, options = SETTING_OPTIONS[name]
        shown_default = (shown or {}).get(name, defaults.get(name, getattr(Settings, name)))
        text = options["help"] if "(default:" in options["help"] or shown_default is None else (
            f"{options['help']} (default: {shown_default})")
        parser.add_argument(flag, dest=name, default=defaults.get(name),
                            **{**options, "help": text})


def _given(args):
    """The training settings given on the command line (or this command's defaults)."""
    return {name: getattr(args, name) for name in SETTING_OPTIONS
            if getattr(args, name, None) is not None}


def _port(text):
    """A TCP port number, 0 (any free port) to 65535."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 0 to 65535")
    return int(text)


def _model_options(parser, default):
    parser.add_argument("--model-dir", help=f"folder of a model saved by train, or a .onnx file "
                        f"exported from one (default: {default})")
    parser.add_argument("--onnx", metavar="FILE", help="run this exported .onnx model on ONNX "
                        "Runtime instead of a Paddle model")
    parser.set_defaults(default_model=default)


def _model_path(args):
    """What --model-dir or --onnx names (not both), else the default model folder."""
    if args.model_dir and args.onnx:
        raise ConfigError("give --model-dir or --onnx, not both")
    return args.onnx or args.model_dir or args.default_model


# The library names its arguments as a Python call does (save_dir=..., resume=True,
# epochs=0); its messages reach the command line through in_cli_words, which says each as
# the option it is. These few are spelled otherwise on the command line.
OPTION_FOR = {"onnx_path": "onnx"}
PYTHON_ARGUMENT = re.compile(r"\b([a-z][a-z_]*)=('[^']*'|\"[^\"]*\"|\.\.\.|[^\s,;:()]*[^\s,;:().])?")


def in_cli_words(message, parser):
    """``message`` with every argument that ``parser`` has as an option said as that option:
    ``save_dir=...`` as ``--save-dir DIR``, ``resume=True`` as ``--resume``,
    ``learning_rate=0.0`` as ``--lr 0.0``. Arguments the command lacks stay as they are."""
    options = {action.dest: action for action in parser._actions if action.option_strings}

    def say(match):
        name, value = match.groups()
        action = options.get(OPTION_FOR.get(name, name))
        if action is None:
            return match.group(0)
        flag = action.option_strings[-1]
        if action.nargs == 0:  # --resume, --no-onednn: they say only the value they set
            return flag if value == repr(action.const) else match.group(0)
        if value is None:
            return flag
        if value == "...":
            return f"{flag} {action.metavar or action.dest.upper()}"
        return f"{flag} {value.strip(chr(34) + chr(39))}"
    return PYTHON_ARGUMENT.sub(say, message)


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line like the package's own errors."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser():
    from .own_digits.finetune import FINETUNE
    from .plumbing.download import MIRRORS
    from .training import DEFAULT_SAVE_DIR
    parser = Parser(prog="recognize-digits",
                    description="Recognise handwritten digits (MNIST) with PaddlePaddle.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = commands.add_parser("train", help="train a model and save its best pass")
    # no defaults of its own: with --resume only what is given counts
    _settings(p, "model", "epochs", "batch_size", "learning_rate", "device")
    _data_options(p)
    _settings(p, "validation")
    p.add_argument("--save-dir", metavar="DIR", default=DEFAULT_SAVE_DIR, help=f"folder that "
                   f"keeps the best pass's model, its metrics.json and a Ctrl-C checkpoint "
                   f"(default: {DEFAULT_SAVE_DIR})")
    _settings(p, "seed", "augment", "graph", "workers")
    p.add_argument("--resume", action="store_true", help="continue the training that Ctrl-C "
                   "stopped in --save-dir, with the settings it started with")
    p.add_argument("--plot", metavar="PATH", help="also draw the train, validation and test "
                   "cost curves into this image (PNG, SVG or PDF), updated after every pass")
    _settings(p, "threads", "onednn")
    p.set_defaults(func=_train)

    p = commands.add_parser("compare", help="train the three models alike and compare them")
    _settings(p, "epochs", "batch_size", "learning_rate", "device")
    _data_options(p)
    _settings(p, "validation")
    p.add_argument("--out", default="compare", help="folder for the table, the figure and "
                   "the three models (default: compare)")
    _settings(p, "seed", seed=0)  # the same for all three
    _settings(p, "augment", "threads", "onednn")
    p.set_defaults(func=_compare)

    p = commands.add_parser("finetune", help="train a saved model further on your own "
                            "labelled digits, so that it reads your handwriting")
    p.add_argument("--model-dir", default=DEFAULT_SAVE_DIR, help=f"the model to start from "
                   f"(default: {DEFAULT_SAVE_DIR}); it is left as it is")
    p.add_argument("--images", required=True, metavar="DIR", help="your labelled digits: in "
                   "sub-folders 0 to 9, or each file name starting with its digit")
    p.add_argument("--save-dir", metavar="DIR", required=True, help="folder for the "
                   "fine-tuned model (not --model-dir, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --save-dir to be --model-dir, replacing the model")
    _settings(p, "epochs", "learning_rate", "seed", **FINETUNE)
    _settings(p, "graph", "device", shown={"graph": "the model's own"})
    _data_options(p)
    _settings(p, "threads", "onednn")
    p.set_defaults(func=_finetune)

    p = commands.add_parser("evaluate", help="test cost and accuracy of a saved model, on "
                            "MNIST or on your own digits")
    _model_options(p, DEFAULT_SAVE_DIR)
    _data_options(p)
    p.add_argument("--images", metavar="DIR", help="score your own labelled digit images "
                   "instead: in sub-folders 0 to 9, or each file name starting with its digit")
    p.add_argument("--report", metavar="DIR", help="also write per-class accuracy, the "
                   "confusion matrix and a gallery of the most confident mistakes into DIR")
    _settings(p, "threads", "onednn")
    p.set_defaults(func=_evaluate)

    p = commands.add_parser("predict", help="recognise the digit in each image")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files of digits, any format Pillow reads; - reads one from "
                   "standard input")
    _model_options(p, DEFAULT_SAVE_DIR)
    p.add_argument("--json", action="store_true", help="print JSON with all 10 probabilities")
    p.add_argument("--no-preprocess", dest="preprocess", action="store_false",
                   help="only resize each image to 28x28 instead of making it MNIST-style")
    _settings(p, "threads", "onednn")
    p.set_defaults(func=_predict)

    p = commands.add_parser("serve", help="a local web page to draw digits on")
    _model_options(p, DEFAULT_SAVE_DIR)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=_port, default=8000,
                   help="port to listen on (default: 8000; 0 picks a free one)")
    p.add_argument("--corrections", metavar="DIR", default="my_digits", help="folder that "
                   "keeps the drawings you label on the page, for finetune --images "
                   "(default: my_digits)")
    p.set_defaults(func=_serve)

    p = commands.add_parser("export", help="convert a saved model to ONNX, checked against "
                            "Paddle, to run where Paddle does not (ONNX Runtime and others)")
    p.add_argument("--model-dir", default=DEFAULT_SAVE_DIR, help=f"folder of a model saved by "
                   f"train (default: {DEFAULT_SAVE_DIR})")
    p.add_argument("--onnx", required=True, metavar="FILE", help="the .onnx file to write")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.set_defaults(func=_export)

    p = commands.add_parser(
        "download", help="download MNIST into Paddle's cache",
        description="Download the four MNIST gzip files into Paddle's cache, each from the\n"
        "first mirror that sends it with the right md5; files already there are kept.",
        epilog="built-in mirrors, tried in this order:\n  " + "\n  ".join(MIRRORS),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mirror", metavar="URL", action="append",
                   help="a folder URL holding the four files, tried before the built-in "
                   "mirrors; may be repeated")
    p.set_defaults(func=_download)
    for p in commands.choices.values():  # to say the library's messages in its options
        p.set_defaults(command_parser=p)
    return parser


def _progress(then=None):
    """An event handler: a progress bar through each pass, a line of results after it;
    ``then(event)`` is called with every event too."""
    from tqdm import tqdm

    from .events import StepEvent

    bar = None

    def show(event):
        nonlocal bar
        if then:
            then(event)
        if isinstance(event, StepEvent):
            if bar is None:
                bar = tqdm(total=event.batches, initial=event.batch_id,
                           desc=f"Pass {event.pass_id}", unit="batch", disable=None)
            bar.update()
            if event.batch_id % 50 == 0:
                bar.set_postfix(cost=f"{event.cost:.4f}")
            return
        if bar is not None:
            bar.close()
            bar = None
        validation = ("" if event.val_cost is None else f"validation cost {event.val_cost:.4f}, "
                      f"accuracy {100 * event.val_acc:.2f}%; ")
        tqdm.write(f"Pass {event.pass_id}: train cost {event.train_cost:.4f}; {validation}"
                   f"test cost {event.test_cost:.4f}, accuracy {100 * event.test_acc:.2f}% "
                   f"({event.seconds:.1f} s)")
    return show


def _train(args):
    from tqdm import tqdm

    from .settings import Settings
    from .training import train

    given = _given(args)
    model = Settings(**given).check().model  # every option before any work
    if args.resume:  # the network of the training to resume
        from .plumbing.checkpoint import Checkpoint

        model = Checkpoint(args.save_dir).read()["metrics"]["model"]
    curves = None
    if args.plot:
        from .figures.plot import CostCurves

        curves = CostCurves(f"{model} on {'the MNIST sample' if args.sample else 'MNIST'}",
                            save_to=args.plot)
    data = data_module.load_mnist(args.data_dir, args.sample)
    if not args.resume:
        tqdm.write(f"Training {model} on {data.source}")
    train(**given, data=data, save_dir=args.save_dir, resume=args.resume, log=tqdm.write,
          event_handler=_progress(curves))
    from .engines.parallel import saved_elsewhere  # under Paddle's launcher, worker 0 saved

    tqdm.write(saved_elsewhere(args.save_dir)
               or f"Saved the best pass's inference model in {args.save_dir}"
               + (f" and the cost curves in {args.plot}" if curves else ""))


def _finetune(args):
    from tqdm import tqdm

    from .own_digits.finetune import finetune

    tqdm.write(f"Fine-tuning {args.model_dir} on your digits in {args.images}")
    metrics = finetune(args.model_dir, args.images, args.save_dir, **_given(args),
                       data_dir=args.data_dir, sample=args.sample, overwrite=args.overwrite,
                       event_handler=_progress(), log=tqdm.write)
    tuned = metrics["finetune"]
    before, after = tuned["before"], tuned["after"]
    yours = (f"Your {tuned['held_out']} held-out digits: {100 * before['held_out_accuracy']:.1f}% "
             f"before, {100 * after['held_out_accuracy']:.1f}% after" if tuned["held_out"] else
             "None of your digits held out (give two or more of a digit to hold some out)")
    print(f"{yours}; MNIST test: {100 * before['mnist_test_accuracy']:.2f}% before, "
          f"{100 * after['mnist_test_accuracy']:.2f}% after")
    print(f"Saved the fine-tuned model in {args.save_dir}")


def _compare(args):
    from tqdm import tqdm

    from .figures.plot import comparison_table, plot_accuracy
    from .models import MODELS
    from .plumbing.storage import replace_file
    from .settings import Settings
    from .training import train

    settings = Settings(**_given(args)).check()  # before the first model trains
    out, runs = Path(args.out), {}
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file, not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{out}: cannot hold the three models ({e.strerror}); choose another "
                          f"--out") from None
    data = data_module.load_mnist(args.data_dir, args.sample)
    for name in MODELS:
        runs[name] = train(name, **_given(args), data=data, save_dir=out / name,
                           log=tqdm.write, event_handler=_progress())
    table = (f"Data: {data.source}; {settings.epochs} passes, batch {settings.batch_size}, "
             f"Adam {settings.learning_rate}, seed {settings.seed}"
             f"{', augmented' if settings.augment else ''}."
             f"\n\n" + comparison_table(runs))
    replace_file(out / "compare.md", lambda tmp: Path(tmp).write_text(table + "\n"))
    replace_file(out / "accuracy.png", lambda tmp: plot_accuracy(runs).savefig(tmp, dpi=100))
    print(table)
    print(f"Wrote compare.md and accuracy.png in {out}; the models are in {out}/<model>")


def _evaluate(args):
    from .deploy.export import open_model
    from .infer import evaluate, predict_all

    if args.report and Path(args.report).exists() and not Path(args.report).is_dir():
        raise ConfigError(f"{args.report}: is a file, not a folder; choose another --report")
    model = open_model(_model_path(args), threads=args.threads, onednn=args.onednn)
    if args.images:
        return _evaluate_images(model, args.images, args.report)
    data = data_module.load_mnist(args.data_dir, args.sample, train=False)
    probs = predict_all(model, data.test_images)
    cost, acc = evaluate(model, data.test_images, data.test_labels, probs)
    print(f"Test cost {cost:.4f}, accuracy {100 * acc:.2f}% on {len(data.test_images)} "
          f"test images from {data.source}")
    if args.report:
        from .figures.report import write_report

        print(write_report(args.report, data.test_images, data.test_labels, probs))
        print(f"Wrote report.json, confusion.png and mistakes.png in {args.report}")


def _evaluate_images(model, folder, report):
    """``evaluate --images``: the model on a user's own labelled digits."""
    from .figures.report import confusion_matrix, report_tables, write_report
    from .own_digits.folders import load_labelled_images
    from .plumbing.names import printable

    paths, labels, inputs, skipped = load_labelled_images(folder)
    for path, reason in skipped:
        print(printable(f"skipped {path}: {reason}"), file=sys.stderr)
    probs = model.predict(inputs)[1]
    accuracy = (probs.argmax(axis=1) == labels).mean()
    print(f"Accuracy {100 * accuracy:.2f}% on {len(labels)} of your images in "
          f"{printable(folder)}"
          + (f" ({len(skipped)} skipped)" if skipped else ""))
    if not report:
        return print(report_tables(confusion_matrix(labels, probs.argmax(axis=1))))
    digits = data_module.pixels(inputs)  # the 28x28 inputs
    print(write_report(report, digits, labels, probs, originals=paths))
    print(f"Wrote report.json, confusion.png and mistakes.png (each mistake as given and "
          f"as the model saw it) in {report}")


def _predict(args):
    """One line (or JSON entry) an image; an image that cannot be read is reported and
    the rest are still recognised, with exit status 1 at the end."""
    import numpy as np

    from .errors import ImageError
    from .deploy.export import open_model
    from .infer import load_image
    from .plumbing.names import printable

    model = open_model(_model_path(args), threads=args.threads, onednn=args.onednn)
    inputs, errors = [], {}  # errors by the image's place in the list
    for i, path in enumerate(args.images):
        try:
            image = path
            if path == "-":  # an image piped in
                if sys.stdin is None:  # started with standard input closed (<&-)
                    raise ImageError("standard input: closed; pipe an image in, as in "
                                     "'recognize-digits predict - < IMAGE'")
                image = io.BytesIO(sys.stdin.buffer.read())
                image.name = "standard input"
            inputs.append(load_image(image, preprocess=args.preprocess))
        except ImageError as e:
            errors[i] = printable(e)
            print(f"recognize-digits: error: {errors[i]}", file=sys.stderr)
    answers = iter(zip(*model.predict(np.concatenate(inputs)))) if inputs else iter(())
    results = [None if i in errors else next(answers) for i in range(len(args.images))]
    if args.json:
        print(json.dumps([{"image": printable(path), "error": errors[i]} if i in errors else
                          {"image": printable(path), "digit": int(results[i][0]),
                           "probabilities": results[i][1].tolist()}
                          for i, path in enumerate(args.images)], indent=1))
    else:
        for path, result in zip(args.images, results):
            if result is not None:
                d, p = result
                runners_up = ", ".join(f"{k} ({p[k]:.4f})" for k in np.argsort(-p)[1:3])
                print(f"{printable(path)}: {d} (probability {p[d]:.4f}; then {runners_up})")
    return 1 if errors else 0


def _export(args):
    from .deploy.export import export_onnx

    found = export_onnx(args.model_dir, args.onnx, force=args.force)
    print(f"Exported {args.model_dir} to {found['path']} ({found['bytes'] / 1024:,.0f} KB): "
          f"input img float32 [batch, 1, 28, 28] in [-1, 1], output probabilities [batch, 10]; "
          f"on the sample's {found['images']:,} test digits its probabilities differ from "
          f"Paddle's by {found['max_difference']:.1e} at most, and no digit differs")
    print(f"Run it with 'recognize-digits predict IMAGE --onnx {found['path']}', or without "
          f"Paddle: 'python examples/onnx_predict.py {found['path']} IMAGE'")


def _serve(args):
    from .deploy.serve import make_server

    model = _model_path(args)
    try:
        server = make_server(model, args.host, args.port, args.corrections)
    except OSError as e:
        # an address that is no name, or not this machine's, is the host's fault
        option = ("--host" if isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL
                  else "--port")
        raise ConfigError(f"cannot listen on {args.host}:{args.port} ({e.strerror}); "
                          f"choose another {option}") from None
    host, port = server.server_address[:2]
    print(_corrections_note(model, args.corrections), flush=True)
    if server.warning():
        print(f"recognize-digits: warning: {in_cli_words(server.warning(), args.command_parser)}",
              file=sys.stderr, flush=True)
    print(f"Draw a digit at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _corrections_note(model, corrections):
    """Where serve keeps the drawings and how to learn from them (for an ONNX file, through
    the Paddle model it was exported from)."""
    onnx = Path(model).suffix.lower() == ".onnx"
    return (f"Drawings you label on the page are kept in {corrections}; teach the model your "
            f"handwriting with 'recognize-digits finetune --model-dir {'MODEL' if onnx else model} "
            f"--images {corrections} --save-dir mine.model'"
            + (" (MODEL: the Paddle model it was exported from; then export mine.model)"
               if onnx else ""))


def _download(args):
    from .plumbing.download import download

    folder = download(args.mirror)
    print(f"MNIST is in {folder}")


def _one_line_notes(show_warning):
    """``warnings.showwarning`` that prints the package's fallback notes as one line."""
    def show(message, category, *args, **kwargs):
        if issubclass(category, FallbackWarning):
            print(f"recognize-digits: note: {message}", file=sys.stderr)
        else:
            show_warning(message, category, *args, **kwargs)
    return show


def main(argv=None):
    try:  # Paddle takes seconds to load: a Ctrl-C meanwhile is said as any other
        import paddle  # noqa: F401
    except ImportError:
        print(f"recognize-digits: error: {NO_PADDLE}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("recognize-digits: interrupted", file=sys.stderr)
        return 130
    args = build_parser().parse_args(argv)
    words = lambda error: in_cli_words(str(error), args.command_parser)  # noqa: E731
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", FallbackWarning)
            warnings.showwarning = _one_line_notes(warnings.showwarning)
            code = args.func(args)
    except RecognizeDigitsError as e:
        print(f"recognize-digits: {'stopped' if isinstance(e, KeyboardInterrupt) else 'error'}: "
              f"{words(e)}", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    except KeyboardInterrupt:
        print("recognize-digits: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a file or folder the checks above could not foresee
        where = f"{e.filename}: " if e.filename else ""
        print(f"recognize-digits: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    return code or 0
