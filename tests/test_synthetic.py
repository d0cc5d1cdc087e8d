"""The synthetic ground-truth world: determinism, exact masks, balance, the object alone decides the class,
the shipped classifier and diffusers model, and the commands that regenerate them."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from fisherattr import load_classifier
from fisherattr.cli import main as cli_main
from fisherattr.data import synthetic as S
from fisherattr.errors import UsageError


# ----------------------------------------------------------------------------- the generator
def test_generate_is_deterministic_and_independent_of_n() -> None:
    a_img, a_label, a_mask = S.generate(17, size=64, seed=3)
    b_img, b_label, b_mask = S.generate(17, size=64, seed=3)
    assert np.array_equal(a_img, b_img) and a_label == b_label and np.array_equal(a_mask, b_mask)
    short, long = S.load_samples(5, seed=3), S.load_samples(12, seed=3)
    for s, t in zip(short, long):
        assert s.name == t.name and torch.equal(s.image, t.image) and torch.equal(s.mask, t.mask)
    assert torch.equal(long[3].image[0], torch.from_numpy(S.generate(3, seed=3)[0]).permute(2, 0, 1) / 255.0)


def test_seeds_and_splits_give_different_images() -> None:
    base = S.generate(4, seed=0, split="test")[0]
    for kw in ({"seed": 1, "split": "test"}, {"seed": 0, "split": "train"}, {"seed": 0, "split": "val"}):
        assert not np.array_equal(base, S.generate(4, **kw)[0]), kw


def test_mask_is_exactly_the_object_drawn_alone() -> None:
    for i in range(24):
        sc = S.scene(i, size=64, seed=0)
        alone = sc.compose(background=np.zeros_like(sc.background))   # the object on a black canvas
        assert np.array_equal(alone.max(axis=-1) > 0, sc.mask), i          # object colours are never black
        img = sc.compose()
        assert np.array_equal(img[sc.mask], sc.object[sc.mask])           # inside: the object, unoccluded
        assert np.array_equal(img[~sc.mask], sc.background[~sc.mask])     # outside: the background
        assert np.array_equal(S.generate(i, size=64, seed=0)[2], sc.mask)


def _polygon_area(v: np.ndarray) -> float:
    x, y = v[:, 0], v[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def test_mask_area_matches_the_shape_closed_form() -> None:
    """Mask pixel counts at 256x256 equal the analytic areas of the shapes (radius from the scene)."""
    unit_area = {"disc": math.pi * 0.85 ** 2, "square": 1.36 ** 2, "cross": 2 * 0.6 * 1.9 - 0.6 ** 2,
                 "triangle": _polygon_area(S._TRIANGLE), "star": _polygon_area(S._STAR)}
    assert unit_area["triangle"] == pytest.approx(3 * math.sqrt(3) / 4)
    seen = set()
    for i in range(10):
        sc = S.scene(i, size=256, seed=0, classes=10)
        expected = unit_area[sc.spec.shape] * (sc.spec.radius * 256) ** 2
        assert sc.mask.sum() == pytest.approx(expected, rel=0.02), sc.spec.shape
        seen.add(sc.spec.shape)
    assert seen == set(S.SHAPES)


def test_geometry_is_size_independent() -> None:
    small, big = S.scene(9, size=64).mask, S.scene(9, size=128).mask
    down = big.reshape(64, 2, 64, 2).mean(axis=(1, 3))
    agree = ((down > 0.5) == small)[(down == 0) | (down == 1)]   # pixels the 128 render sees as pure
    assert agree.mean() > 0.99


def test_boxes_are_the_mask_bounding_boxes() -> None:
    for s in S.load_samples(16, size=64, seed=0):
        x0, y0, x1, y1 = s.boxes[0]
        ys, xs = torch.nonzero(s.mask, as_tuple=True)
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        assert s.image.shape == (1, 3, 64, 64) and 0 <= s.image.min() and s.image.max() <= 1
        assert s.mask.dtype == torch.bool and 0.02 < s.mask.float().mean() < 0.4


@pytest.mark.parametrize("classes", [6, 8, 10])
def test_classes_are_balanced(classes: int) -> None:
    labels = [S.generate(i, size=16, seed=5, classes=classes)[1] for i in range(7, 7 + 5 * classes)]
    assert np.bincount(labels, minlength=classes).tolist() == [5] * classes
    assert len(S.class_names(classes)) == classes


def test_class_is_decided_by_the_object_alone() -> None:
    """By construction: labels follow the object; backgrounds carry no class information."""
    # the label is a function of the object's shape and pattern
    for i in range(20):
        sc = S.scene(i, seed=2)
        assert S.CLASS_NAMES[sc.label] == f"{sc.spec.shape}-{sc.spec.pattern}"
    # background statistics do not depend on the class (mean colour per class within noise)
    means = np.zeros((8, 3))
    for i in range(8 * 40):
        sc = S.scene(i, size=32, seed=0, split="train")
        means[sc.label] += sc.background.reshape(-1, 3).mean(0) / 40
    assert np.ptp(means, axis=0).max() < 12  # out of 255; per-class std error is about 3


def test_dataset_and_errors() -> None:
    ds = S.SyntheticDataset(10, size=32, seed=1, split="train", cache=True)
    x, y = ds[4]
    img, label, _ = S.generate(4, size=32, seed=1, split="train")
    assert len(ds) == 10 and y == label and torch.equal(x, torch.from_numpy(img).permute(2, 0, 1) / 255.0)
    assert ds[4][0] is x
    with pytest.raises(IndexError):
        ds[10]
    with pytest.raises(UsageError, match="classes"):
        S.generate(0, classes=5)
    with pytest.raises(UsageError, match="split"):
        S.load_samples(2, split="holdout")
    with pytest.raises(UsageError, match="size"):
        S.generate(0, size=4)


# ----------------------------------------------------------------------------- the commands
def test_make_synthetic_writes_the_same_images(tmp_path) -> None:
    assert cli_main(["make-synthetic", "--n", "10", "--out", str(tmp_path), "--size", "48", "--seed", "4"]) == 0
    samples = S.load_samples(10, size=48, seed=4)
    names = S.class_names(8)
    for i, s in enumerate(samples):
        folder = tmp_path / names[s.label]
        img = np.asarray(Image.open(folder / f"{i:06d}.png"))
        mask = np.asarray(Image.open(folder / f"{i:06d}.mask.png")) > 127
        boxes = json.loads((folder / f"{i:06d}.boxes.json").read_text())
        assert np.array_equal(img, (s.image[0].permute(1, 2, 0) * 255).round().byte().numpy())
        assert np.array_equal(mask, s.mask.numpy()) and boxes == [list(s.boxes[0])]
    assert sum(1 for _ in tmp_path.rglob("*.mask.png")) == 10
    bare = tmp_path / "bare"
    assert cli_main(["make-synthetic", "--n", "3", "--out", str(bare), "--images-only"]) == 0
    assert sorted(p.name for p in bare.rglob("*.*")) == ["000000.png", "000001.png", "000002.png"]
    assert cli_main(["make-synthetic", "--n", "0", "--out", str(bare)]) == 2


def test_train_classifier_command_regenerates_a_tiny_model(tmp_path, capsys) -> None:
    out = tmp_path / "clf"
    rc = cli_main(["train-classifier", "--data", "synthetic", "--out", str(out), "--steps", "3", "--batch", "8",
                   "--size", "32", "--classes", "6", "--train-images", "24", "--test-images", "12", "--quiet",
                   "--noise-augment", "0.5"])
    assert rc == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= stats["test_accuracy"] <= 1
    cfg = json.loads((out / "classifier.json").read_text())
    assert cfg["builder"] == "fisherattr.models.small_cnn:build_small_cnn" and cfg["training"]["steps"] == 3
    assert cfg["training"]["noise_augment"] == 0.5 and cfg["training"]["noise_max_t"] == 1.0
    model = load_classifier(str(out))
    assert model.classes == S.class_names(6) and model.input_size == (32, 32)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 6)
    assert cli_main(["train-classifier", "--data", "imagenet", "--out", str(out)]) == 2
    assert cli_main(["train-classifier", "--data", "synthetic", "--out", str(out), "--classes", "3"]) == 2


def test_vp_noise_augment_follows_the_vp_marginal_on_the_chosen_fraction() -> None:
    from fisherattr.commands.train_classifier import vp_noise_augment
    from fisherattr.sde import VPSchedule

    g = torch.Generator().manual_seed(0)
    x = torch.full((400, 3, 16, 16), 0.75)  # 0.5 in diffusion space, far from the clamp for small t
    out = vp_noise_augment(x, 0.5, 0.05, g)
    changed = (out != x).flatten(1).any(1)
    assert 0.4 < changed.float().mean() < 0.6  # about half the batch
    assert torch.equal(out[~changed], x[~changed])
    # pixel values stay within what the largest time allows: |x' - x| <= (1 - alpha) x + k sigma
    s = VPSchedule()
    t = torch.tensor(0.05)
    d = (out[changed] * 2 - 1) - 0.5
    assert d.abs().max() <= float((1 - s.alpha(t)) * 0.5 + 6 * s.sigma(t))
    # the same generator state gives the same batch; fraction 0 leaves it alone
    a = vp_noise_augment(x[:8], 1.0, 1.0, torch.Generator().manual_seed(3))
    b = vp_noise_augment(x[:8], 1.0, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(vp_noise_augment(x[:8], 0.0, 1.0, g), x[:8])
    from fisherattr.commands.train_classifier import TrainConfig

    with pytest.raises(UsageError, match="noise-augment"):
        TrainConfig(noise_augment=1.5).validate()
    with pytest.raises(UsageError, match="noise-max-t"):
        TrainConfig(noise_max_t=0.0).validate()


def test_diffusers_vp_trainer_saves_a_loadable_pipeline(tmp_path) -> None:
    from diffusers import DDPMScheduler, UNet2DModel

    from fisherattr.scores.diffusers_train import VPTrainConfig, train_diffusers_vp

    cfg = VPTrainConfig(steps=2, batch=2, train_images=4, eval_images=2, widths=(8, 16), crop=16)
    unet, sched, stats = train_diffusers_vp(cfg, tmp_path, progress=False)
    back = UNet2DModel.from_pretrained(str(tmp_path), subfolder="unet")
    sch = DDPMScheduler.from_pretrained(str(tmp_path), subfolder="scheduler")
    assert sch.config.prediction_type == "epsilon" and sch.config.num_train_timesteps == 1000
    x, t = torch.randn(1, 3, 64, 64), torch.tensor([10])
    with torch.no_grad():
        assert torch.allclose(back(x, t).sample, unet(x, t).sample, atol=1e-6)
    with pytest.raises(UsageError, match="crop"):
        VPTrainConfig(crop=30).validate()


# ----------------------------------------------------------------------------- the shipped models
@pytest.fixture(scope="module")
def shipped():
    return load_classifier(str(S.default_classifier_path()))


def test_shipped_classifier_accuracy_on_held_out_images(shipped) -> None:
    """>= 95% on 400 test-split images of a world seed the training never saw."""
    x, y = S.make_batch(range(400), size=64, seed=11, split="test")
    with torch.no_grad():
        acc = (shipped(x).argmax(1) == y).float().mean().item()
    assert shipped.classes == list(S.CLASS_NAMES)
    assert acc >= 0.95, acc


def test_shipped_classifier_follows_the_object_when_backgrounds_are_swapped(shipped) -> None:
    scenes = [S.scene(i, seed=12, split="test") for i in range(60)]
    swapped, labels = [], []
    for a, b in zip(scenes[0::2], scenes[1::2]):
        for obj, bg in ((a, b), (b, a)):
            swapped.append(torch.from_numpy(obj.compose(bg.background)).permute(2, 0, 1) / 255.0)
            labels.append(obj.label)
    with torch.no_grad():
        pred = shipped(torch.stack(swapped)).argmax(1)
    assert (pred == torch.tensor(labels)).float().mean() >= 0.9


def test_shipped_diffusers_model_predicts_noise_better_than_zero() -> None:
    from diffusers import DDPMScheduler, UNet2DModel

    from fisherattr.scores.diffusers_train import eps_mse

    path = S.default_diffusion_path()
    unet = UNet2DModel.from_pretrained(str(path), subfolder="unet").eval()
    sched = DDPMScheduler.from_pretrained(str(path), subfolder="scheduler")
    assert unet.config.sample_size == 64 and sum(p.numel() for p in unet.parameters()) * 4 < 4e6
    x0 = S.make_batch(range(8), size=64, seed=13, split="test")[0] * 2 - 1
    g = torch.Generator().manual_seed(0)
    for t in (100, 400, 700):
        model, zero = eps_mse(unet, sched, x0, torch.full((8,), t), g)
        assert model < 0.8 * zero, (t, model, zero)


def test_shipped_noise_map_denoiser_beats_its_gaussian_starting_point() -> None:
    """The untrained denoiser is the exact Gaussian (Wiener) predictor; training on the world must beat it."""
    from fisherattr.scores.noise_map import (DenoiserConfig, NoiseMapDenoiser, eps_mmse_curve,
                                             load_noise_map_denoiser)

    den = load_noise_map_denoiser(S.default_denoiser_path())
    start = NoiseMapDenoiser(DenoiserConfig(width=den.config.width, data_var=den.config.data_var,
                                            log_snr_range=den.config.log_snr_range)).eval()
    x0 = S.make_batch(range(8), size=64, seed=13, split="test")[0] * 2 - 1
    levels = [-2.0, 2.0, 5.0]
    with torch.no_grad():
        trained, gauss = eps_mmse_curve(den, x0, levels, draws=1), eps_mmse_curve(start, x0, levels, draws=1)
    assert trained[0] <= gauss[0] * 1.05                 # noisy end: both near the optimum
    assert (trained[1:] < 0.5 * gauss[1:]).all(), (trained, gauss)   # clean end: structure learnt


def _background_noised(n: int, std: float, seed: int = 11) -> tuple:
    """``n`` test images of an unseen world seed with Gaussian noise of ``std`` on the background only."""
    g = torch.Generator().manual_seed(0)
    xs, ys = [], []
    for i in range(n):
        img, label, mask = S.generate(i, 64, seed, "test")
        x = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
        bg = torch.from_numpy(~mask).float()
        xs.append((x + std * torch.randn(x.shape, generator=g) * bg).clamp(0, 1))
        ys.append(label)
    return torch.stack(xs), torch.tensor(ys)


def test_robust_classifier_is_accurate_and_keeps_its_prediction_under_background_noise(shipped) -> None:
    """The VP-noise-augmented model: >= 95% on clean unseen images, and still >= 90% when the background
    alone gets noise of std 0.2, where the clean-trained model falls to near chance (the reason FDA and
    DiffIB cannot put noise on its background; docs/synthetic.md)."""
    robust = load_classifier("synthetic-robust")
    assert robust.classes == list(S.CLASS_NAMES) and set(robust.companions) >= {"score_model", "denoiser"}
    x, y = S.make_batch(range(400), size=64, seed=11, split="test")
    noisy, ny = _background_noised(200, 0.2)
    with torch.no_grad():
        assert (robust(x).argmax(1) == y).float().mean() >= 0.95
        assert (robust(noisy).argmax(1) == ny).float().mean() >= 0.9
        assert (shipped(noisy).argmax(1) == ny).float().mean() <= 0.5
    assert load_classifier("synthetic").name == shipped.name
