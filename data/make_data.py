"""Regenerate the CSV files in this folder from a scikit-learn wheel.

Usage: pip download --no-deps -d /tmp/skl scikit-learn
       python3 data/make_data.py /tmp/skl/scikit_learn-*.whl

Reads the copies of the UCI datasets that scikit-learn bundles and writes them
with a header line, snake_case feature names and an integer target column.
"""

import csv
import gzip
import io
import re
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def feature_names(base_py: str) -> list[str]:
    block = base_py.split('"mean radius"', 1)[1].split("]", 1)[0]
    names = ["mean radius"] + re.findall(r'"([^"]+)"', block)
    return [n.replace(" ", "_") for n in names]


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as z:
        base_py = z.read("sklearn/datasets/_base.py").decode()
        cancer = z.read("sklearn/datasets/data/breast_cancer.csv").decode().splitlines()
        digits = gzip.decompress(z.read("sklearn/datasets/data/digits.csv.gz")).decode().splitlines()

    names = feature_names(base_py)
    assert len(names) == 30, names
    with open(HERE / "breast_cancer.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(names + ["diagnosis"])
        for row in csv.reader(io.StringIO("\n".join(cancer[1:]))):
            w.writerow(row[:30] + [int(row[30])])

    with open(HERE / "digits.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([f"pixel_{r}_{c}" for r in range(8) for c in range(8)] + ["digit"])
        for row in csv.reader(io.StringIO("\n".join(digits))):
            w.writerow([int(float(v)) for v in row])


if __name__ == "__main__":
    main(sys.argv[1])
