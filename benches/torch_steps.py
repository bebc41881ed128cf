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


class UNet(nn.Module):
    """The unet plan's network at base_channels 8, depth 2."""

    def __init__(self, base=8, depth=2, classes=2):
        super().__init__()
        block = lambda i, o: nn.Sequential(
            nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
            nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU())
        width = [base << k for k in range(depth + 1)]
        self.down = nn.ModuleList(block(i, o) for i, o in zip([1] + width[:depth - 1], width[:depth]))
        self.bottom = block(width[depth - 1], width[depth])
        self.up = nn.ModuleList(block(width[k] + width[k + 1], width[k]) for k in range(depth))
        self.head = nn.Conv2d(base, classes, 1)

    def forward(self, x):
        skips = []
        for b in self.down:
            x = b(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.bottom(x)
        for b, s in reversed(list(zip(self.up, skips))):
            x = b(torch.cat([s, nn.functional.interpolate(x, scale_factor=2, mode="nearest")], 1))
        return self.head(x)


def segmentation_loss(logits, masks):
    """Per-pixel cross-entropy + 0.5 soft Dice of the foreground, as the plan's Segmenter."""
    ce = nn.functional.cross_entropy(logits, masks)
    probs = logits.softmax(1)[:, 1:].flatten(1)
    hot = nn.functional.one_hot(masks, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].flatten(1).float()
    dice = 1 - (2 * (probs * hot).sum(1) + 1) / (probs.sum(1) + hot.sum(1) + 1)
    return ce + 0.5 * dice.mean()


models = [
    ("mlp", nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)), (64, 784), 10),
    ("lenet5", lenet(), (32, 1, 28, 28), 10),
    ("bn-cnn", bn_cnn(), (32, 1, 64, 64), 6),
]
models.append(("unet", UNet(), (16, 1, 64, 64), 2))
try:
    import torchvision

    models.append(("resnet18-64", torchvision.models.resnet18(num_classes=10), (16, 3, 64, 64), 10))
    models.append(("resnet18-224", torchvision.models.resnet18(num_classes=10), (8, 3, 224, 224), 10))
except ImportError:
    print("torchvision missing: no ResNet anchor", file=sys.stderr)

for name, model, shape, classes in models:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(shape) * 2 - 1
    if name == "unet":
        y = torch.randint(0, 2, (shape[0], shape[2], shape[3]))
        loss = segmentation_loss
        n = steps // 2
    else:
        y = torch.arange(shape[0]) % classes
        loss = nn.functional.cross_entropy
        n = {"resnet18-64": steps // 5, "resnet18-224": steps // 20}.get(name, steps)
    times = []
    for _ in range(n + 5):
        t = time.perf_counter()
        opt.zero_grad()
        loss(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t)
    print(name, statistics.median(times[5:]) * 1e3, flush=True)
