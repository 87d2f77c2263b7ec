import errno
import http.client
import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from recognize_digits.deploy.serve import MAX_BODY, make_server

from conftest import INFER_3


@pytest.fixture(scope="module")
def server(trained_cnn):
    server = make_server(trained_cnn[0], port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address
    server.shutdown()
    server.server_close()


def request(address, method, path, body=b"", content_type=None, headers=None):
    conn = http.client.HTTPConnection(*address, timeout=30)
    conn.request(method, path, body=body, headers={
        **({"Content-Type": content_type} if content_type else {}), **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, response.getheader("Content-Type"), data


def drawing(dark_on_light=False):
    """infer_3.png as if drawn on the page's 280x280 canvas (or on paper), as PNG bytes."""
    digit = np.asarray(Image.open(INFER_3).resize((280, 280), Image.BILINEAR))
    png = io.BytesIO()
    Image.fromarray(255 - digit if dark_on_light else digit).convert("RGBA").save(png, "PNG")
    return png.getvalue()


def test_page(server):
    status, kind, body = request(server, "GET", "/")
    assert status == 200 and kind.startswith("text/html")
    assert b'<canvas id="pad"' in body and b"/predict" in body


@pytest.mark.parametrize("dark_on_light", [False, True])
def test_a_drawn_3_is_recognised(server, dark_on_light):
    status, kind, body = request(server, "POST", "/predict", drawing(dark_on_light), "image/png")
    assert status == 200 and kind == "application/json"
    answer = json.loads(body)
    assert answer["digit"] == 3
    assert len(answer["probabilities"]) == 10 and abs(sum(answer["probabilities"]) - 1) < 1e-4
    seen = np.array(answer["input"])
    assert seen.shape == (28, 28) and seen.max() == 255 and seen[0].max() == 0


def test_json_pixels(server):
    pixels = np.asarray(Image.open(INFER_3)).tolist()
    status, _, body = request(server, "POST", "/predict", json.dumps({"pixels": pixels}).encode(),
                              "application/json")
    assert status == 200 and json.loads(body)["digit"] == 3


def black_png(width, height):
    """An all-black image, as a PNG: blank, or too small or narrow for a digit."""
    png = io.BytesIO()
    Image.new("L", (width, height)).save(png, "PNG")
    return png.getvalue()


# each error's message, and its code: the page says the error in its own language by that
@pytest.mark.parametrize("method, path, body, content_type, status, message, code", [
    ("POST", "/predict", b"not a picture", "image/png", 400,
     "the uploaded image: cannot read it as an image (cannot identify image file)",
     "not_an_image"),
    ("POST", "/predict", b"{}", "text/plain", 415, "send an image", "unsupported_type"),
    ("POST", "/predict", b"{pixels: [", "application/json", 400, "malformed JSON", "bad_json"),
    ("POST", "/predict", b'{"pixels": [1, 2]}', "application/json", 400, "rows of numbers",
     "bad_pixels"),
    ("POST", "/predict", b'{"pixels": [[]]}', "application/json", 400, "at least one",
     "bad_pixels"),
    ("POST", "/predict", b'{"pixels": []}', "application/json", 400, "rows of numbers",
     "bad_pixels"),
    ("POST", "/predict", json.dumps({"pixels": [[128] * 50] * 50}).encode(), "application/json",
     400, "blank", "blank_image"),
    pytest.param("POST", "/predict", black_png(5, 5), "image/png", 400, "too small",
                 "image_too_small", id="5x5"),
    pytest.param("POST", "/predict", black_png(1000, 10), "image/png", 400, "too narrow",
                 "image_too_narrow", id="1000x10"),
    ("POST", "/nowhere", b"", "image/png", 404, "POST /predict", "not_found"),
    ("GET", "/secret", b"", None, 404, "no page", "not_found"),
])
def test_bad_requests_get_a_4xx_with_a_message_and_a_code(server, method, path, body,
                                                          content_type, status, message, code):
    got, kind, data = request(server, method, path, body, content_type)
    assert got == status and kind == "application/json"
    assert message in json.loads(data)["error"]
    assert "object at 0x" not in json.loads(data)["error"]  # no <_io.BytesIO object at ...>
    assert json.loads(data)["code"] == code


def test_too_large_is_refused_before_reading(server):
    conn = http.client.HTTPConnection(*server, timeout=30)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Type", "image/png")
    conn.putheader("Content-Length", str(MAX_BODY + 1))
    conn.endheaders()  # and no body at all: the server must answer without waiting for it
    response = conn.getresponse()
    answer = json.loads(response.read())
    assert response.status == 413 and "at most" in answer["error"]
    assert answer["code"] == "too_large"
    conn.close()
    # and the server still answers
    assert request(server, "POST", "/predict", drawing(), "image/png")[0] == 200


def send(address, headers, body=b""):
    """POST /predict with exactly these headers (none added) and body, sent all before reading."""
    conn = http.client.HTTPConnection(*address, timeout=30)
    conn.putrequest("POST", "/predict", skip_accept_encoding=True)
    for name, value in headers:
        conn.putheader(name, value)
    conn.endheaders(body)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, response.getheader("Content-Type"), data


def chunked(data, size=64 * 1024):
    return b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size])
                    for i in range(0, len(data), size)) + b"0\r\n\r\n"


BIG = b"x" * (5 * 1024 * 1024)  # well over MAX_BODY


@pytest.mark.parametrize("headers, body, status, message", [
    ([("Content-Type", "image/png")], b"", 411, "send a Content-Length"),
    ([("Content-Length", "-1")], BIG, 400, "not a size"),
    ([("Content-Length", "abc")], BIG, 400, "not a size"),
    ([("Content-Length", "+5")], b"12345", 400, "not a size"),
    ([("Content-Length", "9" * 5000)], BIG, 400, "'9999999999999999999999999999999999999999...' "
     "(5,000 characters) is not a size"),
    ([("Content-Length", "5"), ("Content-Length", str(len(BIG) - 5))], BIG, 400,
     "one Content-Length"),
    ([("Transfer-Encoding", "chunked")], chunked(BIG), 411, "not Transfer-Encoding: chunked"),
    ([("Content-Length", "5"), ("Transfer-Encoding", "chunked")], chunked(BIG), 411,
     "not Transfer-Encoding"),
], ids=["missing", "negative", "non-numeric", "plus-sign", "5000-digits", "two", "chunked",
        "chunked+length"])
def test_a_body_without_one_valid_content_length_is_refused(server, headers, body, status,
                                                            message):
    got, kind, data = send(server, [("Content-Type", "image/png"), *headers], body)
    assert got == status and kind == "application/json"
    assert message in json.loads(data)["error"] and json.loads(data)["code"] == "bad_length"


def test_too_large_is_answered_to_a_client_that_sends_it_all_first(server):
    # http.client sends the whole body before reading: the server must drain it, not reset
    status, kind, data = request(server, "POST", "/predict", b"x" * (30 * 1024 * 1024),
                                 "image/png")
    assert status == 413 and kind == "application/json"
    assert "at most" in json.loads(data)["error"] and json.loads(data)["code"] == "too_large"


def test_slow_uploads_do_not_hold_up_others(server):
    slow = []
    for length in (1000, MAX_BODY + 1):  # one still being read, one being drained after a 413
        sock = socket.create_connection(server)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost:%d\r\nContent-Type: image/png"
                     b"\r\nContent-Length: %d\r\n\r\nabc" % (server[1], length))
        slow.append(sock)
    try:
        time.sleep(0.2)
        slow[1].sendall(b"more")  # keeps the drain going
        start = time.monotonic()
        assert request(server, "POST", "/predict", drawing(), "image/png")[0] == 200
        assert time.monotonic() - start < 2
    finally:
        for sock in slow:
            sock.close()


def test_connections_beyond_the_limit_wait_their_turn_without_threads(trained_cnn, monkeypatch):
    from recognize_digits.deploy import serve

    # each connection served reads its body into memory, with two threads: 400 slow uploads
    # at once took 803 threads and 400 MB more; here 6 against a limit of 2
    monkeypatch.setattr(serve, "MAX_CONNECTIONS", 2, raising=False)
    server = make_server(trained_cnn[0], port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address, before = server.server_address, threading.active_count()
    slow, answered = [], []
    try:
        for _ in range(6):
            sock = socket.create_connection(address)
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
                         b"image/png\r\nContent-Length: 100000\r\n\r\n" % address[1]
                         + b"x" * 50000)
            slow.append(sock)
        waiting = threading.Thread(target=lambda: answered.append(
            request(address, "POST", "/predict", drawing(), "image/png")[0]), daemon=True)
        waiting.start()
        end = time.monotonic() + 2
        while time.monotonic() < end:  # throughout: a slow machine must not make it pass
            assert threading.active_count() - before <= 2 * 2 + 1  # + the waiting client's
            assert not answered  # it waits its turn...
            time.sleep(0.05)
        for sock in slow:
            sock.close()
        waiting.join(30)
        assert answered == [200]  # ...and has it once the slow ones are gone
        for _ in range(4):  # the limit again: the next waits until shutdown, which ends it
            slow.append(socket.create_connection(address))
        time.sleep(0.2)
        start = time.monotonic()
    finally:
        server.shutdown()
        server.server_close()
        for sock in slow:
            sock.close()
    assert time.monotonic() - start < 3


@pytest.mark.parametrize("body", [
    b'{"pixels": [[1' + b"0" * 400 + b', 0]]}',  # too large for a float: OverflowError
    b'{"pixels": ' + b"[" * 200000 + b"]" * 200000 + b"}",  # too deep: RecursionError
])
def test_json_that_breaks_the_parser_is_a_400_with_a_json_error(server, body):
    status, kind, data = request(server, "POST", "/predict", body, "application/json")
    assert status == 400 and kind == "application/json"
    assert "malformed JSON" in json.loads(data)["error"] and json.loads(data)["code"] == "bad_json"


def test_a_fault_of_the_servers_is_a_500_with_a_code_and_logged(server, monkeypatch, capsys):
    from recognize_digits.deploy import serve

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(serve, "to_input", broken)
    status, kind, data = request(server, "POST", "/predict", drawing(), "image/png")
    assert status == 500 and kind == "application/json"
    assert json.loads(data)["code"] == "server_error"
    err = capsys.readouterr().err
    assert "POST '/predict' failed" in err and "RuntimeError: a bug" in err


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "BREW"])
def test_other_methods_get_an_answer_in_the_pages_json(server, method):
    conn = http.client.HTTPConnection(*server, timeout=30)
    conn.request(method, "/")
    response = conn.getresponse()
    data = response.read()
    conn.close()
    assert response.status in (405, 501) and response.getheader("Allow") == "GET, POST"
    assert response.getheader("Content-Type") == "application/json"
    if method == "HEAD":
        assert data == b""
    else:
        assert "is not served here" in json.loads(data)["error"] or response.status == 501
        assert json.loads(data)["code"] == "method_not_allowed"


def test_a_request_must_arrive_whole_within_its_deadline(server, monkeypatch):
    from recognize_digits.deploy import serve

    # a client that sends a byte every second would hold a thread forever without it
    start = time.monotonic()
    with socket.create_connection(server, timeout=30) as slow:
        slow.sendall(b"POST /predict HTTP/1.1\r\nContent-Type: image/png\r\n")
        answer = b""
        for _ in range(3 * serve.REQUEST_SECONDS):
            try:
                slow.sendall(b"X-Slow: 1\r\n")
                time.sleep(1)
            except OSError:
                break
        try:
            while chunk := slow.recv(4096):
                answer += chunk
        except OSError:
            pass
    assert time.monotonic() - start < serve.REQUEST_SECONDS + 5
    assert answer.startswith(b"HTTP/1.0 408") and b"within 10 s" in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "timeout"


def test_many_connections_at_once_are_all_answered(server, monkeypatch):
    from recognize_digits.deploy import serve

    assert serve.Server.request_queue_size >= 64  # the standard library's 5 drops bursts
    # what is tested is that no connection is dropped: on a loaded machine 40 images can
    # take longer than the 10 s after which a waiting one is answered "busy"
    monkeypatch.setattr(serve, "BUSY_SECONDS", 120)
    results = []

    def ask():
        results.append(request(server, "POST", "/predict", drawing(), "image/png")[0])

    threads = [threading.Thread(target=ask) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * 40


def test_at_most_one_image_per_core_is_preprocessed_at_once(server, monkeypatch):
    from recognize_digits.deploy import serve
    from recognize_digits.plumbing.fast_cpu import available_cores

    real, running, most = serve.open_image, [0], [0]
    lock = threading.Lock()

    def slow(source):  # preprocessing a large photo takes a while and a lot of memory
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
        return real(source)

    monkeypatch.setattr(serve, "open_image", slow)
    statuses = []
    threads = [threading.Thread(target=lambda: statuses.append(
        request(server, "POST", "/predict", drawing(), "image/png")[0])) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [200] * 8 and most[0] == min(available_cores(), 8)


@pytest.fixture
def correcting(trained_cnn, tmp_path):
    """A server that keeps corrections in tmp_path / "corrections"; (address, folder)."""
    server = make_server(trained_cnn[0], port=0, corrections=tmp_path / "corrections")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address, tmp_path / "corrections"
    server.shutdown()
    server.server_close()


def test_a_labelled_drawing_is_kept_for_finetuning(correcting):
    from recognize_digits.own_digits.folders import load_labelled_images

    address, folder = correcting
    for digit in ("3", "8"):
        status, _, body = request(address, "POST", f"/correct?digit={digit}", drawing(),
                                  "image/png")
        assert status == 200, body
    answer = json.loads(body)
    assert answer["count"] == 2 and answer["saved"].startswith(str(folder / "8"))
    assert len(list((folder / "seen").glob("*.png"))) == 2  # the 28x28 inputs beside them
    assert Image.open(next((folder / "seen").glob("*.png"))).size == (28, 28)
    paths, labels, _, skipped = load_labelled_images(folder)  # what finetune --images reads
    assert sorted(labels.tolist()) == [3, 8] and not skipped
    assert all(p.parent.name in "38" for p in paths)


@pytest.mark.parametrize("path, body, kind, status, message, code", [
    ("/correct?digit=12", None, "image/png", 400, "digit must be one of 0 to 9", "bad_digit"),
    ("/correct?digit=../../x", None, "image/png", 400, "digit must be one of 0 to 9",
     "bad_digit"),
    ("/correct", None, "image/png", 400, "digit must be one of 0 to 9", "bad_digit"),
    ("/correct?digit=3", b"not a picture", "image/png", 400, "cannot read it as an image",
     "not_an_image"),
    ("/correct?digit=3", b'{"pixels": [[0]]}', "application/json", 415, "as an image",
     "unsupported_type"),
    pytest.param("/correct?digit=3", black_png(280, 280), "image/png", 400, "blank",
                 "blank_image", id="blank"),
])
def test_bad_corrections_are_refused_and_nothing_is_kept(correcting, path, body, kind, status,
                                                         message, code):
    address, folder = correcting
    got, _, data = request(address, "POST", path, drawing() if body is None else body, kind)
    assert got == status and message in json.loads(data)["error"]
    assert json.loads(data)["code"] == code
    assert not folder.exists() or not list(folder.rglob("*.png"))


def test_corrections_stop_at_their_limit(correcting, monkeypatch):
    from recognize_digits.deploy import serve

    monkeypatch.setattr(serve, "MAX_CORRECTIONS", 2)
    address, folder = correcting
    answers = [request(address, "POST", "/correct?digit=1", drawing(), "image/png")
               for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 507]
    assert json.loads(answers[-1][2])["code"] == "too_many_corrections"
    assert len(list(folder.glob("[0-9]/*.png"))) == 2


def encoded(image, kind, **options):
    data = io.BytesIO()
    image.save(data, kind, **options)
    return data.getvalue()


def kept_pair(folder, digit):
    """The one drawing kept as ``digit``, and the 28x28 the model saw, as images."""
    (drawing,) = folder.glob(f"{digit}/*.png")
    return Image.open(drawing), Image.open(folder / "seen" / drawing.name)


def test_a_rotated_photo_is_kept_upright_as_it_was_read(correcting):
    from recognize_digits.infer import load_image

    # a phone's photo: its pixels sideways, its EXIF saying "turn me 90 degrees clockwise"
    address, folder = correcting
    upright = Image.open(io.BytesIO(drawing(dark_on_light=True))).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; the picture is shown turned back
    photo = encoded(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif)
    status, _, body = request(address, "POST", "/correct?digit=3", photo, "image/jpeg")
    assert status == 200, body
    drawing_kept, seen = kept_pair(folder, 3)
    # what fine-tuning reads from the folder is what the server recognised
    assert np.array_equal(pixels_of(load_image(drawing_kept.filename)), np.asarray(seen))


def pixels_of(x):
    from recognize_digits.data import pixels

    return pixels(x)[0]


@pytest.mark.parametrize("mode, kind", [("CMYK", "JPEG"), ("F", "TIFF"), ("I", "TIFF"),
                                        ("LAB", "TIFF"), ("RGBA", "PNG"), ("P", "GIF")])
def test_an_image_predict_takes_is_kept_whatever_its_mode(correcting, mode, kind):
    address, folder = correcting
    image = Image.open(io.BytesIO(drawing())).convert("RGB" if mode == "LAB" else "L")
    body = encoded(image.convert(mode), kind)
    assert request(address, "POST", "/predict", body, "image/" + kind.lower())[0] == 200
    status, _, data = request(address, "POST", "/correct?digit=3", body,
                              "image/" + kind.lower())
    assert status == 200, data
    drawing_kept, seen = kept_pair(folder, 3)
    assert drawing_kept.mode == "L" and seen.size == (28, 28)


def test_a_large_photo_is_kept_small_and_predictions_go_on_meanwhile(correcting, monkeypatch):
    from recognize_digits.deploy import serve

    address, folder = correcting
    big = Image.open(io.BytesIO(drawing(dark_on_light=True))).resize((1500, 1200))
    real, saving, predicted, waits = serve.replace_file, threading.Event(), threading.Event(), []

    def slow(path, write):  # a slow disk: the drawing is saved once a prediction is answered
        saving.set()
        waits.append(predicted.wait(5))
        return real(path, write)

    monkeypatch.setattr(serve, "replace_file", slow)
    kept = []
    keeper = threading.Thread(target=lambda: kept.append(request(
        address, "POST", "/correct?digit=3", encoded(big, "PNG"), "image/png")))
    keeper.start()
    assert saving.wait(30)
    try:
        assert request(address, "POST", "/predict", drawing(), "image/png")[0] == 200
    finally:
        predicted.set()
    keeper.join(30)
    assert kept[0][0] == 200 and all(waits)  # answered while the drawing was being saved
    drawing_kept, _ = kept_pair(folder, 3)
    assert max(drawing_kept.size) == serve.KEPT_SIDE and drawing_kept.mode == "L"


def test_a_folder_that_cannot_be_written_is_a_5xx_and_nothing_is_half_kept(correcting,
                                                                          monkeypatch, capsys):
    from recognize_digits.deploy import serve

    address, folder = correcting
    (folder / "seen").mkdir(parents=True)
    (folder / "3").write_text("a file where the folder of 3s goes")
    status, kind, data = request(address, "POST", "/correct?digit=3", drawing(), "image/png")
    assert status == 500 and kind == "application/json"
    answer = json.loads(data)
    assert answer["code"] == "cannot_store" and str(folder / "3") in answer["error"]
    assert not list(folder.rglob("*.png"))  # the 28x28 went with its drawing
    assert "cannot keep the drawing" in capsys.readouterr().err  # the server's runner is told
    real = serve.replace_file

    def full(path, write):
        if path.parent.name == "4":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, write)

    monkeypatch.setattr(serve, "replace_file", full)
    status, _, data = request(address, "POST", "/correct?digit=4", drawing(), "image/png")
    assert status == 507 and json.loads(data)["code"] == "storage_full"
    assert "free some space" in json.loads(data)["error"]
    assert not list(folder.rglob("*.png")) and not list(folder.rglob(".*"))


def test_a_corrections_folder_that_is_a_file_is_refused_at_the_start(trained_cnn, tmp_path):
    from recognize_digits.errors import ConfigError

    (tmp_path / "notes").write_text("mine")
    with pytest.raises(ConfigError, match="notes: is a file, not a folder"):
        make_server(trained_cnn[0], port=0, corrections=tmp_path / "notes")


def test_without_a_folder_nothing_is_kept(server):
    status, _, data = request(server, "POST", "/correct?digit=3", drawing(), "image/png")
    assert status == 404 and "--corrections" in json.loads(data)["error"]
    assert json.loads(data)["code"] == "no_corrections"


def ask_as(address, method, path, hosts, body=b""):
    """``method path`` with exactly these Host headers; (status, answer)."""
    conn = http.client.HTTPConnection(*address, timeout=30)
    conn.putrequest(method, path, skip_host=True)
    for host in hosts:
        conn.putheader("Host", host)
    if method == "POST":
        conn.putheader("Content-Type", "image/png")
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


@pytest.mark.parametrize("method, path", [("GET", "/"), ("GET", "/?lang=zh"), ("GET", "/x"),
                                          ("POST", "/predict"), ("POST", "/correct?digit=5"),
                                          ("PUT", "/")])
def test_a_host_that_names_another_server_is_refused_on_every_path(correcting, method, path):
    # a page of attacker.example, its name pointed at 127.0.0.1 (DNS rebinding), is in the
    # browser's eyes on its own site: only the Host header it sends gives it away
    address, folder = correcting
    port = address[1]
    for hosts in ([f"attacker.example:{port}"], ["attacker.example"], [f"127.0.0.1:{port + 1}"],
                  [f"localhost.attacker.example:{port}"], [f"127.0.0.1:{port}@attacker.example"],
                  [], [f"127.0.0.1:{port}", f"attacker.example:{port}"]):
        status, data = ask_as(address, method, path, hosts, drawing())
        assert status == 403 and json.loads(data)["code"] == "bad_host", hosts
    assert "attacker.example" in json.loads(ask_as(address, "GET", "/", ["attacker.example"])[1])[
        "error"]
    assert not folder.exists()
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}"):
        assert ask_as(address, "POST", "/correct?digit=5", [host], drawing())[0] == 200
    assert len(list(folder.glob("5/*.png"))) == 3


def test_listening_on_every_address_any_ip_address_names_it():
    from http.server import BaseHTTPRequestHandler

    from recognize_digits.deploy.serve import Server

    server = Server(("0.0.0.0", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    try:
        for host in (f"192.168.1.5:{port}", f"[::1]:{port}", f"localhost:{port}"):
            assert server.names_this(host), host
        for host in (f"attacker.example:{port}", f"0x7f.1:{port}", "192.168.1.5"):
            assert not server.names_this(host), host
    finally:
        server.server_close()


def test_other_sites_pages_cannot_post_drawings(correcting):
    # what a page elsewhere can send without asking first (a form, a "simple" fetch) is
    # no image; an image body is asked about first (OPTIONS), and no answer allows it
    address, folder = correcting
    cross = {"Origin": "http://attacker.example"}
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, _, data = request(address, "POST", "/correct?digit=5", drawing(), kind, cross)
        assert status == 415 and json.loads(data)["code"] == "unsupported_type"
    conn = http.client.HTTPConnection(*address, timeout=30)
    conn.request("OPTIONS", "/correct?digit=5", headers={
        **cross, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 405 and response.getheader("Access-Control-Allow-Origin") is None
    assert not folder.exists()


@pytest.mark.parametrize("path", ["/?lang=zh", "/?lang=en&x=1", "/index.html?lang=zh", "/?"])
def test_a_query_string_on_the_page_is_still_the_page(server, path):
    # a link to the page in Chinese was a 404 (issue 32, point 16)
    status, kind, body = request(server, "GET", path)
    assert status == 200 and kind.startswith("text/html") and b'<canvas id="pad"' in body
    assert request(server, "GET", "/x?lang=zh")[0] == 404


@pytest.mark.skipif(__import__("shutil").which("chromium") is None,
                    reason="Debian's chromium is not installed (.ci/run installs it)")
def test_lang_in_the_address_chooses_the_page_s_language(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=__import__("shutil").which("chromium"),
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            titles = {}
            for locale, query in (("en-US", "?lang=zh"), ("zh-CN", "?lang=en"),
                                  ("zh-CN", "?lang=fr")):  # a language it lacks: the browser's
                page = browser.new_page(locale=locale)
                page.goto("http://%s:%d/%s" % (*server, query))
                titles[locale, query] = page.locator("h1").inner_text()
                page.close()
        finally:
            browser.close()
    assert titles == {("en-US", "?lang=zh"): "手写一个数字", ("zh-CN", "?lang=en"): "Draw a digit",
                      ("zh-CN", "?lang=fr"): "手写一个数字"}


def test_listening_beyond_this_machine_with_corrections_is_warned_of(trained_cnn, tmp_path,
                                                                      monkeypatch, capsys):
    from http.server import ThreadingHTTPServer

    from recognize_digits import cli

    def stop_at_once(self, *args, **kwargs):  # as if Ctrl-C came right after the start
        raise KeyboardInterrupt

    monkeypatch.setattr(ThreadingHTTPServer, "serve_forever", stop_at_once)
    monkeypatch.chdir(tmp_path)
    model = str(trained_cnn[0])
    assert cli.main(["serve", "--model-dir", model, "--port", "0", "--host", "0.0.0.0"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(
        "recognize-digits: warning: --host 0.0.0.0 listens beyond this machine: anyone on the "
        "network who reaches port ") and err[0].endswith(
        " can keep drawings in my_digits, which finetune learns from; give --host 127.0.0.1 "
        "unless you trust the network")
    for host in ("127.0.0.1", "localhost"):  # this machine alone: nothing to warn of
        assert cli.main(["serve", "--model-dir", model, "--port", "0", "--host", host]) == 0
        assert capsys.readouterr().err == ""
    server = make_server(model, host="0.0.0.0", port=0)  # no corrections: nothing to write
    try:
        assert server.warning() is None
    finally:
        server.server_close()
