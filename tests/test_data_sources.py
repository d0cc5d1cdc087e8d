"""Data sources: each layout built on the fly; ground truth stays aligned through resize + crop."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from fisherattr.data.dataset import Sample
from fisherattr.data.mosaics import MosaicSample, build_mosaics
from fisherattr.data.sources import geometry, load_data, map_boxes, parse_spec
from fisherattr.errors import UsageError
from fisherattr.models import Classifier


def red_rect_image(w=60, h=40, box=(30, 5, 50, 25)):
    a = np.full((h, w, 3), 40, np.uint8)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = (250, 10, 10)
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 255
    return Image.fromarray(a), Image.fromarray(m)


def red_pixels(s: Sample) -> torch.Tensor:
    x = s.image[0]
    return (x[0] > 0.6) & (x[1] < 0.4)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / float((a | b).sum())


@pytest.mark.parametrize("rule", ["shorter-crop", "plain"])
def test_folder_sidecars_stay_aligned(tmp_path, rule):
    im, m = red_rect_image()
    im.save(tmp_path / "a.png")
    m.save(tmp_path / "a.mask.png")
    (tmp_path / "a.boxes.json").write_text(json.dumps({"boxes": [[30, 5, 50, 25]], "label": 2}))
    Image.new("RGB", (20, 20)).save(tmp_path / "b.jpg")
    samples = load_data(f"folder:{tmp_path}", size=16, rule=rule)
    assert [s.name for s in samples] == ["a", "b"]
    s = samples[0]
    assert s.image.shape == (1, 3, 16, 16) and s.mask.shape == (16, 16) and s.label == 2
    assert iou(red_pixels(s), s.mask) > 0.8
    box = Sample("b", s.image, boxes=s.boxes).region()
    assert bool((box | ~s.mask).all())  # the box covers the mask
    assert iou(box, s.mask) > 0.7
    assert samples[1].mask is None and samples[1].boxes == [] and samples[1].region() is None


def test_geometry_and_box_mapping_by_hand():
    # 60x40 -> shorter side 16: 24x16, crop left 4
    assert geometry(60, 40, 16) == (24, 16, 4, 0, 16, 16)
    assert map_boxes([(30, 5, 50, 25)], 60, 40, 16) == [(8, 2, 16, 10)]
    assert map_boxes([(0, 0, 5, 5)], 60, 40, 16) == []  # cropped away


def test_imagenet_layout_with_voc_xml(tmp_path):
    imgs, xmls = tmp_path / "val", tmp_path / "xml"
    imgs.mkdir()
    xmls.mkdir()
    im, m = red_rect_image()
    im.save(imgs / "ILSVRC2012_val_00000001.JPEG", quality=95)
    (xmls / "ILSVRC2012_val_00000001.xml").write_text(
        "<annotation><filename>ILSVRC2012_val_00000001</filename><size><width>60</width><height>40</height>"
        "</size><object><name>n02123045</name><bndbox><xmin>30</xmin><ymin>5</ymin><xmax>50</xmax>"
        "<ymax>25</ymax></bndbox></object></annotation>")
    (s,) = load_data(f"imagenet:{imgs},{xmls}", size=16)
    assert s.label == 281  # tabby cat in the shipped synset list
    assert s.boxes == [(8, 2, 16, 10)]
    assert iou(red_pixels(s), s.region()) > 0.7


def test_fss_layout(tmp_path):
    for cls in ("apple", "zebra"):
        (tmp_path / cls).mkdir()
        for n in (1, 2):
            im, m = red_rect_image()
            im.save(tmp_path / cls / f"{n}.jpg", quality=95)
            m.save(tmp_path / cls / f"{n}.png")
    samples = load_data(f"fss:{tmp_path}", size=16)
    assert [s.name for s in samples] == ["apple-1", "apple-2", "zebra-1", "zebra-2"]
    assert all(iou(red_pixels(s), s.mask) > 0.8 for s in samples)
    assert len(load_data(f"fss:{tmp_path}", size=16, limit=3)) == 3


def test_spec_parser(tmp_path):
    assert parse_spec("samples") == ("samples", None, None)
    assert parse_spec("synthetic") == ("synthetic", None, None)
    assert parse_spec("synthetic:5") == ("synthetic", None, 5)
    assert parse_spec(f"imagenet:{tmp_path},x") == ("imagenet", f"{tmp_path},x", None)
    assert parse_spec(str(tmp_path)) == ("folder", str(tmp_path), None)
    for bad in ("nope", "synthetic:x", "fss:"):
        with pytest.raises(UsageError):
            parse_spec(bad)
    names = [s.name for s in load_data("samples", size=16, limit=2)]
    assert names == ["chelsea", "coffee"]


def test_synthetic_dispatch():
    pytest.importorskip("fisherattr.data.synthetic")
    samples = load_data("synthetic:3", size=32)
    assert len(samples) == 3 and samples[0].mask is not None and samples[0].image.shape == (1, 3, 32, 32)


class ColourNet(nn.Module):
    """Class = dominant colour: red, green, blue, or dark (confident by construction)."""

    def forward(self, x):
        m = x.mean((2, 3))
        return 40 * torch.cat([m, 0.5 - m.mean(1, keepdim=True)], 1)


def test_mosaics_distinct_confident_reproducible():
    model = Classifier(ColourNet(), classes=["r", "g", "b", "k"]).eval()
    cols = {"r": (1, 0, 0), "g": (0, 1, 0), "b": (0, 0, 1), "k": (0, 0, 0), "r2": (0.9, 0, 0)}
    samples = [Sample(n, torch.tensor(c, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 16, 16).clone())
               for n, c in cols.items()]
    ms = build_mosaics(model, samples, n=3, seed=1)
    assert len(ms) == 3 and all(isinstance(m, MosaicSample) for m in ms)
    again = build_mosaics(model, samples, n=3, seed=1)
    assert [m.sources for m in ms] == [m.sources for m in again]
    for m in ms:
        assert sorted(m.cells) == [0, 1, 2, 3] and m.image.shape == (1, 3, 16, 16)
        for k, c in enumerate(m.cells):  # each cell shows its class's colour
            r, q = divmod(k, 2)
            cell = m.image[0, :, r * 8:(r + 1) * 8, q * 8:(q + 1) * 8]
            assert int(model(cell.unsqueeze(0)).argmax()) == c
    assert build_mosaics(model, samples[:3]) == []  # only 3 classes
