"""FDA (METHODS.md 2): known-answer toys, the method contract, errors, diffusers end to end, amortised mode."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn

import fisherattr
from fisherattr.errors import UsageError
from fisherattr.methods.level_explainer import AdapterUNet, load_adapter
from fisherattr.models import Classifier
from fisherattr.scores import DiagonalGaussian, ScoreModel
from fisherattr.sde import VPSchedule

from conftest import PatchModel, patch_mask


class Counting(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.mark.parametrize("opts", [dict(adapter="direct", lr=0.1, steps=40),
                                  dict(adapter="unet", lr=0.05, steps=40, preset="paper"),
                                  dict(adapter="direct", lr=0.1, steps=40, sde="ve"),
                                  dict(adapter="direct", lr=0.1, steps=30, integration="pixelwise",
                                       score_model=DiagonalGaussian(torch.zeros(3, 16, 16),
                                                                    torch.full((3, 16, 16), 0.25)))],
                         ids=["direct", "unet", "ve", "pixelwise"])
def test_fda_keeps_the_decisive_patch_clean(patch_model, patch_images, opts):
    fda = fisherattr.get_method("fda", patch_model, **opts)
    a = fda.attribute(patch_images).sum(1)
    inside, outside = a[:, patch_mask()].mean(1), a[:, ~patch_mask()].mean(1)
    ratio = 3 if opts.get("integration") == "pixelwise" else 10  # pixelwise gradients are noisier
    assert (inside > ratio * outside).all(), (inside, outside)
    # the prediction survives the returned levels (the CE term did its job): with a fixed beta the
    # last step's CE; with the constraint, every image returned an iterate that held it
    if fda.keep_prob is None:
        assert fda.last_history["ce"][-1] < 0.7
    else:
        assert all(fda.last_history["feasible"]) and all(fda.last_history["verified"])


def test_fda_output_is_the_information_retained_at_the_final_levels(patch_images):
    """steps=0 keeps the initial level t0 everywhere; with the exact diagonal Gaussian score and an image
    whose diffusion-space values are m +- sqrt(v), the map is 1/2 log((1+SNR(t0) v)/(1+SNR(1) v)) per feature."""
    x = torch.full((1, 3, 16, 16), 0.25)
    x[..., ::2] = 0.75  # diffusion space +-0.5 = +-sqrt(0.25)
    model = Classifier(PatchModel(), classes=["a", "b"]).eval()
    sm = DiagonalGaussian(torch.zeros(3, 16, 16), torch.full((3, 16, 16), 0.25))
    fda = fisherattr.get_method("fda", model, score_model=sm, steps=0, curve_draws=32, nodes=48)
    a = fda.attribute(x)
    sched = VPSchedule()
    t0 = torch.tensor(1e-3 + (1 - 1e-3) * torch.sigmoid(torch.tensor(-5.0)).item(), dtype=torch.float64)
    snr0, snr1 = torch.exp(sched.log_snr(t0)), torch.exp(sched.log_snr(torch.tensor(1.0, dtype=torch.float64)))
    want = 0.5 * math.log((1 + snr0 * 0.25) / (1 + snr1 * 0.25))
    assert torch.allclose(fda.last_levels, t0.float().expand_as(x), atol=1e-6)
    assert float(a.mean()) == pytest.approx(want, rel=0.02)


def test_contract_shape_determinism_batch_and_caller_tensor(tiny_model, tiny_images):
    x = tiny_images[:2].clone()
    before = x.clone()
    opts = dict(steps=4, noise_draws=2, curve_draws=2, nodes=8)
    a1 = fisherattr.get_method("fda", tiny_model, seed=3, **opts).attribute(x)
    a2 = fisherattr.get_method("fda", tiny_model, seed=3, **opts).attribute(x)
    a3 = fisherattr.get_method("fda", tiny_model, seed=4, **opts).attribute(x)
    assert a1.shape == (2, 3, 16, 16) and a1.dtype == torch.float32 and (a1 >= 0).all()
    assert torch.equal(x, before)
    assert torch.equal(a1, a2)
    assert not torch.equal(a1, a3)
    single = fisherattr.get_method("fda", tiny_model, seed=3, **opts).attribute(x[1:2])
    assert torch.allclose(a1[1:2], single, rtol=1e-4, atol=1e-6)
    t = fisherattr.get_method("fda", tiny_model, seed=3, **opts).attribute(x, target=torch.tensor([1, 2]))
    assert t.shape == a1.shape


class _VEOnly(DiagonalGaussian):
    sde = "ve"


class _Narrow(DiagonalGaussian):
    log_snr_range = (-2.0, 2.0)


@pytest.mark.parametrize("score_model,opts,match", [
    (DiagonalGaussian(torch.zeros(3, 8, 8), torch.ones(3, 8, 8)), {}, "needs 8x8"),
    (DiagonalGaussian(torch.zeros(1, 16, 16), torch.ones(1, 16, 16)), {}, "1-channel"),
    (_VEOnly(torch.zeros(3, 16, 16), torch.ones(3, 16, 16)), {}, "sde='ve'"),
    (_Narrow(torch.zeros(3, 16, 16), torch.ones(3, 16, 16)), {}, "log-SNR range"),
    ("gaussian", {"integration": "pixelwise"}, "one noise level"),
])
def test_score_model_errors_come_before_any_optimisation(tiny_model, tiny_images, score_model, opts, match):
    counting = Counting(tiny_model)
    fda = fisherattr.get_method("fda", counting, score_model=score_model, steps=50, **opts)
    with pytest.raises(UsageError, match=match):
        fda.attribute(tiny_images[:1])
    assert counting.calls == 1  # only the clean forward pass that resolves the target


@pytest.mark.parametrize("opts,match", [
    (dict(integration="exact"), "integration"), (dict(quadrature="gauss-legendre"), "quadrature"),
    (dict(form="score"), "form"), (dict(beta=-1), "beta"), (dict(t_min=0), "t_min"), (dict(nodes=1), "nodes"),
    (dict(noise_draws=0), "noise_draws"), (dict(adapter="mlp"), "adapter"), (dict(mode="amortised"), "explainer"),
    (dict(sde="subvp"), "sde"), (dict(steps_per_image=3), "no option"), (dict(keep="best"), "keep"),
    (dict(keep="feasible", average=0.5), "average"),
])
def test_bad_options(tiny_model, opts, match):
    with pytest.raises(UsageError, match=match):
        fisherattr.get_method("fda", tiny_model, **opts)


def test_keep_feasible_returns_the_least_information_iterate_that_held_the_prediction(patch_model, patch_images):
    """With a huge beta and step size the levels collapse to full noise and the last iterate loses the
    prediction; keep='feasible' returns the iterate of least information among those whose step
    cross-entropy was below ln 2 (one image, so the history is that image's)."""
    x = patch_images[:1]
    opts = dict(adapter="direct", lr=0.5, steps=60, beta=200.0, preset="paper")  # fixed beta, information
    last = fisherattr.get_method("fda", patch_model, **opts)
    a_last = last.attribute(x)
    guarded = fisherattr.get_method("fda", patch_model, keep="feasible", **opts)
    a = guarded.attribute(x)
    h = guarded.last_history
    for k in ("ce", "penalty"):  # same optimisation; only the returned iterate differs
        assert h[k] == last.last_history[k]
    assert h["ce"][-1] > 1.0  # collapsed: the target's probability fell below e^-1
    feasible = [p for c, p in zip(h["ce"], h["penalty"]) if c < math.log(2)]
    assert 0 < len(feasible) < len(h["ce"])
    # FDA's penalty is the mean information, exactly the returned map's mean (grid, Gaussian prior)
    assert float(a.mean()) == pytest.approx(min(feasible), rel=1e-5)
    assert float(a.mean()) > 20 * float(a_last.mean())
    # the guarded levels hold the prediction far better under fresh noise, and still localise
    eps = torch.randn((64, 3, 16, 16), generator=torch.Generator().manual_seed(1))

    def p_target(levels):
        xp = guarded.schedule.perturb(x * 2 - 1, levels, eps)
        with torch.no_grad():
            return float(torch.softmax(patch_model(((xp + 1) / 2).clamp(0, 1)), 1)[:, 0].mean())

    assert p_target(guarded.last_levels) > 0.25 > 0.1 > p_target(last.last_levels)
    s = a.sum(1)[0]
    assert s[patch_mask()].mean() > 5 * s[~patch_mask()].mean()


def test_keep_feasible_equals_last_when_every_iterate_holds_and_information_only_falls(patch_model, patch_images):
    opts = dict(adapter="direct", lr=0.1, steps=20, preset="paper")
    a = fisherattr.get_method("fda", patch_model, **opts).attribute(patch_images)
    guarded = fisherattr.get_method("fda", patch_model, keep="feasible", **opts)
    b = guarded.attribute(patch_images)
    h = guarded.last_history
    assert max(h["ce"]) < 0.1 and all(q <= p for p, q in zip(h["penalty"], h["penalty"][1:]))
    torch.testing.assert_close(a, b)


def test_score_resize_serves_other_resolutions(tiny_model, tiny_images):
    sm = DiagonalGaussian(torch.zeros(3, 8, 8), torch.full((3, 8, 8), 0.25))
    fda = fisherattr.get_method("fda", tiny_model, score_model=sm, score_resize=True, steps=2, curve_draws=2)
    a = fda.attribute(tiny_images[:1])
    assert a.shape == (1, 3, 16, 16) and torch.isfinite(a).all()
    # the curve resized back keeps the total information of the 8x8 curve
    strat = fda.make_strategy(tiny_images[:1])
    st = strat.prepare(tiny_images[:1], fda.generators(1))
    small = torch.nn.functional.interpolate(tiny_images[:1], size=(8, 8), mode="bilinear", antialias=True)
    direct = strat._curve(small * 2 - 1, strat.grid_nodes(small.device), fda.generators(1))
    assert torch.allclose(st["curve"][0].sum((1, 2, 3)), direct[:, 0].sum((1, 2, 3)), rtol=1e-3)


# ----------------------------------------------------------------------------- diffusers end to end
def _save_tiny_diffusers(folder, ve=False):
    from diffusers import DDPMScheduler, ScoreSdeVeScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16), norm_num_groups=4,
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"),
                       **({"time_embedding_type": "fourier"} if ve else {}))
    unet.save_pretrained(folder)
    (ScoreSdeVeScheduler(sigma_min=0.01, sigma_max=50.0) if ve else DDPMScheduler()).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("ve", [False, True], ids=["vp", "ve"])
def test_fda_end_to_end_with_a_saved_diffusers_model(tiny_model, tiny_images, tmp_path, ve):
    path = _save_tiny_diffusers(tmp_path / "m", ve)
    sde = "ve" if ve else "vp"
    fda = fisherattr.get_method("fda", tiny_model, score_model=path, sde=sde, steps=3, nodes=6, curve_draws=1)
    a = fda.attribute(tiny_images[:2])
    assert a.shape == (2, 3, 16, 16) and torch.isfinite(a).all() and (a >= 0).all()
    if ve:  # the schedule follows the model's sigma range (unit-space model: sigmas doubled)
        assert fda.schedule.sigma_min == pytest.approx(0.02) and fda.schedule.sigma_max == pytest.approx(100.0)
    else:
        with pytest.raises(UsageError, match="sde='vp'"):
            fisherattr.get_method("fda", tiny_model, score_model=path, sde="ve", steps=1).attribute(tiny_images[:1])


# ----------------------------------------------------------------------------- amortised
def test_amortised_train_save_load_and_one_forward_pass(patch_model, patch_images, tmp_path):
    fda = fisherattr.get_method("fda", patch_model, curve_draws=2, nodes=8, preset="paper")
    out, hist = fda.train_explainer(patch_images, tmp_path / "expl", steps=30, batch=2, lr=0.05, progress=False)
    cfg = json.loads((tmp_path / "expl" / "adapter.json").read_text())
    assert cfg["method"] == "fda" and cfg["sde"] == "vp" and len(hist["ce"]) == 30
    net, _ = load_adapter(out)
    assert isinstance(net, AdapterUNet)
    am = fisherattr.get_method("fda", patch_model, mode="amortised", explainer=str(out), curve_draws=2, nodes=8)
    a = am.attribute(patch_images)
    assert a.shape == patch_images.shape
    assert torch.equal(a, am.attribute(patch_images))  # one deterministic forward pass
    inside, outside = a.sum(1)[:, patch_mask()].mean(), a.sum(1)[:, ~patch_mask()].mean()
    assert inside > outside  # trained on the same toy task: the decisive patch keeps more information

    (tmp_path / "broken").mkdir()
    with pytest.raises(UsageError, match="adapter.json"):
        fisherattr.get_method("fda", patch_model, mode="amortised", explainer=str(tmp_path / "broken"))
    cfg["method"] = "diffib"
    (tmp_path / "expl" / "adapter.json").write_text(json.dumps(cfg))
    with pytest.raises(UsageError, match="trained for"):
        fisherattr.get_method("fda", patch_model, mode="amortised", explainer=str(out))


# ----------------------------------------------------------------------------- real model
@pytest.mark.slow
def test_fda_beats_ig_and_saliency_on_difauc(lite0, chelsea):
    from fisherattr.metrics.insertion_deletion import insertion_deletion

    scores = {}
    for name, opts in [("fda", {}), ("integrated-gradients", {"internal_batch_size": 50}), ("saliency", {})]:
        maps = fisherattr.get_method(name, lite0, **opts).attribute(chelsea)
        scores[name] = float(insertion_deletion(lite0, chelsea, maps, preset="inputiba").difauc.mean())
    assert scores["fda"] > scores["integrated-gradients"], scores
    assert scores["fda"] > scores["saliency"], scores


def make_patch_classifier() -> Classifier:
    """Entry point for the CLI test (``--model test_fda:make_patch_classifier``)."""
    return Classifier(PatchModel(), classes=["bright", "dark"], input_size=(16, 16)).eval()


def test_train_explainer_command(patch_images, tmp_path):
    from PIL import Image

    from fisherattr.cli import main

    data = tmp_path / "photos"
    data.mkdir()
    for i, img in enumerate(patch_images):
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype("uint8")).save(data / f"{i}.png")
    out = tmp_path / "expl"
    rc = main(["train-explainer", "--method", "fda", "--model", "test_fda:make_patch_classifier", "--data", str(data),
               "--out", str(out), "--steps", "3", "--batch", "2", "--no-progress", "--option", "curve_draws=1",
               "--option", "nodes=4"])
    assert rc == 0 and (out / "adapter.json").exists() and (out / "adapter.safetensors").exists()
    assert json.loads((out / "adapter.json").read_text())["train_images"] == 2
    assert main(["train-explainer", "--model", "test_fda:make_patch_classifier", "--data", str(data),
                 "--out", str(out), "--option", "nodes"]) == 2
    assert main(["train-explainer", "--method", "saliency", "--model", "test_fda:make_patch_classifier",
                 "--data", str(data), "--out", str(out)]) == 2


def test_default_vp_schedule_may_use_a_denoiser_trained_on_minus_10_to_10(tiny_model, tiny_images):
    # lam(1) = -10.05 for the standard VP schedule: within the noisy-end slack, so no error
    from fisherattr.scores.noise_map import DenoiserConfig, NoiseMapDenoiser

    den = NoiseMapDenoiser(DenoiserConfig(width=4))
    assert den.log_snr_range == (-10.0, 10.0)
    for integration in ("grid", "pixelwise"):
        fda = fisherattr.get_method("fda", tiny_model, score_model=den, integration=integration, steps=2,
                                    curve_draws=1, nodes=4)
        a = fda.attribute(tiny_images[:1])
        assert a.shape == (1, 3, 16, 16) and torch.isfinite(a).all() and (a >= 0).all()
    # beyond the slack it is still an error
    den.log_snr_range = (-9.0, 10.0)
    with pytest.raises(UsageError, match="noisy end may extend"):
        fisherattr.get_method("fda", tiny_model, score_model=den, steps=2).attribute(tiny_images[:1])
