"""Paired comparison of two tune_levels.py --rows files, image by image (dev record, round 6).

Usage: python paired.py BASE.jsonl NEW.jsonl
Prints, for each measure, the two means over the images both files hold and the mean
difference (new - base) with its standard error.
"""
import json
import math
import sys

KEYS = ["ehr", "pointing", "held", "p", "level_auc", "sec", "zero"]


def load(path: str) -> dict:
    rows = {}
    for line in open(path):
        r = json.loads(line)
        rows[r["image"]] = r  # the last row for an image wins
    return rows


def main() -> None:
    base, new = load(sys.argv[1]), load(sys.argv[2])
    common = sorted(set(base) & set(new))
    print(f"{len(common)} images in both")
    for k in KEYS:
        d = [new[i][k] - base[i][k] for i in common]
        m = sum(d) / len(d)
        se = math.sqrt(sum((x - m) ** 2 for x in d) / max(len(d) - 1, 1) / len(d))
        mb = sum(base[i][k] for i in common) / len(common)
        mn = sum(new[i][k] for i in common) / len(common)
        print(f"{k:10s} {mb:8.3f} -> {mn:8.3f}   diff {m:+.3f} +- {se:.3f}")


if __name__ == "__main__":
    main()
