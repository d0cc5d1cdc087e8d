"""MNIM and DifAUC of DiffIB, FDA, IG and Saliency on the sample photos, with wall times vs Captum IG-200.

For each photo: Captum Integrated Gradients with 200 steps (black baseline,
internal batch 16; the reference of ``_common.py``) gives both the IG map and the
reference wall time; DiffIB (per-image, its defaults: the shipped noise-map
denoiser, pixelwise eq. 14), FDA (its defaults) and Saliency run and are timed.
Every map is scored by MNIM (DiffIB paper: features ranked, Gaussian noise start
in normalised space, threshold 0.9; IG and Saliency ranked by |A|; also
``mnim_rel`` with threshold 0.9 x the clean probability, because most sample
photos are classified with p < 0.9, where MNIM is 1.0 for every map) and by
insertion/deletion under the ``inputiba`` preset (DifAUC). Finally a DiffIB
explainer is trained in amortised mode on the denoiser's training photos
(never the explained ones) and its time per image (one adapter pass + eq. 14)
is measured on the same photos. JSON is written after every image.

Run:  python benchmarks/bench_diffib.py --images chelsea,coffee --out outputs/bench_diffib.json
      (``--methods diffib,ig`` for a subset; ``--amortised-steps 0`` skips the amortised part)
"""
from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import default_setup, ig200, timed  # noqa: E402

import fisherattr  # noqa: E402
from fisherattr.metrics.insertion_deletion import insertion_deletion  # noqa: E402
from fisherattr.metrics.mnim import mnim  # noqa: E402

METHODS = ("diffib", "fda", "saliency")


def amortised_training_images(n: int = 8) -> torch.Tensor:
    """224x224 centre crops of the noise-map denoiser's training photos (disjoint from the samples)."""
    from fisherattr.scores.noise_map import load_training_photos

    photos = load_training_photos("samples", max_side=224)
    out = []
    for p in photos[:n]:
        x = ((p + 1) / 2).unsqueeze(0)
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True,
                                            align_corners=False)
        out.append(x.clamp(0, 1))
    return torch.cat(out)


def score(model, x, a, target):
    m = mnim(model, x, a, target=target)
    with torch.no_grad():
        p_clean = float(model(x).softmax(1)[0, target])
    m_rel = mnim(model, x, a, target=target, threshold=0.9 * p_clean)
    ins = insertion_deletion(model, x, a, target=target, preset="inputiba")
    return {"mnim": round(float(m.values[0]), 4), "mnim_rel": round(float(m_rel.values[0]), 4),
            "insertion": round(float(ins.insertion[0]), 4),
            "deletion": round(float(ins.deletion[0]), 4), "difauc": round(float(ins.difauc[0]), 4)}


def main(argv=None) -> int:
    args, model, images = default_setup(argv, out={"default": "outputs/bench_diffib.json"},
                                        methods={"default": ",".join(METHODS)},
                                        **{"amortised-steps": {"type": int, "default": 40}})
    methods = [m for m in args.methods.split(",") if m]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dib = fisherattr.get_method("diffib", model)
    report = {"model": args.model, "threads": args.threads, "preset": "inputiba", "mnim": "threshold 0.9, gaussian",
              "diffib": dib.options() | {"denoiser": type(dib.denoiser).__name__}, "images": {}}
    rows_all = {}
    for name, x in images.items():
        with torch.no_grad():
            target = int(model(x).argmax())
        t_ig, a_ig = ig200(model, x, target)
        rows = {"ig-200": (t_ig, a_ig.abs())}
        for m in methods:
            method = dib if m == "diffib" else fisherattr.get_method(m, model)
            secs, a = timed(lambda: method.attribute(x, target=target))
            rows[m] = (secs, a.abs() if m == "saliency" else a)
        res = {}
        for m, (secs, a) in rows.items():
            res[m] = {"seconds": round(secs, 2), "time_vs_ig200": round(secs / t_ig, 3), **score(model, x, a, target)}
            print(f"{name:12s} {m:9s} time {secs:7.1f} s ({secs / t_ig:5.2f} x IG-200)  MNIM {res[m]['mnim']:.4f}  rel {res[m]['mnim_rel']:.4f}  "
                  f"ins {res[m]['insertion']:.3f}  del {res[m]['deletion']:.3f}  DifAUC {res[m]['difauc']:.3f}",
                  flush=True)
        report["images"][name] = {"target": target, "results": res}
        rows_all[name] = (x, target)
        report["mean_over_images"] = {
            m: {k: round(statistics.mean(img["results"][m][k] for img in report["images"].values()), 4)
                for k in ("mnim", "mnim_rel", "difauc", "insertion", "deletion", "time_vs_ig200")} for m in rows}
        report["n_images"] = len(report["images"])
        out.write_text(json.dumps(report, indent=2))
    if args.amortised_steps > 0:
        train = amortised_training_images()
        folder = out.parent / "bench_diffib_explainer"
        t_train, _ = timed(lambda: dib.train_explainer(train, folder, steps=args.amortised_steps, batch=2,
                                                       progress=False))
        am = fisherattr.get_method("diffib", model, mode="amortised", explainer=str(folder))
        per = {}
        for name, (x, target) in rows_all.items():
            secs, a = timed(lambda: am.attribute(x, target=target))
            per[name] = {"seconds": round(secs, 2), **score(model, x, a, target)}
            print(f"{name:12s} diffib-amortised time {secs:6.1f} s  MNIM {per[name]['mnim']:.4f}  rel {per[name]['mnim_rel']:.4f}  "
                  f"DifAUC {per[name]['difauc']:.3f}", flush=True)
        report["amortised"] = {"train_images": int(train.shape[0]), "train_steps": args.amortised_steps,
                               "train_seconds": round(t_train, 1),
                               "seconds_per_image": round(statistics.mean(v["seconds"] for v in per.values()), 2),
                               "images": per}
        out.write_text(json.dumps(report, indent=2))
    print("\nmean over", report.get("n_images", 0), "images:")
    for m, s in report.get("mean_over_images", {}).items():
        print(f"  {m:9s} MNIM {s['mnim']:.4f}  MNIM-rel {s['mnim_rel']:.4f}  DifAUC {s['difauc']:.3f}  time {s['time_vs_ig200']:.2f} x IG-200")
    if "amortised" in report:
        print(f"  amortised DiffIB: {report['amortised']['seconds_per_image']:.2f} s/image "
              f"(training {report['amortised']['train_seconds']:.0f} s once)")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
