"""The noise-map denoiser: maths of the pre-conditioning, training, persistence, the shipped model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fisherattr.cli import main as cli_main
from fisherattr.errors import UsageError
from fisherattr.scores import DiagonalGaussian, GaussianPrior, ScoreModel
from fisherattr.scores.noise_map import (DEFAULT_LOG_SNR_RANGE, TRAINING_PHOTOS, DenoiserConfig, NoiseMapDenoiser,
                                         TrainConfig, default_denoiser_path, eps_mmse_curve,
                                         load_noise_map_denoiser, load_training_photos, noise_images,
                                         random_crops, sample_log_snr_maps, train_noise_map_denoiser)

TINY = dict(size=16, batch=4, width=4, lr=2e-3)


def _photos(n: int = 3, size: int = 24, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, size, size + 5, generator=g) * 2 - 1 for _ in range(n)]


def test_untrained_model_is_the_exact_white_gaussian_denoiser() -> None:
    # the last layer starts at zero, so eps_hat = c_skip z: the MMSE predictor for N(0, data_var)
    den = NoiseMapDenoiser(DenoiserConfig(width=4, data_var=0.3))
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 9, 7, generator=g)
    lam = torch.randn(2, 3, 9, 7, generator=g) * 6
    ref = DiagonalGaussian(torch.zeros(3, 9, 7), torch.full((3, 9, 7), 0.3))
    torch.testing.assert_close(den.predict_eps(z, lam), ref.predict_eps(z, lam), rtol=1e-5, atol=1e-6)
    c_skip, c_out, c_in = den.coefficients(lam)
    # c_out^2 is that predictor's eps-MMSE, SNR v / (1 + SNR v)
    torch.testing.assert_close(c_out ** 2, ref.mmse(lam), rtol=1e-5, atol=1e-7)
    # c_in normalises z: Var(z) = a^2 v + s^2
    torch.testing.assert_close(c_in ** -2, torch.sigmoid(lam) * 0.3 + torch.sigmoid(-lam))


def test_levels_per_image_broadcast_and_any_size() -> None:
    torch.manual_seed(0)
    den = NoiseMapDenoiser(DenoiserConfig(width=4))
    torch.nn.init.normal_(den.net.out.weight, std=0.1)  # make the network part non-zero
    z = torch.randn(2, 3, 11, 13)
    lev = torch.tensor([-3.0, 4.0])
    full = lev.view(2, 1, 1, 1).expand(2, 3, 11, 13)
    out = den.predict_eps(z, lev)
    assert out.shape == (2, 3, 11, 13) and torch.isfinite(out).all()
    torch.testing.assert_close(out, den.predict_eps(z, full))
    assert den.accepts_level_map and isinstance(den, ScoreModel)
    with pytest.raises(UsageError, match="log_snr"):
        den.predict_eps(z, torch.zeros(3))


def test_level_maps_cover_the_whole_range() -> None:
    g = torch.Generator().manual_seed(0)
    lo, hi = DEFAULT_LOG_SNR_RANGE
    maps = sample_log_snr_maps(300, 3, 16, g)
    assert maps.shape == (300, 3, 16, 16)
    assert float(maps.min()) >= lo and float(maps.max()) <= hi
    spread = maps.flatten(1).amax(1) - maps.flatten(1).amin(1)
    uniform = spread == 0
    assert 0.2 < float(uniform.float().mean()) < 0.5          # one third: one level per image
    assert float((spread > 5).float().mean()) > 0.3            # and spatially varying maps
    # every part of the range is trained on, including both ends
    hist = torch.histc(maps, bins=10, min=lo, max=hi) / maps.numel()
    assert float(hist.min()) > 0.03, hist


def test_random_crops_shape_range_and_determinism() -> None:
    photos = _photos()
    a = random_crops(photos, 5, 16, torch.Generator().manual_seed(3))
    b = random_crops(photos, 5, 16, torch.Generator().manual_seed(3))
    assert a.shape == (5, 3, 16, 16) and float(a.min()) >= -1 and float(a.max()) <= 1
    assert torch.equal(a, b)


def test_training_photos_are_disjoint_from_the_explained_samples() -> None:
    from fisherattr.data import DEFAULT_SAMPLES
    from fisherattr.data.images import SAMPLES

    assert "cat" not in TRAINING_PHOTOS  # scikit-image's cat *is* chelsea
    assert not set(TRAINING_PHOTOS) & set(DEFAULT_SAMPLES)
    import skimage.data as skd

    explained = [np.asarray(SAMPLES[n][0]()) for n in DEFAULT_SAMPLES]
    for name in TRAINING_PHOTOS:
        arr = np.asarray(getattr(skd, name)())
        assert not any(e.shape == arr.shape and np.array_equal(e, arr) for e in explained), name
    photos = load_training_photos("samples")
    assert len(photos) >= 10 and all(p.shape[0] == 3 and float(p.min()) >= -1 for p in photos)


def test_tiny_training_saves_and_loads_back_identically(tmp_path) -> None:
    den = train_noise_map_denoiser(_photos(), tmp_path, TrainConfig(steps=3, **TINY), progress=False)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
    back = load_noise_map_denoiser(tmp_path)
    back_file = load_noise_map_denoiser(tmp_path / "model.safetensors")
    assert back.log_snr_range == DEFAULT_LOG_SNR_RANGE and back.config.training["steps"] == 3
    z, lam = torch.randn(2, 3, 12, 12), torch.rand(2, 3, 12, 12) * 20 - 10
    with torch.no_grad():
        ref = den.predict_eps(z, lam)
    assert torch.equal(ref, back.predict_eps(z, lam)) and torch.equal(ref, back_file.predict_eps(z, lam))
    with pytest.raises(UsageError, match="not a noise-map denoiser"):
        load_noise_map_denoiser(tmp_path / "nothing")


def test_resume_gives_the_uninterrupted_result(tmp_path) -> None:
    cfg = TrainConfig(steps=4, checkpoint_every=2, **TINY)
    full = train_noise_map_denoiser(_photos(), tmp_path / "a", cfg, progress=False)
    train_noise_map_denoiser(_photos(), tmp_path / "b", cfg, progress=False, stop_after=2)
    assert not (tmp_path / "b" / "model.safetensors").exists()
    resumed = train_noise_map_denoiser(_photos(), tmp_path / "b", cfg, progress=False, resume=True)
    for (k, v), (_, w) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(v, w), k


def test_training_learns_structure_beyond_the_white_gaussian() -> None:
    # images made of flat colour blocks: a trained denoiser must beat its untrained (white Gaussian) start
    g = torch.Generator().manual_seed(0)
    blocks = [torch.nn.functional.interpolate(torch.rand(1, 3, 3, 3, generator=g) * 2 - 1, size=(24, 24),
                                              mode="nearest")[0] for _ in range(8)]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        den = train_noise_map_denoiser(blocks, d, TrainConfig(steps=100, size=16, batch=8, width=8, lr=5e-3,
                                                              ema=0.9), progress=False)
    start = NoiseMapDenoiser(DenoiserConfig(width=8))
    held = torch.stack([torch.nn.functional.interpolate(torch.rand(1, 3, 2, 2, generator=g) * 2 - 1,
                                                        size=(16, 16), mode="nearest")[0] for _ in range(4)])
    levels = [0.0, 2.0]  # where the flat blocks are most predictable beyond the white prior
    trained = eps_mmse_curve(den, held, levels, draws=2)
    untrained = eps_mmse_curve(start, held, levels, draws=2)
    assert (trained < 0.85 * untrained).all(), (trained, untrained)


def test_cli_trains_from_a_folder_and_rejects_bad_data(tmp_path, capsys) -> None:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    g = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(g.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "den"
    code = cli_main(["train-denoiser", "--data", str(folder), "--out", str(out), "--steps", "2", "--size", "16",
                     "--batch", "2", "--width", "4", "--no-progress"])
    assert code == 0 and (out / "model.safetensors").exists() and (out / "checkpoint.pt").exists()
    assert load_noise_map_denoiser(out).config.training["data"] == str(folder)
    assert cli_main(["train-denoiser", "--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.skipif(default_denoiser_path() is None, reason="no shipped denoiser")
def test_shipped_denoiser_beats_the_gaussian_prior_on_held_out_photos() -> None:
    from fisherattr import load_image
    from fisherattr.data import DEFAULT_SAMPLES

    den = load_noise_map_denoiser(default_denoiser_path())
    # held out: the photos the default jobs explain (never seen in training), 96x96 crops
    x = torch.cat([load_image(n, size=96) for n in DEFAULT_SAMPLES]) * 2 - 1
    levels = [-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0]
    ours = eps_mmse_curve(den, x, levels, draws=1)
    prior = eps_mmse_curve(GaussianPrior.default(), x, levels, draws=1)
    assert (ours < 1.0).all()                                   # better than predicting zero (MSE 1)
    hi = torch.tensor(levels) >= 0
    assert (ours[hi] < prior[hi]).all(), (ours, prior)          # where nearly all the information is
    assert float(ours.sum()) < 0.8 * float(prior.sum())         # and over the whole integral
    # at low SNR the global prior (FFT, mean colour) is a little better: bounded, and tiny in absolute terms
    assert (ours[~hi] < 1.5 * prior[~hi]).all() and float(ours[~hi].max()) < 0.03


def test_folder_loader_skips_sidecar_masks(tmp_path) -> None:
    from PIL import Image

    from fisherattr.scores.noise_map import load_training_photos

    rng = np.random.default_rng(0)
    photo = lambda: Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))  # noqa: E731
    mask = Image.fromarray(np.zeros((20, 30), dtype=np.uint8))
    (tmp_path / "cls").mkdir()
    photo().save(tmp_path / "cls" / "1.jpg")
    mask.save(tmp_path / "cls" / "1.png")            # FSS-1000: mask beside its photo
    photo().save(tmp_path / "a.png")
    mask.save(tmp_path / "a.mask.png")               # folder layout: sidecar mask
    photos = load_training_photos(str(tmp_path))
    assert len(photos) == 2
    assert all(p.shape[0] == 3 for p in photos)


def test_large_images_run_channels_last_with_the_same_values():
    """At >= 128 px on the CPU the network runs channels-last (fisherattr.layout); the values
    equal a contiguous run up to float rounding."""
    from fisherattr.scores.noise_map import DenoiserConfig, NoiseMapDenoiser

    torch.manual_seed(0)
    den = NoiseMapDenoiser(DenoiserConfig(width=8)).eval()
    torch.nn.init.normal_(den.net.out.weight, std=0.1)  # zero-initialised: the net would add nothing
    z, lam = torch.randn(1, 3, 128, 128), torch.rand(1, 3, 128, 128) * 4 - 2
    layouts = []
    hook = den.net.inp.register_forward_pre_hook(
        lambda m, a: layouts.append(a[0].is_contiguous(memory_format=torch.channels_last) and not a[0].is_contiguous()))
    with torch.no_grad():
        fast = den.predict_eps(z, lam)
        c_skip, c_out, c_in = den.coefficients(lam)
        lo, hi = den.log_snr_range
        lev = (lam.clamp(lo, hi) - 0.5 * (lo + hi)) / (0.5 * (hi - lo))
        plain = c_skip * z + c_out * den.net(c_in * z, lev)
    hook.remove()
    assert layouts == [True, False] and fast.is_contiguous()
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
