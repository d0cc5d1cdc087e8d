"""Score-model backends: the analytic Gaussian prior against brute force, diffusers loading, dispatch."""
from __future__ import annotations

import json

import pytest
import torch

from fisherattr.errors import UsageError
from fisherattr.scores import (DiagonalGaussian, DiffusersVE, DiffusersVP, GaussianPrior, ScoreModel,
                               load_score_model)
from fisherattr.scores.gaussian import DEFAULT_POWER_LAW, default_fit_images, fit_power_law
from fisherattr.sde import mmse_curve, vp_perturb


def _dft_matrix(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)
    return torch.exp(-2j * torch.pi * k[:, None] * k[None, :] / n) / n ** 0.5


def test_gaussian_prior_is_the_brute_force_wiener_filter():
    """eps_hat = s (a^2 Sigma + s^2 I)^-1 (z - a m), Sigma = F^H diag(S) F built as a dense matrix."""
    prior = GaussianPrior(amplitude=(1e-3, 2e-3, 5e-4), gamma=(2.0, 2.5, 1.5), mean=(0.1, -0.2, 0.0), f0=0.05)
    h, w = 4, 5
    fmat = torch.kron(_dft_matrix(h), _dft_matrix(w))  # unitary 2-D DFT on row-major pixels
    spec = prior.spectrum(h, w, torch.float64)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    lam = torch.tensor([-1.0, 2.5], dtype=torch.float64)
    got = prior.predict_eps(z, lam)
    for b in range(2):
        a2, s2 = torch.sigmoid(lam[b]), torch.sigmoid(-lam[b])
        for c in range(3):
            cov = (fmat.conj().T @ torch.diag(spec[c].flatten().to(torch.complex128)) @ fmat).real
            r = z[b, c].flatten() - a2.sqrt() * prior.mean_colour[c]
            want = s2.sqrt() * torch.linalg.solve(a2 * cov + s2 * torch.eye(h * w, dtype=torch.float64), r)
            assert torch.allclose(got[b, c].flatten(), want, atol=1e-10)


def test_gaussian_prior_mmse_on_its_own_samples():
    """On images drawn from the prior, the mean eps error is the theoretical MMSE mean(a^2 S / (a^2 S + s^2))."""
    prior = GaussianPrior(amplitude=(2e-3,) * 3, gamma=(2.2,) * 3, mean=(0.0,) * 3, f0=1 / 32)
    h = w = 32
    spec = prior.spectrum(h, w, torch.float64)
    g = torch.Generator().manual_seed(1)
    white = torch.randn(4, 3, h, w, generator=g, dtype=torch.float64)
    x = torch.fft.ifft2(torch.fft.fft2(white, norm="ortho") * spec.sqrt(), norm="ortho").real
    lams = torch.tensor([-1.0, 1.0, 4.0], dtype=torch.float64)  # (very low SNR: a few low frequencies dominate)
    got = mmse_curve(prior, x, lams, draws=4, generators=[torch.Generator().manual_seed(i) for i in range(4)])
    for i, lam in enumerate(lams):
        a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
        want = float((a2 * spec / (a2 * spec + s2)).mean())
        assert float(got[i].mean()) == pytest.approx(want, rel=0.03)


def test_gaussian_prior_exact_eps_error_is_the_monte_carlo_average():
    """The closed-form noise average equals many Monte Carlo draws, per feature, on a real photo."""
    import fisherattr

    prior = GaussianPrior.default()
    x = (fisherattr.load_image("coffee")[..., 80:112, 96:128] * 2 - 1).double()
    g = torch.Generator().manual_seed(0)
    for lam in (-4.0, 1.0, 6.0):
        exact = prior.expected_eps_error(x, torch.tensor([lam], dtype=torch.float64))
        a, s = torch.sigmoid(torch.tensor(lam)).sqrt(), torch.sigmoid(torch.tensor(-lam)).sqrt()
        eps = torch.randn(8000, *x.shape[1:], generator=g, dtype=torch.float64)
        err = (prior.predict_eps(a * x + s * eps, torch.full((8000,), lam, dtype=torch.float64)) - eps) ** 2
        mc, sem = err.mean(0, keepdim=True), err.std(0, keepdim=True) / 8000 ** 0.5
        assert float(exact.sum()) == pytest.approx(float(mc.sum()), rel=3e-3)
        z = ((exact - mc) / sem).abs()
        assert float(z.mean()) < 1.0 and float(z.max()) < 5.0  # within Monte Carlo error, feature by feature
    # the curve uses it (no draws, no generator needed); exact=False goes back to draws
    lams = torch.tensor([0.0, 3.0], dtype=torch.float64)
    curve = mmse_curve(prior, x, lams, draws=2)
    torch.testing.assert_close(curve[1], prior.expected_eps_error(x, lams[1:].expand(1)))
    drawn = mmse_curve(prior, x, lams, draws=2, exact=False, generators=[torch.Generator().manual_seed(1)])
    assert not torch.allclose(drawn, curve) and float(drawn.mean()) == pytest.approx(float(curve.mean()), rel=0.1)
    assert DiagonalGaussian(torch.zeros(3, 1, 1), torch.ones(3, 1, 1)).expected_eps_error(x, lams[:1]) is None


def test_power_law_fit_recovers_the_exponent():
    prior = GaussianPrior(amplitude=(1e-3, 1e-3, 1e-3), gamma=(2.0, 2.4, 2.8), mean=(0.0,) * 3)
    h = w = 64
    spec = prior.spectrum(h, w, torch.float64)
    white = torch.randn(16, 3, h, w, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = torch.fft.ifft2(torch.fft.fft2(white, norm="ortho") * spec.sqrt(), norm="ortho").real
    fit = fit_power_law(((x + 1) / 2).float())
    assert fit["gamma"] == pytest.approx([2.0, 2.4, 2.8], abs=0.1)
    assert fit["amplitude"] == pytest.approx([1e-3] * 3, rel=0.3)


@pytest.mark.slow
def test_shipped_power_law_is_the_fit_on_the_documented_photos():
    shipped = fit_power_law(default_fit_images())
    assert shipped["gamma"] == pytest.approx(list(DEFAULT_POWER_LAW["gamma"]), abs=1e-3)
    assert shipped["amplitude"] == pytest.approx(list(DEFAULT_POWER_LAW["amplitude"]), rel=1e-3)


def test_gaussian_prior_rejects_level_maps_and_diagonal_accepts_them():
    prior = GaussianPrior.default()
    z = torch.zeros(1, 3, 4, 4)
    with pytest.raises(UsageError, match="one noise level"):
        prior.predict_eps(z, torch.zeros(1, 3, 4, 4))
    with pytest.raises(UsageError, match="one noise level"):
        prior.check_serves(z, level_map=True)
    diag = DiagonalGaussian(torch.zeros(3, 4, 4), torch.full((3, 4, 4), 0.5))
    lam = torch.randn(1, 3, 4, 4)
    x, eps = torch.rand(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    zz = vp_perturb(x, lam, eps)
    a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
    assert torch.allclose(diag.predict_eps(zz, lam), s2.sqrt() * zz / (a2 * 0.5 + s2), atol=1e-6)


# ----------------------------------------------------------------------------- diffusers
def _tiny_unet(**kw):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       norm_num_groups=4, layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), **kw)


@pytest.fixture(scope="module")
def diffusers_folders(tmp_path_factory):
    from diffusers import DDIMScheduler, DDPMScheduler, ScoreSdeVeScheduler

    root = tmp_path_factory.mktemp("diffusers")
    _tiny_unet().save_pretrained(root / "vp")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(root / "vp")
    # a pipeline-style folder: unet/ + scheduler/, v-prediction
    _tiny_unet().save_pretrained(root / "pipe" / "unet")
    DDIMScheduler(num_train_timesteps=1000, prediction_type="v_prediction").save_pretrained(root / "pipe" / "scheduler")
    (root / "pipe" / "model_index.json").write_text(json.dumps({"_class_name": "DDIMPipeline"}))
    _tiny_unet(time_embedding_type="fourier").save_pretrained(root / "ve")
    ScoreSdeVeScheduler(sigma_min=0.01, sigma_max=50.0).save_pretrained(root / "ve")
    _tiny_unet().save_pretrained(root / "noscheduler")
    return root


def test_diffusers_vp_loads_offline_and_maps_levels(diffusers_folders):
    from diffusers import DDPMScheduler

    sm = load_score_model(str(diffusers_folders / "vp"))
    assert isinstance(sm, DiffusersVP) and sm.resolution == (16, 16) and not sm.accepts_level_map
    ab = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod.double()
    assert sm.log_snr_range[0] == pytest.approx(float(torch.log(ab[-1] / (1 - ab[-1]))), rel=1e-5)
    # a table log-SNR maps back to its own integer timestep
    n = torch.tensor([0, 10, 500, 999])
    lam = torch.log(ab[n] / (1 - ab[n])).float()
    assert torch.allclose(sm.timestep(lam), n.float(), atol=1e-2)
    z = torch.randn(2, 3, 16, 16)
    out = sm.predict_eps(z, torch.tensor([0.0, 2.0]))
    ref = sm.unet(z, sm.timestep(torch.tensor([0.0, 2.0]))).sample
    assert torch.allclose(out, ref)
    with pytest.raises(UsageError, match="one noise level"):
        sm.predict_eps(z, torch.zeros(2, 3, 16, 16))


def test_diffusers_pipeline_folder_and_v_prediction(diffusers_folders):
    sm = load_score_model(str(diffusers_folders / "pipe"))
    assert sm.prediction_type == "v_prediction"
    z, lam = torch.randn(1, 3, 16, 16), torch.tensor([0.7])
    v = sm.unet(z, sm.timestep(lam)).sample
    a, s = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
    assert torch.allclose(sm.predict_eps(z, lam), a * v + s * z, atol=1e-6)


def test_diffusers_ve_converts_score_to_eps(diffusers_folders):
    sm = load_score_model(str(diffusers_folders / "ve"))
    assert isinstance(sm, DiffusersVE)
    assert sm.ve_sigmas == pytest.approx((0.02, 100.0))  # unit-space sigmas in diffusion space
    z, lam = torch.randn(1, 3, 16, 16), torch.tensor([1.0])
    sigma = torch.exp(-lam / 2)
    x_unit = (z * torch.sqrt(1 + sigma ** 2) + 1) / 2
    score = sm.unet(x_unit, sigma / 2).sample
    assert torch.allclose(sm.predict_eps(z, lam), -(sigma / 2) * score, atol=1e-6)
    with pytest.raises(UsageError, match="DiffusersVE"):
        DiffusersVP.from_pretrained(str(diffusers_folders / "ve"))


def test_load_score_model_dispatch_and_errors(diffusers_folders, tmp_path):
    assert isinstance(load_score_model("gaussian"), GaussianPrior)
    diag = DiagonalGaussian(torch.zeros(1), torch.ones(1))
    assert load_score_model(diag) is diag
    with pytest.raises(UsageError, match="scheduler_config"):
        load_score_model(str(diffusers_folders / "noscheduler"))
    with pytest.raises(UsageError, match="allow_download"):
        load_score_model("google/ddpm-cifar10-32")
    with pytest.raises(UsageError, match="no such folder"):
        load_score_model(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="not a score model"):
        load_score_model(str(empty))


def test_load_score_model_finds_a_noise_map_denoiser(tmp_path):
    noise_map = pytest.importorskip("fisherattr.scores.noise_map")
    den = noise_map.NoiseMapDenoiser(noise_map.DenoiserConfig(width=8))
    den.save(tmp_path / "den")
    loaded = load_score_model(str(tmp_path / "den"))
    assert isinstance(loaded, ScoreModel) and loaded.accepts_level_map
