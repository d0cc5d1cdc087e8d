"""Dev experiment (round 6): reference methods and FDA/DiffIB variants on the 8 dev photos of round 5.

Usage: python references.py METHOD [JSON-OPTIONS] [TAG]
Writes one JSON row per photo to rows.jsonl (DifAUC, insertion, deletion, seconds) beside this script.
Dev photos only; none is one of the six reported samples.
"""
import json
import sys
import time
from pathlib import Path

import torch

import fisherattr
from fisherattr.commands.train_explainer import dev_photo
from fisherattr.metrics.insertion_deletion import insertion_deletion

HERE = Path(__file__).resolve().parent
PHOTOS = ["camera", "coins", "clock", "china", "flower", "page", "minduka", "horse"]


def photo(name: str) -> torch.Tensor:
    if name in ("china", "flower"):
        return fisherattr.load_image(name)
    if name == "minduka":
        import matplotlib.cbook as cbook
        return fisherattr.load_image(cbook.get_sample_data("Minduka_Present_Blue_Pack.png", asfileobj=False))
    return dev_photo(name, 224)


def main() -> None:
    name = sys.argv[1]
    opts = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    tag = sys.argv[3] if len(sys.argv) > 3 else name
    torch.set_num_threads(1)
    model = fisherattr.load_classifier()
    method = fisherattr.get_method(name, model, **opts)
    for n in PHOTOS:
        x = photo(n)
        with torch.no_grad():
            target = int(model(x).argmax(1))
        t0 = time.perf_counter()
        a = method.attribute(x, target)
        sec = time.perf_counter() - t0
        r = insertion_deletion(model, x, a, target=target)
        row = dict(tag=tag, method=name, options=opts, photo=n, difauc=float(r.difauc[0]),
                   ins=float(r.insertion[0]), dele=float(r.deletion[0]), sec=sec)
        print(json.dumps(row), flush=True)
        with open(HERE / "rows.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        torch.save(dict(x=x, a=a, target=target, levels=getattr(method, "last_levels", None)),
                   f"/tmp/r6-{tag}-{n}.pt")


if __name__ == "__main__":
    main()
