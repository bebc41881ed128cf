"""Cut data/nuclei-masks/ out of the nucleus image and its expert annotation
that the stardist wheel on PyPI ships (stardist/data/images/img2d.tif and
mask2d.tif, the same files as data/nuclei/): segmentation examples, each a
32x32 tile of the image with its mask.

A mask is an 8-bit grayscale PNG of the tile's size, 255 where the annotation
marks a nucleus (any instance) and 0 elsewhere: two classes per pixel,
background and nucleus. Tiles lying wholly left of x = 384 go to train.csv (a
16-pixel grid, so neighbours overlap by half); tiles wholly right of it go to
test.csv (a 32-pixel grid, no overlap): as for data/nuclei/, the held-out
tiles come from another part of the image. Each manifest has an `image` and a
`mask` column, paths relative to it.

Run once, from the repository root, in a scratch virtual environment:

    python3 -m venv /tmp/nuclei && /tmp/nuclei/bin/pip install stardist==0.9.2 \
        tifffile numpy pillow --no-deps
    /tmp/nuclei/bin/python data/make_nuclei_masks.py \
        /tmp/nuclei/lib/python3.11/site-packages/stardist/data/images
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from make_nuclei_patches import read_image_and_mask

TILE = 32
SPLIT_X = 384
STRIDE = {"train": 16, "test": 32}


def main(images: Path, out: Path) -> None:
    image, mask = read_image_and_mask(images)
    nucleus = np.where(mask > 0, 255, 0).astype(np.uint8)
    for folder in ("images", "masks"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for part, stride in STRIDE.items():
        lefts = range(0, SPLIT_X - TILE + 1, stride) if part == "train" else range(SPLIT_X, 512 - TILE + 1, stride)
        rows = ["image,mask"]
        for top in range(0, 512 - TILE + 1, stride):
            for left in lefts:
                name = f"{part}_y{top:03d}_x{left:03d}.png"
                window = (slice(top, top + TILE), slice(left, left + TILE))
                Image.fromarray(image[window], mode="L").save(out / "images" / name, optimize=True)
                Image.fromarray(nucleus[window], mode="L").save(out / "masks" / name, optimize=True)
                rows.append(f"images/{name},masks/{name}")
        (out / f"{part}.csv").write_text("\n".join(rows) + "\n")
        share = np.mean([nucleus[top : top + TILE, left : left + TILE].mean() / 255
                         for top in range(0, 512 - TILE + 1, stride) for left in lefts])
        print(f"{part}: {len(rows) - 1} tiles, {share:.1%} nucleus pixels")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parent / "nuclei-masks")
