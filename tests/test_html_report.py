"""report.html (fisherattr.bench.html_report): content read back from real explain/evaluate folders, and the
page as rendered by headless Chromium (skipped where Debian's ``chromium`` is not installed)."""
from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fisherattr import viz
from fisherattr.bench.html_report import build_report, mask_path, write_report
from fisherattr.cli import main

METHODS = ["saliency", "gradcam"]


class Parsed(HTMLParser):
    """Rows of the metrics table (cell texts and data-v values), every <img> src, and gallery rows."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows, self.srcs, self.gallery, self.headers = [], [], [], []
        self._in_body = self._in_head = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "metrics":
            self._table = True
        if tag == "tbody":
            self._in_body = True
        if tag == "thead":
            self._in_head = True
        if tag == "tr" and self._in_body and getattr(self, "_table", False):
            self.rows.append([])
        if tag == "td" and self._in_body and getattr(self, "_table", False):
            self.rows[-1].append(a.get("data-v"))
        if tag == "th" and self._in_head and getattr(self, "_table", False):
            self.headers.append(a.get("data-key"))
        if tag == "img":
            self.srcs.append(a["src"])
        if tag == "div" and a.get("class") == "gal":
            self.gallery.append(a["data-image"])

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        if tag == "thead":
            self._in_head = False
        if tag == "table":
            self._table = False


def decode(uri: str) -> np.ndarray:
    head, data = uri.split(",", 1)
    assert head in ("data:image/jpeg;base64", "data:image/png;base64")
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def explain_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("explain")
    assert main(["explain", "chelsea", "coffee", "--model", "synthetic", "-m", ",".join(METHODS),
                 "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def evaluate_dir(tmp_path_factory) -> Path:
    from fisherattr.bench.runner import EvalConfig, Evaluation

    out = tmp_path_factory.mktemp("evaluate")
    cfg = EvalConfig(methods=METHODS, out=str(out), data="synthetic:3", metrics=["insdel", "ehr", "randomisation"],
                     progress=False, mosaics=0, metric_options={"randomisation": {"steps": 2}})
    assert Evaluation(cfg).run() == 0
    write_report(out)
    return out


def assert_self_contained(text: str) -> None:
    assert not re.search(r"https?://|<link|@import|src=[\"'](?!data:)", text), "the page must not fetch anything"


def test_explain_report_matches_the_summary_and_the_maps(explain_dir):
    text = (explain_dir / "report.html").read_text(encoding="utf-8")   # written by explain itself
    assert_self_contained(text)
    p = Parsed(text)
    summary = json.loads((explain_dir / "summary.json").read_text())
    assert len(p.rows) == len(METHODS) and p.gallery == ["chelsea", "coffee"]
    assert len(p.srcs) == 2 * (1 + len(METHODS))
    col = p.headers.index("difauc")
    for row in p.rows:                                 # [rank, method, cells...]: the mean over the two images
        dif = [summary["images"][im]["methods"][row[1]]["difauc"] for im in ("chelsea", "coffee")]
        assert float(row[col]) == pytest.approx(np.mean(dif))
    ranked = [float(r[col]) for r in p.rows]
    assert ranked == sorted(ranked, reverse=True)       # best DifAUC first
    # the saliency overlay of chelsea is the documented normalisation of the saved map (up to JPEG)
    with Image.open(explain_dir / "chelsea" / "input.png") as im:
        img = np.asarray(im.convert("RGB"))
    shown = decode(p.srcs[1 + METHODS.index("gradcam")]).astype(int)
    a = np.load(explain_dir / "chelsea" / "gradcam.npy")
    err = {k: np.abs(shown - viz.overlay(img, a, **kw)).mean() for k, kw in {"own": {}, "p50": {"percentile": 50},
                                                                           "all": {"sign": "all"}}.items()}
    assert err["own"] < 4 and err["own"] < min(err["p50"], err["all"]) / 2, err


def test_evaluate_report_has_table_outline_curves_and_settings(evaluate_dir):
    text = (evaluate_dir / "report.html").read_text(encoding="utf-8")
    assert_self_contained(text)
    p = Parsed(text)
    res = json.loads((evaluate_dir / "results.json").read_text())
    assert len(p.rows) == 2 and len(p.gallery) == 3
    ehr = p.headers.index("ehr")
    for row in p.rows:
        assert float(row[ehr]) == pytest.approx(res["summary"][row[1]]["ehr"]["value"])
    assert f"{res['summary']['gradcam']['ehr']['sem']:.3f}" in text            # mean ± SE
    assert "Insertion / deletion curves" in text and "cascading parameter randomisation" in text
    assert len(p.srcs) == 3 * (1 + 2) + 2                                       # gallery + two figures
    # the ground-truth outline: white on the mask's border pixels, not inside
    name = p.gallery[0]
    with Image.open(mask_path(evaluate_dir, name)) as im:
        mask = np.asarray(im) > 127
    inner = mask.copy()
    inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    border = mask & ~inner
    shown = decode(p.srcs[0]).astype(int)
    assert border.sum() > 10 and (shown[border] > 225).all(axis=1).mean() > 0.9
    assert res["versions"]["torch"] in text and '"preset": "inputiba"' in html.unescape(text)


def test_report_command_html_and_partial_runs(explain_dir, evaluate_dir, tmp_path, capsys):
    assert main(["report", str(explain_dir), "--html", "--max-images", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(explain_dir / "report.html")
    assert Parsed((explain_dir / "report.html").read_text()).gallery == ["chelsea"]
    assert "Showing 1 of 2 images" in (explain_dir / "report.html").read_text()
    # an unfinished evaluation (no results.json yet) is reported from its records
    part = tmp_path / "part"
    shutil.copytree(evaluate_dir, part)
    (part / "results.json").unlink()
    assert "Partial: the run has not finished" in build_report(part)
    assert main(["report", str(tmp_path / "nothing"), "--html"]) == 2
    assert "neither an explain folder" in capsys.readouterr().err


# ------------------------------------------------------------------ browser
CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found: install Debian's "
                                    "`chromium` package (apt-get install -y chromium; .ci/run does) to run this test")


def chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", *args, url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@needs_chromium
def test_rendered_in_chromium_images_load_and_the_table_sorts(explain_dir, evaluate_dir, tmp_path):
    for folder, n_img in ((explain_dir, 2 * (1 + len(METHODS))), (evaluate_dir, 3 * (1 + len(METHODS)) + 2)):
        write_report(folder)
        url = (folder / "report.html").resolve().as_uri()
        dom = chromium(tmp_path, url, "--dump-dom").stdout
        body = re.search(r"<body([^>]*)>", dom).group(1)
        assert 'data-ready="1"' in body, body                                   # the script ran after load
        loaded = int(re.search(r'data-images-loaded="(\d+)"', body).group(1))
        total = int(re.search(r'data-images-total="(\d+)"', body).group(1))
        assert loaded == total == n_img                                        # every image decoded
        p = Parsed(dom)
        assert len(p.rows) == 2 and [r[0] for r in p.rows] == [None, None]
    # sorting by the URL fragment: DifAUC ascending (the reverse of best first), ranks renumbered
    dom = chromium(tmp_path, (evaluate_dir / "report.html").resolve().as_uri() + "#sort=-difauc", "--dump-dom").stdout
    p = Parsed(dom)
    col = p.headers.index("difauc")
    vals = [float(r[col]) for r in p.rows]
    assert vals == sorted(vals) and vals[0] < vals[1]
    assert re.findall(r"<tr><td>(\d+)</td>", dom)[:2] == ["1", "2"]
    assert 'data-sort-key="difauc" data-sort-desc="0"' in dom


@needs_chromium
def test_screenshot_of_the_report_is_not_blank(evaluate_dir, tmp_path):
    shot = tmp_path / "shot.png"
    chromium(tmp_path, (evaluate_dir / "report.html").resolve().as_uri(), f"--screenshot={shot}",
             "--window-size=1200,1000")
    with Image.open(shot) as im:
        a = np.asarray(im.convert("RGB")).astype(float)
    assert a.shape[:2] == (1000, 1200)
    assert a.std() > 30                                                   # not one flat colour
    assert (a.min(axis=2) < 200).mean() > 0.1                             # >10% of the page is not white
    saturation = a.max(axis=2) - a.min(axis=2)
    assert (saturation > 100).mean() > 0.02                               # the coloured maps are on screen
