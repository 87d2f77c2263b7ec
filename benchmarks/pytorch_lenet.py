"""The package's one-pass training as a PyTorch process: the yardstick of throughput.py.

    python benchmarks/pytorch_lenet.py --data-dir ../shared/mnist --save PATH [--epochs 1]

Does what ``recognize-digits train --model cnn`` does, in PyTorch eager mode on the
CPU: reads MNIST's gzip files, scales pixels to [-1, 1], holds out the first 5,000
training images for validation, trains LeNet-5 (the same layers, batch 64, Adam 0.001)
on shuffled batches reading each batch's cost and accuracy back, tests on the
validation and test sets after each pass, and saves the weights.
"""

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def read(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def load(folder, kind):
    images = read(Path(folder) / f"{kind}-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    labels = read(Path(folder) / f"{kind}-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1), torch.from_numpy(labels)


def lenet():
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(20),
                         nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(800, 10))


@torch.no_grad()
def test(net, images, labels, batch=1000):
    net.eval()
    cost = correct = 0.0
    for i in range(0, len(images), batch):
        out = net(images[i:i + batch])
        cost += F.cross_entropy(out, labels[i:i + batch], reduction="sum").item()
        correct += (out.argmax(1) == labels[i:i + batch]).sum().item()
    net.train()
    return cost / len(images), correct / len(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--save", required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    images, labels = load(args.data_dir, "train")
    test_images, test_labels = load(args.data_dir, "t10k")
    val, train = slice(0, 5000), slice(5000, None)
    net = lenet()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.001)
    for epoch in range(args.epochs):
        order = torch.randperm(len(images[train]))
        x_all, y_all = images[train], labels[train]
        for i in range(0, len(order), 64):
            pick = order[i:i + 64]
            out = net(x_all[pick])
            loss = F.cross_entropy(out, y_all[pick])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item(), (out.argmax(1) == y_all[pick]).float().mean().item()
        val_cost, _ = test(net, images[val], labels[val])
        test_cost, test_acc = test(net, test_images, test_labels)
        print(f"pass {epoch}: validation cost {val_cost:.4f}, test cost {test_cost:.4f}, "
              f"accuracy {test_acc:.4f}, {time.perf_counter() - start:.1f} s")
    torch.save(net.state_dict(), args.save)


if __name__ == "__main__":
    main()
