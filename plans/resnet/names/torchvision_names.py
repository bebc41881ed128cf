"""Write torchvision's ResNet state_dict names and shapes, one per line.

The `resnet` plan's parameter names and shapes must equal these (a test in
`cargo test` compares them), so that torchvision's weights can start a
federation. Run with a Python that has torchvision:

    python torchvision_names.py

It writes resnet18.txt and resnet34.txt beside itself: `name shape`, the
shape as comma-separated extents (empty for a scalar), in state_dict order.
"""

import pathlib

import torchvision

HERE = pathlib.Path(__file__).parent

for depth in (18, 34):
    model = getattr(torchvision.models, f"resnet{depth}")()
    lines = [
        f"{name} {','.join(str(d) for d in tensor.shape)}"
        for name, tensor in model.state_dict().items()
    ]
    (HERE / f"resnet{depth}.txt").write_text("\n".join(lines) + "\n")
    print(f"resnet{depth}: {len(lines)} tensors")
