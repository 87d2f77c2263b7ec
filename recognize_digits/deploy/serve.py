"""Draw a digit: a local web page that recognises what you draw.

``recognize-digits serve`` starts a small server (the standard library's) that loads the
model once and serves one page, with a canvas to draw on, and ``POST /predict``, which
takes a PNG (or any image) or JSON ``{"pixels": [[0-255, ...], ...]}`` of grey values and
answers ``{"digit", "probabilities", "input"}``, ``input`` being the 28x28 image the model
saw; and ``POST /correct?digit=D`` with the drawing, which keeps it as a ``D`` in the
corrections folder, for ``recognize-digits finetune --images`` (at most
:data:`MAX_CORRECTIONS` drawings, each kept as the model read it: upright, grey, at most
:data:`KEPT_SIDE` pixels a side).

Memory stays bounded however many clients come: at most :data:`MAX_CONNECTIONS` are
served at once, each reading at most :data:`MAX_BODY` (later ones wait their turn, unread,
in the system's queue of connections); a request must arrive whole within
:data:`REQUEST_SECONDS`, so a slow client does not keep its turn; and at most as many
images are preprocessed at once as there are cores (the others wait their turn, up to
:data:`BUSY_SECONDS`).

The server answers only requests whose Host header names it (the address it listens on,
``localhost`` or ``127.0.0.1``, and its port; any IP address when it listens on all of
them): a page of another site whose name it has pointed at 127.0.0.1 (DNS rebinding) is
refused. Other sites' pages cannot post to it directly either: what a browser sends
unasked is no image, and for an image body it asks first (OPTIONS), which nothing allows.

Whatever went wrong, the answer is a 4xx or 5xx status and ``{"error": "...", "code":
"..."}``: ``error`` says it in English for people, ``code`` names it in a word that stays
the same when the wording changes, for the page to say it in its own language:

``bad_host`` (403: the Host names another server), ``not_found`` (no such page or
endpoint), ``method_not_allowed``, ``bad_request`` (a request the standard library cannot
parse), ``timeout`` (not whole in time), ``bad_length`` (no single valid Content-Length),
``too_large`` (the body), ``unsupported_type`` (the Content-Type), ``bad_json``,
``bad_pixels`` (JSON pixels not rows of numbers, or too many), ``not_an_image``,
``image_too_large``, ``image_too_small``, ``image_too_narrow``, ``blank_image`` (no digit
found), ``busy`` (503), ``bad_digit`` (``/correct``'s digit), ``no_corrections`` (the
server keeps none), ``too_many_corrections`` (507), ``storage_full`` (507: the disk),
``cannot_store`` (500: the folder cannot be written) and ``server_error`` (500: a fault of
the server's); the last three are logged on the server's stderr too.
"""

import errno
import io
import ipaddress
import json
import re
import socket
import sys
import threading
import time
import traceback
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files

import numpy as np
from PIL import Image

from ..data import pixels
from ..errors import ConfigError, RecognizeDigitsError
from ..infer import open_image, to_grey, to_input
from ..plumbing.fast_cpu import available_cores
from ..plumbing.storage import replace_file
from ..preprocess import WORK_SIDE
from .export import open_model

MAX_BODY = 2 * 1024 * 1024  # bytes: a drawing is a few KB, a photo well under this
MAX_PIXELS_SIDE = 1000  # for JSON pixels
# A refused body is still read and dropped, up to these bounds, before the connection closes:
# a client that sends all of it before reading the answer would otherwise get a reset.
DRAIN_BYTES = 32 * 1024 * 1024
DRAIN_SECONDS = 5
DRAIN_IDLE = 1  # seconds without data: the client is not sending a body
REQUEST_SECONDS = 10  # to send the whole request, headers and body: slow clients are cut off
# connections served at once (two threads each, with the deadline's): a page sends one
# request at a time, and 32 bodies of MAX_BODY are 64 MB
MAX_CONNECTIONS = 32
BUSY_SECONDS = 10  # to wait for a turn at preprocessing before 503
ALLOWED = "GET, POST"
LOCAL_NAMES = ("localhost", "127.0.0.1")  # what a browser on this machine calls it
MAX_CORRECTIONS = 1000  # drawings kept in the corrections folder
# A kept drawing's longest side, at most: as much as a photo is decoded at (infer.open_image),
# four times what preprocessing works on, so that a thin pen line survives. A grey PNG
# this large is at most about 1 MB, so the folder stays under about 1 GB.
KEPT_SIDE = 4 * WORK_SIDE


class BadRequest(Exception):
    """An answer other than 200: its status, its code (listed above) and its message."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code = status, code


class Recogniser:
    """The model (a saved folder, or an exported ``.onnx`` file on ONNX Runtime), loaded
    once, shared by all requests (one prediction at a time)."""

    def __init__(self, model_dir, corrections=None):
        self.corrections = None if corrections is None else Path(corrections)
        if self.corrections is not None and self.corrections.is_file():
            raise ConfigError(f"{corrections}: is a file, not a folder; choose another "
                              f"corrections=...")
        self.model = open_model(model_dir)
        self.lock = threading.Lock()  # the model's: one prediction at a time
        self.keeping = threading.Lock()  # one writer of corrections: counts and names stay right
        # preprocessing a large photo takes memory: only so many at once
        self.turns = threading.BoundedSemaphore(available_cores())

    def __call__(self, body, content_type):
        x, _ = self._read(body, content_type)
        with self.lock:
            digits, probs = self.model.predict(x)
        seen = pixels(x)[0].tolist()
        return {"digit": int(digits[0]), "probabilities": probs[0].tolist(), "input": seen}

    def correct(self, body, content_type, digit):
        """Keep the drawing ``body`` as a ``digit`` in the corrections folder: the drawing in
        ``DIGIT/`` (the folder format of ``evaluate --images``) and the 28x28 image the
        model saw in ``seen/`` (named by time alone, so it is not read as a digit again).

        The drawing is kept as the model read it, the grey image its preprocessing started
        from (upright as EXIF says, transparency on white, colour by contrast, any mode
        made 8-bit), reduced to at most :data:`KEPT_SIDE` a side: fine-tuning reads it
        again as what was recognised, and no upload keeps more than about 1 MB."""
        if self.corrections is None:
            raise BadRequest(HTTPStatus.NOT_FOUND, "no_corrections", "this server keeps no "
                             "corrections; start it with --corrections DIR")
        if not (len(digit) == 1 and digit in "0123456789"):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "bad_digit",
                             f"digit must be one of 0 to 9, not {digit!r}")
        if not content_type.startswith("image/"):
            raise BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_type",
                             "send the drawing to keep as an image (image/png, ...)")
        x, drawing = self._read(body, content_type, keep=True)
        seen = Image.fromarray(pixels(x)[0])
        with self.keeping:  # not the model's lock: predictions go on while this is saved
            kept = sum(1 for _ in self.corrections.glob("[0-9]/*.png"))
            if kept >= MAX_CORRECTIONS:
                raise BadRequest(HTTPStatus.INSUFFICIENT_STORAGE, "too_many_corrections",
                                 f"{self.corrections} holds {kept} drawings, the most it "
                                 f"keeps; fine-tune on them, or start the server with another "
                                 f"--corrections")
            name = f"{datetime.now():%Y%m%d-%H%M%S}-{kept + 1:04d}.png"
            # seen/ first: a drawing without its 28x28 would count, the other way round not
            self._keep(seen, self.corrections / "seen" / name)
            try:
                self._keep(drawing, self.corrections / digit / name)
            except BadRequest:
                (self.corrections / "seen" / name).unlink()  # nor one without its drawing
                raise
        return {"saved": str(self.corrections / digit / name), "count": kept + 1}

    def _keep(self, image, path):
        """Save ``image`` as the PNG ``path`` (whole, or not at all); a full disk is a 507,
        any other failure to write a 500, each logged for whoever runs the server."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_file(path, lambda tmp: image.save(tmp, "PNG"))
        except OSError as e:
            full = e.errno in (errno.ENOSPC, errno.EDQUOT)
            message = (f"cannot keep the drawing in {self.corrections}: {e.filename or path}: "
                       f"{e.strerror or e}; " + ("free some space on its disk" if full else
                                                 "start the server with a --corrections "
                                                 "folder it can write"))
            _log(message)
            raise BadRequest(HTTPStatus.INSUFFICIENT_STORAGE if full else
                             HTTPStatus.INTERNAL_SERVER_ERROR,
                             "storage_full" if full else "cannot_store", message) from None

    def _read(self, body, content_type, keep=False):
        """The drawing as the model's input and, to ``keep`` it, the grey image that input
        was made from, at most KEPT_SIDE a side (else None); BadRequest for what is no
        image of a digit."""
        if content_type.startswith("image/"):
            source = io.BytesIO(body)
            source.name = "the uploaded image"  # what error messages call it
        elif content_type == "application/json":
            source = _pixels_png(body)
        else:
            raise BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_type",
                             f"send an image (image/png, ...) or application/json, not "
                             f"{content_type or 'no content type'}")
        if not self.turns.acquire(timeout=BUSY_SECONDS):
            raise BadRequest(HTTPStatus.SERVICE_UNAVAILABLE, "busy", f"busy for more than "
                             f"{BUSY_SECONDS} s with other images; try again")
        try:  # infer.load_image's steps, the grey image kept between them
            grey = to_grey(open_image(source))
            x = to_input(grey, name=source.name)
            if keep:
                grey.thumbnail((KEPT_SIDE, KEPT_SIDE))  # in this turn: memory stays bounded
        except RecognizeDigitsError as e:
            raise BadRequest(HTTPStatus.BAD_REQUEST, getattr(e, "code", "bad_image"),
                             str(e)) from None
        finally:
            self.turns.release()
        return x, grey if keep else None


def _log(message):
    """One line on the server's standard error, for a fault the server's runner must fix:
    the client is told too, but it is not theirs to fix."""
    print(f"recognize-digits serve: error: {message}", file=sys.stderr, flush=True)


def _shown(value, most=40):
    """A header's value as a message quotes it: at most ``most`` characters of it."""
    return repr(value if len(value) <= most else f"{value[:most]}...") + (
        f" ({len(value):,} characters)" if len(value) > most else "")


def _pixels_png(body):
    """JSON ``{"pixels": rows of grey values}`` as a PNG in memory."""
    try:
        pixels = np.asarray(json.loads(body)["pixels"], np.float64)
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "bad_json",
                         'malformed JSON: expected {"pixels": [[0-255, ...], ...]}') from None
    if (pixels.ndim != 2 or not pixels.size or max(pixels.shape) > MAX_PIXELS_SIDE
            or not np.isfinite(pixels).all()):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "bad_pixels", f"pixels must be rows of "
                         f"numbers, at least one, at most {MAX_PIXELS_SIDE}x{MAX_PIXELS_SIDE}")
    png = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(png, "PNG")
    png.seek(0)
    png.name = "the drawing"
    return png


def make_handler(recognise):
    page = files("recognize_digits").joinpath("deploy/static/draw.html").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_SECONDS  # for each read; the deadline below bounds them all

        def setup(self):
            super().setup()
            self.deadline = threading.Timer(REQUEST_SECONDS, self._too_slow)
            self.deadline.start()

        def _too_slow(self):
            """The whole request did not arrive in time: answer 408 and cut the connection,
            which ends the read the handler is waiting in."""
            body = json.dumps({"error": f"send the whole request within {REQUEST_SECONDS} s",
                               "code": "timeout"})
            try:
                self.connection.sendall(
                    f"HTTP/1.0 408 Request Timeout\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode())
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def finish(self):
            self.deadline.cancel()
            try:
                super().finish()
            except OSError:  # the client is gone, or was cut off
                pass

        def parse_request(self):
            """The standard library's parsing, then the Host header checked: answered only
            if it names this server. A page of any site can reach 127.0.0.1 by pointing its
            own name there (DNS rebinding), but its requests still carry that name."""
            if not super().parse_request():
                return False
            hosts = self.headers.get_all("Host", [])
            if len(hosts) == 1 and self.server.names_this(hosts[0]):
                return True
            given = (f"Host {_shown(hosts[0])}" if len(hosts) == 1
                     else f"{len(hosts)} Host headers" if hosts else "no Host header")
            try:
                length = self._content_length()
            except BadRequest:  # no body declared (a GET), or one framed badly
                length = DRAIN_BYTES if self.command == "POST" else 0
            self._refuse(HTTPStatus.FORBIDDEN, "bad_host", f"{given}: this server answers only "
                         f"to {self.server.names_text()}, so that no other site's page can "
                         f"reach it", length)
            return False

        def do_GET(self):
            self.deadline.cancel()
            # a query string is the page's (/?lang=zh), not another page
            if urlsplit(self.path).path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            else:
                self._error(HTTPStatus.NOT_FOUND, "not_found",
                            f"no page {self.path}; try / or POST /predict")

        def do_POST(self):
            try:
                length = self._content_length()
            except BadRequest as e:
                return self._refuse(e.status, e.code, str(e), DRAIN_BYTES)
            where = urlsplit(self.path)
            if where.path not in ("/predict", "/correct"):
                return self._refuse(HTTPStatus.NOT_FOUND, "not_found",
                                    f"no endpoint {self.path}; POST /predict", length)
            if length > MAX_BODY:
                return self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large",
                                    f"the body is {length:,} bytes; send at most {MAX_BODY:,}",
                                    length)
            body = self.rfile.read(length)
            if len(body) < length:  # cut off by the deadline, or the client closed
                self.close_connection = True
                return
            self.deadline.cancel()
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            try:
                if where.path == "/predict":
                    answer = recognise(body, content_type)
                else:
                    digit = parse_qs(where.query).get("digit", [""])[0]
                    answer = recognise.correct(body, content_type, digit)
            except BadRequest as e:
                return self._error(e.status, e.code, str(e))
            except Exception as e:  # a fault of the server's: answered, and logged in full
                _log(f"{self.command} {_shown(self.path)} failed:\n{traceback.format_exc()}")
                return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "server_error",
                                   f"the server failed on this request ({type(e).__name__}); "
                                   f"its log says more")
            self._send(HTTPStatus.OK, json.dumps(answer).encode(), "application/json")

        def _content_length(self):
            """The body's size from its one Content-Length; other framings are refused."""
            if "Transfer-Encoding" in self.headers:
                raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "bad_length", "send the body with "
                                 "a Content-Length, not Transfer-Encoding: "
                                 f"{self.headers['Transfer-Encoding']}")
            values = self.headers.get_all("Content-Length", [])
            if not values:
                raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "bad_length",
                                 "send a Content-Length with the body's size in bytes")
            if len(values) > 1:
                raise BadRequest(HTTPStatus.BAD_REQUEST, "bad_length",
                                 f"send one Content-Length header, not {len(values)}")
            value = values[0].strip()
            # int() would take -1, +1 and 1_0, and refuse over 4,300 digits with a ValueError
            if not (value.isascii() and value.isdigit()) or len(value) > 18:
                raise BadRequest(HTTPStatus.BAD_REQUEST, "bad_length", f"Content-Length "
                                 f"{_shown(value)} is not a size; send the body's size in bytes")
            return int(value)

        def _refuse(self, status, code, message, length):
            """Answer before reading the body, then drop up to ``length`` bytes of it and close."""
            self.close_connection = True
            self._error(status, code, message)
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

        def do_other(self):
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed", f"{self.command} "
                        f"is not served here; GET / for the page, POST /predict with an image")

        do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_other

        def send_error(self, code, message=None, explain=None):
            """The standard library's own errors (a malformed request line, a method it does
            not know, headers too long, ...) in the page's JSON, not as an HTML page."""
            self.close_connection = True
            kind = "method_not_allowed" if code == HTTPStatus.NOT_IMPLEMENTED else "bad_request"
            self._error(code, kind, message or HTTPStatus(code).phrase)

        def _error(self, status, code, message):
            body = json.dumps({"error": message, "code": code}).encode()
            self._send(status, body, "application/json")

        def _send(self, status, body, content_type):
            self.send_response(status)
            if status in (HTTPStatus.METHOD_NOT_ALLOWED, HTTPStatus.NOT_IMPLEMENTED):
                self.send_header("Allow", ALLOWED)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format, *args):  # quiet: one line per request is noise here
            pass

    return Handler


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # connections waiting to be accepted (the default is 5)

    def __init__(self, address, handler, corrections=None):
        super().__init__(address, handler)
        self.corrections = corrections  # the folder drawings are kept in, if any
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.stopping = threading.Event()
        bound = self.server_address[0]
        # listening on every address, it is reached by any of the machine's: an IP address
        # is no name another site can point here
        self.any_address = ipaddress.ip_address(bound).is_unspecified
        self.names = {*LOCAL_NAMES, *(() if self.any_address else (address[0].lower(), bound))}

    def warning(self):
        """What the one who starts the server should know before anyone uses it, or None:
        listening beyond this machine, it lets the network keep drawings in the corrections
        folder, which fine-tuning learns from (the Host check stops other sites' pages, not
        other machines)."""
        if self.corrections is None or ipaddress.ip_address(self.server_address[0]).is_loopback:
            return None
        host, port = self.server_address[:2]
        return (f"host={host} listens beyond this machine: anyone on the network who reaches "
                f"port {port} can keep drawings in {self.corrections}, which finetune learns "
                f"from; give host=127.0.0.1 unless you trust the network")

    def names_this(self, host):
        """Whether ``host`` (a Host header: name, and port unless it is 80) is this server."""
        match = re.fullmatch(r"(\[[0-9a-f:.]+\]|[^\s:\[\]]+)(?::([0-9]{1,5}))?",
                             host.strip().lower())
        if not match or int(match.group(2) or 80) != self.server_address[1]:
            return False
        name = match.group(1).strip("[]")
        if name in self.names:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return self.any_address

    def names_text(self):
        port = self.server_address[1]
        return " or ".join([*(f"{name}:{port}" for name in sorted(self.names))]
                           + (["any of this machine's IP addresses"] if self.any_address else []))

    def process_request(self, request, client_address):
        """Serve the connection in a thread of its own once fewer than MAX_CONNECTIONS
        are: until then it waits, and the connections after it wait in the system's queue
        unread, so that neither threads nor the bodies they read grow with the load."""
        while not self.slots.acquire(timeout=0.5):
            if self.stopping.is_set():  # shutdown() waits for this loop
                return self.shutdown_request(request)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def serve_forever(self, poll_interval=0.5):
        self.stopping.clear()
        super().serve_forever(poll_interval)

    def shutdown(self):
        self.stopping.set()
        super().shutdown()

    def handle_error(self, request, client_address):
        """Quiet about clients that went away or were cut off; anything else as usual."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def make_server(model_dir, host="127.0.0.1", port=8000, corrections=None):
    """The server, bound and ready for ``serve_forever()``; port 0 picks a free one.
    ``model_dir`` is a saved model's folder or an exported ``.onnx`` file. With
    ``corrections`` (a folder), the page can keep drawings the user labels there;
    listening beyond this machine, the server's ``warning()`` then says who can."""
    recognise = Recogniser(model_dir, corrections)
    return Server((host, port), make_handler(recognise), recognise.corrections)
