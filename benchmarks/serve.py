"""Latency of the draw-a-digit server: many requests with a drawn digit, median and p99.

    python benchmarks/serve.py --model-dir DIR [--requests 500]

The server runs in this process on a free port of 127.0.0.1; each request is a new
HTTP connection that POSTs a 280x280 PNG, as the page sends it while you draw.
"""

import argparse
import http.client
import io
import statistics
import threading
import time

import numpy as np
from PIL import Image

from recognize_digits.deploy.serve import make_server


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()

    server = make_server(args.model_dir, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    digit = np.asarray(Image.open("image/infer_3.png").resize((280, 280), Image.BILINEAR))
    png = io.BytesIO()
    Image.fromarray(digit).convert("RGBA").save(png, "PNG")
    body = png.getvalue()
    times = []
    for _ in range(args.requests):
        start = time.perf_counter()
        conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
        conn.request("POST", "/predict", body=body, headers={"Content-Type": "image/png"})
        response = conn.getresponse()
        response.read()
        conn.close()
        assert response.status == 200
        times.append(1000 * (time.perf_counter() - start))
    server.shutdown()
    times.sort()
    print(f"{args.requests} requests of a {len(body):,}-byte PNG drawing: "
          f"median {statistics.median(times):.1f} ms, p99 {times[int(0.99 * len(times)) - 1]:.1f} ms, "
          f"max {times[-1]:.1f} ms")


if __name__ == "__main__":
    main()
