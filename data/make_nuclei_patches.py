"""Cut data/nuclei/ out of the nucleus image and its expert annotation that
the stardist wheel on PyPI ships (stardist/data/images/img2d.tif and
mask2d.tif: a 512x512 fluorescence image of stained nuclei from the 2018 Data
Science Bowl, and its instance masks).

Each example is a 16x16 patch of the image on a 4-pixel grid, labelled
`nucleus` when the annotation marks its centre pixel as part of a nucleus and
`background` otherwise. Patches whose centre lies left of x = 384 go to
`train/`, the others to `test/`: patches overlap their neighbours, so a held-out
set must come from another part of the image. Each part is balanced by keeping
as many patches of each class (a seeded choice), then written as 8-bit
grayscale PNG files (the image's values are 0..235, kept as they are).

Run once, from the repository root, in a scratch virtual environment:

    python3 -m venv /tmp/nuclei && /tmp/nuclei/bin/pip install stardist==0.9.2 \
        tifffile numpy pillow --no-deps
    /tmp/nuclei/bin/python data/make_nuclei_patches.py \
        /tmp/nuclei/lib/python3.11/site-packages/stardist/data/images

(`pip download stardist==0.9.2 --no-deps` and unzipping the wheel gives the
same two files.)
"""

import sys
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

PATCH = 16
STRIDE = 4
SPLIT_X = 384
PER_CLASS = {"train": 800, "test": 250}


def read_image_and_mask(images: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 512x512 image as 8-bit values and its instance mask (0: background)."""
    image = tifffile.imread(images / "img2d.tif")
    mask = tifffile.imread(images / "mask2d.tif")
    assert image.shape == mask.shape == (512, 512), image.shape
    assert image.max() <= 255, "the image's values fit 8 bits"
    return image.astype(np.uint8), mask


def main(images: Path, out: Path) -> None:
    image, mask = read_image_and_mask(images)
    parts = {"train": {"background": [], "nucleus": []}, "test": {"background": [], "nucleus": []}}
    for top in range(0, image.shape[0] - PATCH + 1, STRIDE):
        for left in range(0, image.shape[1] - PATCH + 1, STRIDE):
            cy, cx = top + PATCH // 2, left + PATCH // 2
            label = "nucleus" if mask[cy, cx] > 0 else "background"
            part = "train" if cx < SPLIT_X else "test"
            parts[part][label].append((top, left))
    rng = np.random.RandomState(0)
    for part, classes in parts.items():
        for label, corners in classes.items():
            keep = rng.choice(len(corners), PER_CLASS[part], replace=False)
            folder = out / part / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in sorted(keep):
                top, left = corners[i]
                patch = image[top : top + PATCH, left : left + PATCH]
                Image.fromarray(patch, mode="L").save(folder / f"y{top:03d}_x{left:03d}.png", optimize=True)
            print(f"{part}/{label}: kept {PER_CLASS[part]} of {len(corners)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parent / "nuclei")
