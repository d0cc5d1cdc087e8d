"""The self-contained HTML page of a report: inline CSS and JavaScript, images as data URIs, nothing fetched.

:func:`page` turns a :class:`Page` (filled by :mod:`fisherattr.bench.html_report`) into
one HTML string. The metrics table sorts when a header is clicked (or from the URL
fragment ``#sort=COLUMN``, ``#sort=-COLUMN`` for the reverse order); when the page has
loaded, the script writes ``data-images-loaded`` / ``data-images-total`` (images that
decoded) and ``data-ready`` on ``<body>``, which the browser test reads.
"""
from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np


@dataclass
class Column:
    key: str
    label: str
    higher_is_better: bool


@dataclass
class Panel:
    """One method's map of one image: ``overlay`` uint8 ``[H,W,3]`` (None: failed, ``note`` says why)."""

    method: str
    overlay: Optional[np.ndarray] = None
    vmin: float = 0.0
    vmax: float = 1.0
    cmap_css: str = ""
    score: str = ""
    note: str = ""


@dataclass
class GalleryRow:
    name: str
    image: np.ndarray
    caption: List[str]
    panels: List[Panel]


@dataclass
class Page:
    title: str
    subtitle: str
    columns: List[Column]
    rows: Dict[str, Dict[str, Dict[str, Any]]]  # method -> column key -> {"mean", "sem", "n"}
    sort_key: str
    gallery: List[GalleryRow] = field(default_factory=list)
    figures: List[tuple] = field(default_factory=list)  # (title, PNG bytes)
    settings: Dict[str, Any] = field(default_factory=dict)
    versions: Dict[str, str] = field(default_factory=dict)
    wall: List[tuple] = field(default_factory=list)  # (method, attribution s/image, metrics s/image)
    notes: List[str] = field(default_factory=list)
    failures: List[str] = field(default_factory=list)


def data_uri(image: np.ndarray, fmt: str = "JPEG") -> str:
    """A uint8 ``[H,W,3]`` array as a ``data:image/...;base64`` URI (JPEG quality 90, or PNG)."""
    from PIL import Image

    buf = io.BytesIO()
    opts = {"quality": 90, "subsampling": 0} if fmt == "JPEG" else {}  # 4:4:4 keeps thin outlines sharp
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format=fmt, **opts)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def png_uri(png: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}"


def cmap_css(cmap: str, stops: int = 11) -> str:
    """A CSS ``linear-gradient`` (bottom = 0, top = 1) sampling matplotlib colour map ``cmap``."""
    from ..viz import colorize

    rgb = colorize(np.linspace(0.0, 1.0, stops)[None, :], cmap)[0]
    return "linear-gradient(to top, " + ", ".join(f"rgb({r},{g},{b})" for r, g, b in rgb) + ")"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.sub{color:#555;margin-bottom:12px} .note{color:#8a4b00}
table{border-collapse:collapse;font-size:14px} th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}
.scroll{overflow-x:auto}
th{background:#f2f2f2;cursor:pointer;user-select:none} td.m,th.m{text-align:left} .n{color:#888;font-size:11px}
th.sorted{background:#dde8f7} .gal{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0 18px}
figure{margin:0;width:292px} figure.input{width:232px} figure img{width:224px;height:224px;image-rendering:pixelated;display:block}
.frame{display:flex;align-items:stretch} .cb{width:14px;flex:0 0 14px;margin-left:4px;border:1px solid #999}
.cbl{display:flex;flex-direction:column;justify-content:space-between;font-size:10px;margin-left:3px;color:#444}
figcaption{font-size:12px;margin-top:3px} .score{font-weight:600} .fail{width:224px;height:224px;
background:#f6f6f6;display:flex;align-items:center;justify-content:center;color:#a00;font-size:12px;text-align:center}
.figs img{max-width:100%;border:1px solid #eee;margin:6px 0} pre{background:#f7f7f7;padding:8px;font-size:12px;overflow:auto}
"""

_JS = """
function sortBy(key, desc){
  const t=document.getElementById('metrics'); if(!t) return;
  const ths=[...t.tHead.rows[0].cells]; const i=ths.findIndex(h=>h.dataset.key===key); if(i<0) return;
  const rows=[...t.tBodies[0].rows];
  rows.sort((a,b)=>{const x=a.cells[i].dataset.v, y=b.cells[i].dataset.v;
    if(x===''&&y==='') return 0; if(x==='') return 1; if(y==='') return -1;
    if(ths[i].dataset.key==='method') return desc? y.localeCompare(x): x.localeCompare(y);
    return desc? parseFloat(y)-parseFloat(x): parseFloat(x)-parseFloat(y);});
  rows.forEach((r,k)=>{r.cells[0].textContent=k+1; t.tBodies[0].appendChild(r);});
  ths.forEach(h=>h.classList.remove('sorted')); ths[i].classList.add('sorted');
  t.dataset.sortKey=key; t.dataset.sortDesc=desc?'1':'0';
}
document.addEventListener('DOMContentLoaded',()=>{
  const t=document.getElementById('metrics'); if(!t) return;
  [...t.tHead.rows[0].cells].forEach(h=>{ if(!h.dataset.key) return; h.addEventListener('click',()=>{
    const same=t.dataset.sortKey===h.dataset.key; const best=h.dataset.higher!=='0';
    sortBy(h.dataset.key, same? t.dataset.sortDesc!=='1' : best);});});
  const m=/#sort=(-?)([\\w.+-]+)/.exec(location.hash);
  if(m){const h=[...t.tHead.rows[0].cells].find(c=>c.dataset.key===m[2]);
    if(h){const best=h.dataset.higher!=='0'; sortBy(m[2], m[1]==='-'? !best: best);}}
  else sortBy(t.dataset.initial, t.dataset.initialDesc==='1');
});
window.addEventListener('load',()=>{
  const imgs=[...document.images];
  document.body.dataset.imagesTotal=imgs.length;
  document.body.dataset.imagesLoaded=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;
  document.body.dataset.ready='1';
});
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _cell(s: Optional[Dict[str, Any]], n_total: int) -> str:
    if not s or s.get("mean") is None:
        return '<td data-v="">-</td>'
    txt = f"{s['mean']:.3f}" + (f" ± {s['sem']:.3f}" if s.get("sem") is not None else "")
    n = s.get("n")
    extra = f' <span class="n">n={n}</span>' if n is not None and n != n_total else ""
    return f'<td data-v="{s["mean"]!r}">{_e(txt)}{extra}</td>'


def _table(p: Page) -> str:
    if not p.rows:
        return "<p>No finished results to rank.</p>"
    col = next((c for c in p.columns if c.key == p.sort_key), p.columns[0] if p.columns else None)
    n_total = max((s.get("n") or 0 for r in p.rows.values() for s in r.values()), default=0)
    head = ['<th data-key="">#</th><th class="m" data-key="method" data-higher="0">method</th>']
    head += [f'<th data-key="{_e(c.key)}" data-higher="{int(c.higher_is_better)}" '
             f'title="{"higher" if c.higher_is_better else "lower"} is better">'
             f'{_e(c.label)} {"↑" if c.higher_is_better else "↓"}</th>' for c in p.columns]
    def rank(m: str) -> tuple:  # best first by the sort column, methods without a value last
        v = p.rows[m].get(col.key, {}).get("mean") if col else None
        return (v is None, 0.0 if v is None else (-v if col.higher_is_better else v))

    body = []
    for k, m in enumerate(sorted(p.rows, key=rank)):
        cells = p.rows[m]
        tds = "".join(_cell(cells.get(c.key), n_total) for c in p.columns)
        body.append(f'<tr><td>{k + 1}</td><td class="m" data-v="{_e(m)}">{_e(m)}</td>{tds}</tr>')
    init = f'data-initial="{_e(col.key)}" data-initial-desc="{int(col.higher_is_better)}"' if col else ""
    return (f'<div class="scroll"><table id="metrics" {init}><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>'
            '<p class="sub">Cells: mean ± standard error over images (n = images with a value, shown when some '
            'were skipped). Arrows: which way is better. Click a header to sort.</p>')


def _panel(pn: Panel) -> str:
    if pn.overlay is None:
        return (f'<figure class="panel"><div class="fail">{_e(pn.note or "failed")}</div>'
                f'<figcaption><b>{_e(pn.method)}</b></figcaption></figure>')
    return (f'<figure class="panel"><div class="frame"><img alt="{_e(pn.method)}" src="{data_uri(pn.overlay)}">'
            f'<div class="cb" style="background:{pn.cmap_css}"></div><div class="cbl"><span>{pn.vmax:.3g}</span>'
            f'<span>{pn.vmin:.3g}</span></div></div><figcaption><b>{_e(pn.method)}</b> '
            f'<span class="score">{_e(pn.score)}</span></figcaption></figure>')


def _gallery(p: Page) -> str:
    out = []
    for row in p.gallery:
        cap = "<br>".join(_e(c) for c in row.caption)
        first = (f'<figure class="input"><div class="frame"><img alt="{_e(row.name)}" src="{data_uri(row.image)}">'
                 f'</div><figcaption><b>{_e(row.name)}</b><br>{cap}</figcaption></figure>')
        out.append(f'<div class="gal" data-image="{_e(row.name)}">{first}{"".join(_panel(x) for x in row.panels)}</div>')
    return "".join(out) or "<p>No images.</p>"


def page(p: Page) -> str:
    """The whole HTML document of ``p``."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(p.title)}</title>",
             f"<style>{_CSS}</style><script>{_JS}</script></head><body>",
             f"<h1>{_e(p.title)}</h1><div class='sub'>{_e(p.subtitle)}</div>"]
    parts += [f"<p class='note'>{_e(n)}</p>" for n in p.notes]
    parts += ["<h2>Metrics</h2>", _table(p), "<h2>Gallery</h2>", _gallery(p)]
    if p.figures:
        parts.append("<h2>Curves and sanity check</h2><div class='figs'>")
        parts += [f"<h3>{_e(t)}</h3><img alt='{_e(t)}' src='{png_uri(b)}'>" for t, b in p.figures]
        parts.append("</div>")
    if p.failures:
        parts.append("<h2>Failures</h2><ul>" + "".join(f"<li>{_e(f)}</li>" for f in p.failures) + "</ul>")
    if p.wall:
        rows = "".join(f"<tr><td class='m'>{_e(m)}</td><td>{a}</td><td>{b}</td></tr>" for m, a, b in p.wall)
        parts.append("<h2>Wall time</h2><table><thead><tr><th class='m'>method</th><th>attribution s / image</th>"
                     f"<th>metrics s / image</th></tr></thead><tbody>{rows}</tbody></table>")
    parts.append("<h2>Settings</h2><pre>" + _e(json.dumps(p.settings, indent=1, default=str)) + "</pre>")
    parts.append("<h2>Versions</h2><p>" + _e(", ".join(f"{k} {v}" for k, v in p.versions.items())) + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
