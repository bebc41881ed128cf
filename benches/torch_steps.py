"""PyTorch's CPU training step on the shapes `cargo bench --bench sandbox -- models`
measures fedwasm on: the anchor of that benchmark, run by it in the same session.

usage: python torch_steps.py THREADS STEPS
prints one line per model: `<name> <median step in ms>`.
"""
import statistics
import sys
import time

import torch
import torch.nn as nn

torch.set_num_threads(int(sys.argv[1]))
steps = int(sys.argv[2])
torch.manual_seed(0)


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def bn_cnn():
    block = lambda i, o: [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
    return nn.Sequential(
        *block(1, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2), *block(32, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 6))


models = [
    ("mlp", nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)), (64, 784), 10),
    ("lenet5", lenet(), (32, 1, 28, 28), 10),
    ("bn-cnn", bn_cnn(), (32, 1, 64, 64), 6),
]
for name, model, shape, classes in models:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(shape) * 2 - 1
    y = torch.arange(shape[0]) % classes
    times = []
    for _ in range(steps + 5):
        t = time.perf_counter()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t)
    print(name, statistics.median(times[5:]) * 1e3, flush=True)
