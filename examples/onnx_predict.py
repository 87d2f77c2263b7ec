"""Recognise digits with an exported model, without Paddle: numpy, Pillow and ONNX Runtime.

    pip install numpy Pillow onnxruntime
    python examples/onnx_predict.py model.onnx image/infer_3.png [IMAGE ...]

The model comes from ``recognize-digits export --model-dir MODEL --onnx model.onnx``.
The preprocessing here is the package's plain one (``predict --no-preprocess``): grey,
resized to 28x28, each pixel scaled to ``pixel / 127.5 - 1``. For an image that is
already MNIST-style, light digit on dark, 28x28 (as ``image/infer_3.png``), that is
exactly what the package's full preprocessing gives too; photos and drawings need that
full preprocessing (``recognize_digits.preprocess.mnist_style``: inverting, cropping,
centring), which this short example leaves out.
"""

import sys

import numpy as np
import onnxruntime
from PIL import Image


def to_input(path):
    """The image as the model's input: float32 [1, 1, 28, 28] in [-1, 1]."""
    grey = Image.open(path).convert("L")
    if grey.size != (28, 28):
        grey = grey.resize((28, 28), Image.LANCZOS)
    pixels = np.asarray(grey, np.float32)
    return (pixels / np.float32(255) * np.float32(2) - np.float32(1)).reshape(1, 1, 28, 28)


def main(model, *images):
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name  # "img", of shape [batch, 1, 28, 28]
    batch = np.concatenate([to_input(path) for path in images])
    probabilities = session.run(None, {name: batch})[0]  # [batch, 10]
    for path, p in zip(images, probabilities):
        print(f"{path}: {p.argmax()} (probability {p.max():.4f})")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__.splitlines()[3].strip())
    main(*sys.argv[1:])
