#!/usr/bin/python3
"""The Python peer of methods/train's throughput benchmark (issue 6): the same small_cnn
(methods/train/models.cc, MakeSmallCnn), batch, optimizer and normalization in PyTorch, from
Debian's python3-torch (the same LibTorch 1.13 as the C++ trainer), on the same machine.

  /usr/bin/python3 tools/train_peer.py --images=10000 --epochs=2 --threads=2 --json_out=peer.json

It times whole training epochs (shuffle, batch gather, forward, backward, SGD step) and prints
images per second for each; tools/train_throughput.sh runs it beside the C++ trainer.
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

MEAN, STD = 0.2860, 0.3530  # methods/train/batches.h


def read_idx(path, magic, header_ints):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    head = np.frombuffer(data[:4 * (1 + header_ints)], dtype=">u4")
    if head[0] != magic:
        sys.exit(f"{path}: magic {head[0]:#x}, expected {magic:#x}")
    return head[1:], np.frombuffer(data[4 * (1 + header_ints):], dtype=np.uint8)


def load(directory, images):
    def path(name):
        plain = os.path.join(directory, name)
        return plain if os.path.exists(plain) else plain + ".gz"
    dims, pixels = read_idx(path("train-images-idx3-ubyte"), 0x803, 3)
    _, labels = read_idx(path("train-labels-idx1-ubyte"), 0x801, 1)
    x = torch.from_numpy(pixels.reshape(int(dims[0]), 1, 28, 28).copy())[:images]
    y = torch.from_numpy(labels.astype(np.int64))[:images]
    return (x.float() / 255 - MEAN) / STD, y


def small_cnn(width, features=128):
    c1, c2 = width, 2 * width
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(c2 * 7 * 7, features), nn.ReLU(), nn.Linear(features, 10))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default=os.environ.get(
        "TROUPE_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels_last", action="store_true",
                        help="model and batches in channels-last memory format (off: the "
                        "benchmark's peer; on: its supplementary row)")
    parser.add_argument("--json_out", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x, y = load(args.data_dir, args.images)
    model = small_cnn(args.width)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    rates = []
    for epoch in range(args.epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(x))
        for first in range(0, len(x), args.batch_size):
            index = order[first:first + args.batch_size]
            loss = loss_fn(model(x[index].contiguous(memory_format=layout)), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        rates.append(len(x) / seconds)
        print(f"python epoch {epoch + 1}/{args.epochs}: {seconds:.2f} s, {rates[-1]:.0f} img/s, "
              f"last loss {loss.item():.4f}", flush=True)
    result = {"torch": torch.__version__, "threads": args.threads, "images": len(x),
              "batch_size": args.batch_size, "width": args.width,
              "channels_last": args.channels_last,
              "images_per_second": rates}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
