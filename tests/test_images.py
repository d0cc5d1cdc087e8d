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
