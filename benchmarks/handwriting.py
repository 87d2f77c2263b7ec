"""Accuracy on digits as users make them: plain resize against MNIST-style preprocessing.

    python benchmarks/handwriting.py --model-dir DIR [--data-dir ../shared/mnist] [--count 2000]

Test-set digits (never trained on) become user-like images (recognize_digits.handwriting:
dark ink on light paper or light on dark, off-centre, 60-1000 pixels, thin or thick
strokes, JPEG or PNG, noise, uneven light); the model recognises each image loaded both
ways. The model in --model-dir should be LeNet-5 trained 5 passes on the full MNIST.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from recognize_digits import InferenceModel, load_image, load_mnist
from recognize_digits.data import normalize
from recognize_digits.handwriting import save_user_like


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data-dir")
    parser.add_argument("--count", type=int, default=2000, help="test digits to use")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    mnist = load_mnist(args.data_dir)
    model = InferenceModel(args.model_dir)
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(mnist.test_images), args.count, replace=False)
    digits, labels = mnist.test_images[pick], mnist.test_labels[pick]
    mnist_acc = (model.predict(normalize(digits))[0] == labels).mean()
    with tempfile.TemporaryDirectory() as folder:
        paths = save_user_like(digits, Path(folder), rng)
        rows = {}
        for name, preprocess in (("plain resize to 28x28 (the chapter)", False),
                                 ("MNIST-style preprocessing", True)):
            images = np.concatenate([load_image(p, preprocess=preprocess) for p in paths])
            rows[name] = (model.predict(images)[0] == labels).mean()
    print(f"{args.count} MNIST test digits as user-like images; model: {args.model_dir}\n")
    print("| input | accuracy |\n|---|---|")
    print(f"| the MNIST digits themselves | {100 * mnist_acc:.2f}% |")
    for name, acc in rows.items():
        print(f"| user-like images, {name} | {100 * acc:.2f}% |")


if __name__ == "__main__":
    main()
