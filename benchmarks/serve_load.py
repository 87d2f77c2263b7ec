"""The draw-a-digit server under load: its threads and memory while many clients upload
slowly, and how long a prediction waits beside a large drawing being kept.

    python benchmarks/serve_load.py --model-dir DIR [--against CHECKOUT] [--connections 400]

The server runs in a process of its own (from this checkout, or from ``--against``'s, to
compare two versions on one machine), read through /proc, so Linux only:

1. ``--connections`` clients each declare a 2 MB body, send 1 MB of it and stop, as a
   page or a process that means harm could; the server's threads and resident memory are
   sampled for 12 s, then they go away; one ordinary prediction, sent 1 s after them, is
   timed.
2. A 7000x7000 JPEG (about 1.2 MB) is POSTed to ``/correct`` while predictions are sent
   one after another: the slowest of them, and the size of the file kept.
"""

import argparse
import http.client
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SERVER = """
import sys
try:
    from recognize_digits.deploy.serve import make_server
except ImportError:  # before the chapter-first layout (issue 30), as in e94c13d
    from recognize_digits.serve import make_server
server = make_server(sys.argv[1], port=0, corrections=sys.argv[2])
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def status(pid):
    """The process's resident memory (MB) and threads."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def post(port, path, body, timeout=120):
    """Seconds to an answer, its status, and its body."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", path, body=body, headers={"Content-Type": "image/png"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return time.perf_counter() - start, response.status, data


def drawing(side=280):
    """image/infer_3.png as the page draws it (light on black), ``side`` pixels a side."""
    digit = Image.open(ROOT / "image" / "infer_3.png").resize((side, side), Image.BILINEAR)
    png = io.BytesIO()
    digit.convert("RGB").save(png, "PNG")
    return png.getvalue()


def slow_uploads(port, pid, connections):
    stop = threading.Event()

    def upload():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
                             b"image/png\r\nContent-Length: %d\r\n\r\n" % (port, 2 * 2**20))
                sock.sendall(b"x" * 2**20)
                stop.wait()
        except OSError:  # the server's queue is full, or it cut the connection
            pass

    threads = [threading.Thread(target=upload, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    answer = {}
    ask = threading.Thread(target=lambda: answer.update(zip(
        ("seconds", "status"), post(port, "/predict", drawing()))), daemon=True)
    time.sleep(1)
    ask.start()
    peak_rss, peak_threads, end = 0, 0, time.monotonic() + 12
    while time.monotonic() < end:
        rss, n = status(pid)
        peak_rss, peak_threads = max(peak_rss, rss), max(peak_threads, n)
        time.sleep(0.2)
    stop.set()  # the clients go away, after 13 s
    ask.join(300)
    return peak_rss, peak_threads, answer


def large_correction(port, folder):
    rng = np.random.default_rng(0)
    side = 7000
    digit = Image.open(ROOT / "image" / "infer_3.png").resize((side, side), Image.BILINEAR)
    paper = 255 - np.asarray(digit, np.int16) + rng.integers(-8, 9, (side, side))
    jpeg = io.BytesIO()
    Image.fromarray(paper.clip(0, 255).astype(np.uint8)).save(jpeg, "JPEG", quality=55)
    body, times, done = jpeg.getvalue(), [], threading.Event()
    kept = {}

    def correct():
        kept["seconds"], kept["status"], _ = post(port, "/correct?digit=3", body)
        done.set()

    small = drawing()
    threading.Thread(target=correct, daemon=True).start()
    while not done.is_set():
        times.append(post(port, "/predict", small)[0])
    files = list(Path(folder).glob("3/*.png"))
    return len(body), kept, max(times), len(times), files[0].stat().st_size if files else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--against", metavar="CHECKOUT", help="run the server of this checkout")
    parser.add_argument("--connections", type=int, default=400)
    args = parser.parse_args()
    code = Path(args.against or ROOT).resolve()
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(Path(args.model_dir).resolve()), folder],
            stdout=subprocess.PIPE, text=True, cwd=folder,
            env={**os.environ, "PYTHONPATH": str(code)})
        try:
            port = int(server.stdout.readline())
            post(port, "/predict", drawing())
            rss, threads = status(server.pid)
            print(f"server of {code}: after one prediction {threads} threads, {rss:.0f} MB")
            peak_rss, peak_threads, answer = slow_uploads(port, server.pid, args.connections)
            print(f"{args.connections} connections each sending 1 MB of a declared 2 MB: at "
                  f"most {peak_threads} threads, {peak_rss:.0f} MB; a prediction meanwhile: "
                  f"{answer.get('status')} in {answer.get('seconds', float('nan')):.2f} s")
            time.sleep(3)
            size, kept, slowest, n, stored = large_correction(port, folder)
            print(f"/correct with a 7000x7000 JPEG of {size / 1e6:.2f} MB: {kept['status']} in "
                  f"{kept['seconds']:.2f} s, kept as {stored and stored / 1e6:.2f} MB; the "
                  f"slowest of {n} predictions meanwhile took {slowest:.2f} s")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
