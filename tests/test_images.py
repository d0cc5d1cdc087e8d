import numpy as np
import pytest
import torch
from PIL import Image

import fisherattr
from fisherattr.errors import InputError


def test_samples_load_at_224():
    for name in fisherattr.list_samples():
        x = fisherattr.load_image(name)
        assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
        assert 0 <= x.min() and x.max() <= 1


def test_resize_rules(tmp_path):
    a = np.zeros((100, 200, 3), np.uint8)
    a[:, 50:150] = 255  # white centre square of the wide image
    p = tmp_path / "wide.png"
    Image.fromarray(a).save(p)
    crop = fisherattr.load_image(str(p), size=50)
    assert crop.shape == (1, 3, 50, 50) and crop.mean() > 0.95  # centre crop keeps only white
    plain = fisherattr.load_image(str(p), size=50, resize="plain")
    assert 0.4 < plain.mean() < 0.6


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_modes_become_rgb(tmp_path, mode):
    rgb = Image.fromarray((np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8))
    im = rgb.convert("L").convert("I;16") if mode == "I;16" else rgb.convert(mode)
    p = tmp_path / f"x_{mode.replace(';', '')}.png"
    im.save(p)
    x = fisherattr.load_image(str(p), size=16)
    assert x.shape == (1, 3, 16, 16)


def test_exif_orientation(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)  # wide
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90: displayed tall
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif)
    x = fisherattr.load_image(str(p), size=None, resize="none")
    assert x.shape[2:] == (40, 20)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        fisherattr.load_image(str(tmp_path / "missing.png"))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        fisherattr.load_image(str(tmp_path / "empty.png"))
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        fisherattr.load_image(str(tmp_path / "text.jpg"))
    with pytest.raises(InputError, match="sample photo"):
        fisherattr.load_image("nosuchsample")


# ---------------------------------------------------------------- hostile sizes (issue 18)
def _reference_crop(im, size):
    """The shorter-crop rule as first written: resize the whole image, then crop its centre."""
    th, tw = (size, size) if isinstance(size, int) else size
    w, h = im.size
    scale = max(th / h, tw / w)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    left, top = (nw - tw) // 2, (nh - th) // 2
    return im.resize((nw, nh), Image.BILINEAR).crop((left, top, left + tw, top + th))


@pytest.mark.parametrize("w,h,size", [(640, 480, 224), (500, 333, 64), (97, 61, (30, 40)), (16, 16, 50),  # as before
                                      (1, 500, 64), (500, 1, 64), (37, 1000, 50), (3, 7, 224)])      # cropped first
def test_shorter_crop_equals_resize_then_crop(w, h, size):
    from fisherattr.data.images import resize_pil

    im = Image.fromarray((np.random.default_rng(w * h).random((h, w, 3)) * 255).astype(np.uint8))
    ref = np.asarray(_reference_crop(im, size)).astype(int)
    got = np.asarray(resize_pil(im, size)).astype(int)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1 and (got != ref).mean() < 0.01  # within one 8-bit level
    th, tw = (size, size) if isinstance(size, int) else size
    scale = max(th / h, tw / w)
    full = max(tw, round(w * scale)) * max(th, round(h * scale))
    if full <= max(w * h, 4 * th * tw):  # a resized image no larger than that is made as before: bit-identical
        assert (got == ref).all()
    else:
        assert (w, h) in [(1, 500), (500, 1), (37, 1000), (3, 7)]


def test_long_strip_needs_no_memory(tmp_path):
    """A 1 x 20000 PNG at 224 (before: 224 x 4,480,000 pixels, 4.5 GB) costs a few MB."""
    import subprocess
    import sys

    p = tmp_path / "strip.png"
    Image.fromarray((np.random.default_rng(0).random((20000, 1, 3)) * 255).astype(np.uint8)).save(p)
    code = ("import resource, fisherattr.data.images as I\n"
            "r = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            f"a = r(); x = I.load_image({str(p)!r}, size=224); b = r()\n"
            "print(tuple(x.shape), (b - a) // 1024)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    shape, grown_mb = out.stdout.rsplit(")", 1)
    assert shape + ")" == "(1, 3, 224, 224)" and int(grown_mb) < 50


def test_pixel_limit(tmp_path, monkeypatch):
    from fisherattr.data.images import MAX_PIXELS_ENV

    p = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(p)
    with pytest.raises(InputError, match=r"a\.png: image too large \(600 pixels; limit 500\)"):
        fisherattr.load_image(str(p), size=16, max_pixels=500)
    monkeypatch.setenv(MAX_PIXELS_ENV, "599")
    with pytest.raises(InputError, match="limit 599"):
        fisherattr.load_image(str(p), size=16)
    monkeypatch.setenv(MAX_PIXELS_ENV, "600")
    assert fisherattr.load_image(str(p), size=16).shape == (1, 3, 16, 16)


def test_pil_bomb_warning_becomes_our_error(tmp_path, monkeypatch, recwarn):
    p = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(p)
    monkeypatch.delenv("FISHERATTR_MAX_PIXELS", raising=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # 600 pixels: PIL warns (no error below 800)
    with pytest.raises(InputError, match=r"image too large \(600 pixels; limit 400\)"):
        fisherattr.load_image(str(p), size=16)
    assert fisherattr.load_image(str(p), size=16, max_pixels=1000).shape == (1, 3, 16, 16)  # ours decides
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # 600 > 2 x 200: PIL's own error
    with pytest.raises(InputError, match=r"image too large \(600 pixels; limit 1,000\)"):
        fisherattr.load_image(str(p), size=16, max_pixels=1000)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
