"""SIC / AIC agree with PAIR ``saliency`` 0.2.1 ``compute_pic_metric`` (issue 17).

Same 8-bit image, same map, same random mask, same thresholds; the synthetic
64 px CNN. Target: per-image AUC within 1e-3; the test also requires the curves equal within 1e-6.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fisherattr.metrics.common import pixel_map
from fisherattr.metrics.pic import THRESHOLDS, pic, random_pixel_mask
from fisherattr.methods.paths import IG

from reference_support import one_thread  # noqa: F401  (autouse)
from reference_support import numpy_1_names, synthetic_images, synthetic_model

pair_pic = pytest.importorskip("saliency.metrics.pic", reason="needs the 'reference' extra (saliency==0.2.1)")


def _pair_pred(model, target: int, kind: str):
    def pred(batch_u8: np.ndarray):
        x = torch.from_numpy(batch_u8.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        with torch.no_grad():
            logits = model(x)
        if kind == "sic":
            return logits.softmax(1)[:, target].double().numpy().tolist()
        return (logits.argmax(1) == target).double().numpy().tolist()
    return pred


def test_sic_and_aic_match_pair_compute_pic_metric():
    model = synthetic_model()
    checked = {"sic": 0, "aic": 0}
    thresholds = list(THRESHOLDS[::2])     # 7 of the 13 (both sides get the same list), to keep the test fast
    for i, x in enumerate(synthetic_images(4)):
        target = int(model(x).argmax(1))
        maps = IG(model, steps=16).attribute(x, target=target)
        ours = pic(model, x, maps, target=target, seed=100 + i, min_confidence=0.5, thresholds=thresholds)
        img = np.clip(x[0].permute(1, 2, 0).numpy() * 255 + 0.5, 0, 255).astype(np.uint8)
        smap = pixel_map(maps.float(), "sum")[0].double().numpy()
        rmask = random_pixel_mask(64, 64, 0.01, seed=100 + i)
        for kind, skip, curves in (("sic", ours.sic_skip, ours.sic_curves), ("aic", ours.aic_skip, ours.aic_curves)):
            with numpy_1_names():
                try:
                    ref = pair_pic.compute_pic_metric(img, smap, rmask, _pair_pred(model, target, kind),
                                                      thresholds, min_pred_value=0.5)
                except pair_pic.ComputePicMetricError:
                    ref = None
            # both skip the same images (PAIR raises, we record a reason)
            assert (ref is None) == (skip[0] is not None), (i, kind, skip[0])
            if ref is None:
                continue
            ours_auc = float(np.trapezoid(curves[0], np.linspace(0, 1, curves.shape[1])))
            assert abs(ours_auc - float(ref.auc)) < 1e-3, (i, kind, ours_auc, float(ref.auc))
            assert np.allclose(curves[0], ref.curve_y, atol=1e-6)
            checked[kind] += 1
    assert checked["sic"] >= 2 and checked["aic"] >= 1, checked
