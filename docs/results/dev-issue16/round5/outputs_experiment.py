"""Dev experiment: which output map of FDA/DiffIB's levels ranks pixels best for DifAUC (dev photos only)."""
import json, sys, time, os
from pathlib import Path
import torch, torch.nn.functional as F
import fisherattr
from fisherattr.commands.train_explainer import dev_photo
from fisherattr.metrics.insertion_deletion import insertion_deletion

OUT = Path("/work/dev5/out"); OUT.mkdir(exist_ok=True)
PHOTOS = ["camera", "coins", "clock", "china", "flower", "page", "minduka", "horse"]
method_name = sys.argv[1]
opts = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
tag = sys.argv[3] if len(sys.argv) > 3 else method_name
torch.set_num_threads(1)
model = fisherattr.load_classifier()

def photo(n):
    if n in ("china", "flower"):
        return fisherattr.load_image(n)
    if n == "minduka":
        import matplotlib.cbook as c
        return fisherattr.load_image(c.get_sample_data("Minduka_Present_Blue_Pack.png", asfileobj=False))
    return dev_photo(n, 224)

def blur(a, s):
    k = int(3 * s) * 2 + 1
    g = torch.exp(-(torch.arange(k) - k // 2) ** 2 / (2 * s * s)); g = g / g.sum()
    a = F.conv2d(a.sum(1, keepdim=True), g.view(1, 1, 1, k), padding=(0, k // 2))
    return F.conv2d(a, g.view(1, 1, k, 1), padding=(k // 2, 0))

for n in PHOTOS:
    f = OUT / f"{tag}-{n}.pt"
    x = photo(n)
    with torch.no_grad():
        target = int(model(x).argmax(1))
    if not f.exists():
        m = fisherattr.get_method(method_name, model, **opts)
        t0 = time.perf_counter(); a = m.attribute(x, target); sec = time.perf_counter() - t0
        d = {"x": x, "a": a, "levels": getattr(m, "last_levels", None), "sec": sec, "target": target}
        if d["levels"] is not None:
            s = m.make_strategy(x); gens = m.generators(1); st = s.prepare(x, gens)
            clean = torch.full_like(d["levels"], float(s.levels(torch.tensor(-1e9))))
            with torch.no_grad():
                d["a_full"] = s.information(clean, st, x * 2 - 1, gens)
        torch.save(d, f)
    d = torch.load(f, weights_only=True)
    a = d["a"]; variants = {"info": a}
    if d.get("levels") is not None:
        L = d["levels"]
        lev = (1 - L) if method_name == "fda" else L
        variants["level"] = lev
        variants["frac"] = a / d["a_full"].clamp_min(1e-12)
        variants["level+info"] = lev.sum(1, keepdim=True) + 1e-3 * a.sum(1, keepdim=True) / a.sum(1).max()
        variants["blur1"] = blur(a, 1.0)
        variants["blur3"] = blur(a, 3.0)
        variants["sqrt"] = a.clamp_min(0).sqrt()
    else:
        variants["blur3"] = blur(a, 3.0)
    for k, v in variants.items():
        r = insertion_deletion(model, x, v, target=target)
        row = dict(tag=tag, photo=n, variant=k, difauc=float(r.difauc[0]), ins=float(r.insertion[0]),
                   dele=float(r.deletion[0]), sec=d["sec"])
        print(json.dumps(row), flush=True)
        with open(OUT / "rows.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
