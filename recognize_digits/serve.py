"""Draw a digit: a local web page that recognises what you draw.

``recognize-digits serve`` starts a small server (the standard library's) that loads the
model once and serves one page, with a canvas to draw on, and ``POST /predict``, which
takes a PNG (or any image) or JSON ``{"pixels": [[0-255, ...], ...]}`` of grey values and
answers ``{"digit", "probabilities", "input"}``, ``input`` being the 28x28 image the model
saw. Bad requests get a 4xx status and ``{"error": "..."}``.
"""

import io
import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files

import numpy as np
from PIL import Image

from .errors import RecognizeDigitsError
from .infer import InferenceModel, load_image

MAX_BODY = 2 * 1024 * 1024  # bytes: a drawing is a few KB, a photo well under this
MAX_PIXELS_SIDE = 1000  # for JSON pixels
# A refused body is still read and dropped, up to these bounds, before the connection closes:
# a client that sends all of it before reading the answer would otherwise get a reset.
DRAIN_BYTES = 32 * 1024 * 1024
DRAIN_SECONDS = 5
DRAIN_IDLE = 1  # seconds without data: the client is not sending a body


class BadRequest(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Recogniser:
    """The model, loaded once, shared by all requests (one prediction at a time)."""

    def __init__(self, model_dir):
        self.model = InferenceModel(model_dir)
        self.lock = threading.Lock()

    def __call__(self, body, content_type):
        if content_type.startswith("image/"):
            source = io.BytesIO(body)
        elif content_type == "application/json":
            source = _pixels_png(body)
        else:
            raise BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                             f"send an image (image/png, ...) or application/json, not "
                             f"{content_type or 'no content type'}")
        try:
            x = load_image(source)
        except RecognizeDigitsError as e:
            raise BadRequest(HTTPStatus.BAD_REQUEST, str(e)) from None
        with self.lock:
            digits, probs = self.model.predict(x)
        seen = ((x[0, 0] + 1) * 127.5).round().astype(int).tolist()
        return {"digit": int(digits[0]), "probabilities": probs[0].tolist(), "input": seen}


def _pixels_png(body):
    """JSON ``{"pixels": rows of grey values}`` as a PNG in memory."""
    try:
        pixels = np.asarray(json.loads(body)["pixels"], np.float64)
    except (ValueError, KeyError, TypeError):
        raise BadRequest(HTTPStatus.BAD_REQUEST, 'malformed JSON: expected {"pixels": '
                         '[[0-255, ...], ...]}') from None
    if pixels.ndim != 2 or max(pixels.shape) > MAX_PIXELS_SIDE or not np.isfinite(pixels).all():
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"pixels must be rows of numbers, at most "
                         f"{MAX_PIXELS_SIDE}x{MAX_PIXELS_SIDE}")
    png = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(png, "PNG")
    png.seek(0)
    return png


def make_handler(recognise):
    page = files("recognize_digits").joinpath("static/draw.html").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # seconds a client may take to send its request

        def do_GET(self):
            if self.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no page {self.path}; try / or POST /predict")

        def do_POST(self):
            try:
                length = self._content_length()
            except BadRequest as e:
                return self._refuse(e.status, str(e), DRAIN_BYTES)
            if self.path != "/predict":
                return self._refuse(HTTPStatus.NOT_FOUND,
                                    f"no endpoint {self.path}; POST /predict", length)
            if length > MAX_BODY:
                return self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                    f"the body is {length:,} bytes; send at most {MAX_BODY:,}",
                                    length)
            body = self.rfile.read(length)
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            try:
                answer = recognise(body, content_type)
            except BadRequest as e:
                return self._error(e.status, str(e))
            self._send(HTTPStatus.OK, json.dumps(answer).encode(), "application/json")

        def _content_length(self):
            """The body's size from its one Content-Length; other framings are refused."""
            if "Transfer-Encoding" in self.headers:
                raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length,"
                                 f" not Transfer-Encoding: {self.headers['Transfer-Encoding']}")
            values = self.headers.get_all("Content-Length", [])
            if not values:
                raise BadRequest(HTTPStatus.LENGTH_REQUIRED,
                                 "send a Content-Length with the body's size in bytes")
            if len(values) > 1:
                raise BadRequest(HTTPStatus.BAD_REQUEST,
                                 f"send one Content-Length header, not {len(values)}")
            value = values[0].strip()
            if not (value.isascii() and value.isdigit()):  # int() would take -1, +1 and 1_0
                raise BadRequest(HTTPStatus.BAD_REQUEST, f"Content-Length {value!r} is not a "
                                 "size; send the body's size in bytes")
            return int(value)

        def _refuse(self, status, message, length):
            """Answer before reading the body, then drop up to ``length`` bytes of it and close."""
            self.close_connection = True
            self._error(status, message)
            deadline = time.monotonic() + DRAIN_SECONDS
            left = min(length, DRAIN_BYTES)
            self.connection.settimeout(DRAIN_IDLE)
            try:
                while left > 0 and time.monotonic() < deadline:
                    chunk = self.rfile.read1(min(left, 64 * 1024))
                    if not chunk:  # the client closed
                        break
                    left -= len(chunk)
            except OSError:  # idle for DRAIN_IDLE, or the connection broke: nothing to wait for
                pass

        def _error(self, status, message):
            self._send(status, json.dumps({"error": message}).encode(), "application/json")

        def _send(self, status, body, content_type):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # quiet: one line per request is noise here
            pass

    return Handler


def make_server(model_dir, host="127.0.0.1", port=8000):
    """The server, bound and ready for ``serve_forever()``; port 0 picks a free one."""
    return ThreadingHTTPServer((host, port), make_handler(Recogniser(model_dir)))
