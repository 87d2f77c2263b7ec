"""The saved model in ONNX: exported by paddle2onnx, checked against Paddle Inference,
and run by ONNX Runtime with the same preprocessing and the same ``predict``.

ONNX is a file format for trained networks that many runtimes read (ONNX Runtime on
servers, phones and in browsers, TensorRT, OpenVINO, ...): a model exported once runs
where Paddle does not. Paddle's ``paddle2onnx`` (the ``[export]`` extra) converts the
saved ``model.json`` + ``model.pdiparams`` directly, whichever graph mode trained it.
"""

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..data import load_mnist
from ..errors import ConfigError, ModelError, one_line
from ..infer import InferenceModel, Predictor, predict_all
from ..plumbing.native import descriptors_held
from ..plumbing.output import last_line
from ..plumbing.storage import replace_file

OPSET = 13  # read by every ONNX Runtime of the last years, onnxruntime-web and TensorRT
TOLERANCE = 1e-5  # the largest difference from Paddle's probabilities an export may have
INPUT, OUTPUT, BATCH = "img", "probabilities", "batch"
INSTALL_EXPORT = "pip install \".[export]\""  # paddle2onnx, and ONNX Runtime to check with
INSTALL_RUN = "pip install \".[onnx]\""  # ONNX Runtime alone, to run an exported model
AUTOINSTALL = "POLYGRAPHY_AUTOINSTALL_DEPS"


def _require(module, purpose, install):
    """Import ``module`` (paddle2onnx, onnx, onnxruntime), or say in one line how to get it."""
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"{purpose} needs {module}, which is not installed; install it with "
                          f"'{install}' in this project's folder") from None


def export_onnx(model_dir, onnx_path, force=False):
    """Convert the model saved in ``model_dir`` to the ONNX file ``onnx_path``.

    The file takes float32 ``img [batch, 1, 28, 28]`` in [-1, 1] (the batch of any size)
    and answers ``probabilities [batch, 10]``; its metadata says so, with the training's
    settings. Before it takes its place, its probabilities on the bundled sample's 1,000
    test digits are compared with Paddle Inference's: an export that differs by more than
    1e-5 or in one digit is refused. Written beside the target and renamed in one step, so
    a failure leaves no file; an existing one is replaced only with ``force=True``.
    Returns what :func:`compare` found, with the file's ``path`` and ``bytes``.
    """
    onnx_path = Path(onnx_path)
    check_output(onnx_path, force)
    paddle2onnx = _require("paddle2onnx", "exporting to ONNX", INSTALL_EXPORT)
    _require("onnxruntime", "checking the exported model", INSTALL_EXPORT)
    reference = InferenceModel(model_dir)  # a folder that is no model fails here, clearly
    model_dir, found = Path(model_dir), {}
    metrics = _metrics(model_dir)
    if "model" in metrics:  # the metadata will name the network: it must be the one saved
        from ..plumbing.checkpoint import check_network

        check_network(model_dir, metrics, "export the folder the training saved it in")

    def write(tmp):
        _convert(paddle2onnx, reference.files, tmp)
        describe(tmp, metrics, softmax=reference.scores)
        found.update(compare(reference, OnnxModel(tmp), load_mnist(sample=True).test_images))
        if found["max_difference"] > TOLERANCE or found["digits_differing"]:
            raise ModelError(f"{model_dir}: the ONNX model's answers differ from Paddle's "
                             f"({found['max_difference']:.2g} at most, {found['digits_differing']} "
                             f"digits differ), so it was not written")
    replace_file(onnx_path, write)
    return {"path": str(onnx_path), "bytes": onnx_path.stat().st_size, **found}


def check_output(onnx_path, force=False):
    """Refuse, before any work, an output path that cannot become the ONNX file."""
    onnx_path = Path(onnx_path)
    if onnx_path.suffix.lower() != ".onnx":
        raise ConfigError(f"{onnx_path}: name the ONNX file with the suffix .onnx (predict "
                          f"and serve know an ONNX model by it)")
    if onnx_path.is_dir():
        raise ConfigError(f"{onnx_path}: is a folder; name the .onnx file to write")
    folder = onnx_path.parent
    if not folder.is_dir():
        raise ConfigError(f"{onnx_path}: the folder {folder} does not exist; create it or "
                          f"choose another onnx_path=...")
    if onnx_path.exists() and not force:
        raise ConfigError(f"{onnx_path}: already exists; add force=True to replace it")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise ConfigError(f"{onnx_path}: cannot write in {folder} ({e.strerror}); choose "
                          f"another onnx_path=...") from None


def _convert(paddle2onnx, files, target):
    """paddle2onnx on the saved program and parameters, its own printing held back
    (it prints each step, from C++ too) and given in one line if it fails."""
    with descriptors_held(1, 2) as held, _no_installs():
        try:
            paddle2onnx.export(str(files[0]), str(files[1]), save_file=str(target),
                               opset_version=OPSET, auto_upgrade_opset=False,
                               enable_onnx_checker=True, verbose=False)
        except Exception as e:  # noqa: BLE001 - whatever the converter raises, said in one line
            raise ModelError(f"{files[0].parent}: paddle2onnx cannot convert this model "
                             f"({one_line(e)})") from None
    if not Path(target).stat().st_size:
        raise ModelError(f"{files[0].parent}: paddle2onnx wrote nothing ({last_line(held())})")


@contextlib.contextmanager
def _no_installs():
    """Keep the converter from installing packages while it runs.

    paddle2onnx 2.1 sets ``POLYGRAPHY_AUTOINSTALL_DEPS=1`` before it folds constants with
    Polygraphy, which then pip-installs whatever it lacks (onnx-graphsurgeon, from an index
    the user never chose). Polygraphy reads that setting once, when it is first imported,
    into ``polygraphy.config``: imported first and switched off there, it installs nothing,
    and a missing package only skips the folding (the ``[export]`` extra brings it). The
    variable is put back afterwards, so that no process started later inherits it."""
    try:
        import polygraphy.config as polygraphy
    except ImportError:  # a paddle2onnx that does not use Polygraphy
        polygraphy = None
    was = os.environ.get(AUTOINSTALL)
    if polygraphy is not None:
        polygraphy.AUTOINSTALL_DEPS = False
    try:
        yield
    finally:
        if polygraphy is not None:
            polygraphy.AUTOINSTALL_DEPS = False
        if was is None:
            os.environ.pop(AUTOINSTALL, None)
        else:
            os.environ[AUTOINSTALL] = was


def _metrics(model_dir):
    """The training's record in metrics.json; none (``{}``) for a model saved otherwise
    (``paddle.jit.save``), or a file that is missing, unreadable or no record (``null``)."""
    try:
        metrics = json.loads((Path(model_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def describe(path, metrics, softmax=False):
    """Name the input, output and batch dimension as the package says them, and record in
    the file's metadata what the input is and how the model was trained. ``softmax``: the
    network ends in scores (logits, as Paddle's own LeNet), so a softmax is added, and the
    file answers the probabilities its metadata promises, as ``predict`` does."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    if softmax:
        scores = graph.output[0].name
        graph.node.append(onnx.helper.make_node("Softmax", [scores], [scores + "_softmax"],
                                                axis=1))
        graph.output[0].name = scores + "_softmax"
    old_output = graph.output[0].name
    graph.input[0].name, old_input = INPUT, graph.input[0].name
    for node in graph.node:
        node.input[:] = [INPUT if name == old_input else name for name in node.input]
        node.output[:] = [OUTPUT if name == old_output else name for name in node.output]
    graph.output[0].name = OUTPUT
    # the input's and the output's first dimension are the batch; the converter and the
    # constant folding may have named the two differently
    batch = {value.type.tensor_type.shape.dim[0].dim_param for value in (graph.input[0],
                                                                         graph.output[0])}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param and dim.dim_param in batch:
                dim.dim_param = BATCH
    notes = {"input": f"{INPUT}: float32 [{BATCH}, 1, 28, 28], grey digits light on dark, "
                      f"pixel / 127.5 - 1 (in [-1, 1])",
             "output": f"{OUTPUT}: float32 [{BATCH}, 10], softmax over the digits 0-9",
             **{key: json.dumps(metrics[key]) for key in
                ("model", "graph", "augment", "epochs", "seed", "data") if key in metrics}}
    onnx.helper.set_model_props(model, notes)
    model.producer_name, model.doc_string = "recognize_digits", "MNIST digit classifier"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def metadata(path):
    """The notes :func:`describe` recorded in an exported file (JSON values decoded)."""
    ort = _require("onnxruntime", "reading an ONNX model", INSTALL_RUN)
    notes = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]) \
        .get_modelmeta().custom_metadata_map
    return {key: _decoded(value) for key, value in notes.items()}


def _decoded(value):
    try:
        return json.loads(value)
    except ValueError:
        return value


def compare(model_a, model_b, images):
    """How far two models' answers lie apart on uint8 ``images`` (in batches of 1,000):
    the largest difference of a probability and how many digits differ."""
    a, b = predict_all(model_a, images), predict_all(model_b, images)
    return {"images": len(images), "max_difference": float(np.abs(a - b).max()),
            "digits_differing": int((a.argmax(axis=1) != b.argmax(axis=1)).sum())}


class OnnxModel(Predictor):
    """An exported ``.onnx`` model run by ONNX Runtime, with :class:`InferenceModel`'s
    ``predict``: the same inputs (as ``load_image`` makes them), the same answers, a few
    images on one thread and batches on ``threads``."""

    FAILURES = (Exception,)  # ONNX Runtime's errors have types of their own

    def __init__(self, path, threads=None):
        path = Path(path)
        export_one = (f"export it again with 'recognize-digits export --model-dir MODEL --onnx "
                      f"{path} --force'" if path.is_file() else
                      f"export one with 'recognize-digits export --model-dir MODEL --onnx {path}'")
        if not path.is_file():
            raise ModelError(f"{path}: no such file; {export_one}")
        super().__init__(threads)
        self.ort = _require("onnxruntime", "running an ONNX model", INSTALL_RUN)
        self.path, self._sessions = path, {}
        self._check_answers(path, export_one, gist=_gist)

    def _run(self, images, threads):
        if threads not in self._sessions:
            options = self.ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            options.log_severity_level = 3  # errors only: they are raised, and said once
            session = self.ort.InferenceSession(str(self.path), options,
                                                providers=["CPUExecutionProvider"])
            self._sessions[threads] = (session, session.get_inputs()[0].name)
        session, name = self._sessions[threads]
        return session.run(None, {name: images})[0]


def _gist(error):
    """ONNX Runtime's message without its ``[ONNXRuntimeError] : 7 : INVALID_PROTOBUF :``."""
    return one_line(error).split(" : ")[-1].strip()


def open_model(path, threads=None, onednn=None):
    """The model at ``path``: an :class:`OnnxModel` for a ``.onnx`` file, else the Paddle
    :class:`InferenceModel` of a saved folder (``onednn`` concerns Paddle only)."""
    if Path(path).suffix.lower() == ".onnx" and not Path(path).is_dir():
        return OnnxModel(path, threads=threads)
    return InferenceModel(path, threads=threads, onednn=onednn)
