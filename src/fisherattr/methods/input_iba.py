"""InputIBA (Zhang, Khakzar, Li, Navab, NeurIPS 2021): a bottleneck at the input, guided by a feature bottleneck.

Three stages per image (all in the classifier's normalised input space):

1. **Feature IBA** at the hidden layer (beta 20, no smoothing): a feature mask
   ``lam_f`` and its capacity.
2. **WGAN**: a generator made of an input mask ``m = sigmoid(theta)`` (``theta``
   initialised from the feature capacity map, channel-summed and resized) and a
   learnable per-channel noise ``N(mu, s^2)`` produces masked inputs
   ``m*x + (1-m)*(s*g + mu)``; their features at the layer are the *fake*
   samples. The *real* samples are the feature bottleneck's outputs
   ``lam_f*r + (1-lam_f)*(std*eps + mean)``. A small critic (weight clipping,
   RMSprop, as WGAN) tells them apart; the generator learns ``m`` so that the
   masked input's features look bottlenecked.
3. **Input IBA** (beta 20, 60 Adam steps, lr 1, 10 noise copies, alpha starts
   at 5, ``lam`` smoothed with sigma 1): ``z = lam*x + (1-lam)*eps``,
   ``eps ~ N(0,1)``, and the information term is the KL of the bottleneck to the
   prior given by the GAN mask: the bottleneck with mask ``m*lam``
   (:func:`~fisherattr.methods.bottleneck.bottleneck_kl` with ``prior_lam``).

Output: ``sigmoid(alpha)`` averaged over channels, ``[B,1,H,W]`` in [0,1].
Deviations from the official code (CPU budget): ``gan_steps`` critic steps
(default 60, official: 200 epochs of 200 samples), a smaller critic and a
larger generator learning rate; the real samples use the layer's estimated
noise rather than random per-subset Gaussians. See docs/baselines-info.md.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import UsageError
from .bottleneck import MIN_SAMPLES, MIN_STD, BottleneckEstimate, GaussianSmoothing, bottleneck_kl, capture_features
from .iba import _BottleneckBase, check_positive, fit_feature_bottleneck
from .registry import register


class Critic(nn.Module):
    """WGAN critic on feature maps ``[N,C,h,w]`` -> ``[N]`` (no sigmoid), initialised from a generator.

    Example:
        >>> c = Critic(8, width=16, generator=torch.Generator().manual_seed(0))
        >>> c(torch.randn(4, 8, 14, 14)).shape
        torch.Size([4])
    """

    def __init__(self, channels: int, width: int = 64, generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * width, 1))
        if generator is not None:  # PyTorch's default bound 1/sqrt(fan_in), drawn from our own stream
            with torch.no_grad():
                for m in self.modules():
                    if isinstance(m, (nn.Conv2d, nn.Linear)):
                        bound = 1.0 / math.sqrt(m.weight[0].numel())
                        for p in (m.weight, m.bias):
                            p.copy_((torch.rand(p.shape, generator=generator, device=generator.device) * 2 - 1)
                                    * bound)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.body(f).squeeze(1)


@register("input-iba", "inputiba")
class InputIBA(_BottleneckBase):
    """InputIBA (Zhang 2021): feature IBA -> WGAN input mask -> input bottleneck; [B,1,H,W] in [0,1].

    Args:
        layer, estimate, estimate_data, estimate_samples: the feature bottleneck's layer and
            statistics (as for ``iba``; default layer for EfficientNet-Lite0: ``net._blocks.7``).
        feat_beta, feat_steps: feature IBA (paper: beta 20, 10 steps, no smoothing).
        beta, steps, lr, noise_copies, init_alpha, sigma: input IBA (paper: 20, 60, 1, 10, 5, 1).
        gan_steps: critic updates (the CPU-budget knob; default 60).
        gan_critic_iter: critic updates per generator update (default 3; paper 5).
        gan_batch: samples per GAN step (default 8; paper 32).
        gan_lr: critic RMSprop learning rate (paper 5e-5; default 5e-4 for the shorter run).
        gan_mask_lr: generator mask RMSprop learning rate (paper 0.003; default 0.03).
        gan_clip: critic weight clipping (paper 0.1).

    Example:
        >>> m = InputIBA(model, estimate="lite0-blocks7.safetensors")   # doctest: +SKIP
        >>> maps = m.attribute(x)                                        # doctest: +SKIP
    """

    lite_block = 7  # measured better than IBA's block 4 for InputIBA on EfficientNet-Lite0
    default_stride = 16  # generic models: the stride of block 7

    def __init__(self, model: nn.Module, *, layer: Optional[str] = None, estimate: Optional[str] = None,
                 feat_beta: float = 20.0, feat_steps: int = 10, beta: float = 20.0, steps: int = 60,
                 lr: float = 1.0, noise_copies: int = 10, init_alpha: float = 5.0, sigma: float = 1.0,
                 gan_steps: int = 60, gan_critic_iter: int = 3, gan_batch: int = 8, gan_lr: float = 5e-4,
                 gan_mask_lr: float = 0.03, gan_clip: float = 0.1, estimate_data: Optional[str] = None,
                 estimate_samples: int = MIN_SAMPLES, seed: int = 0, internal_batch_size: int = 20,
                 progress: bool = False) -> None:
        for name, v in (("feat_beta", feat_beta), ("beta", beta), ("sigma", sigma)):
            check_positive(name, v, allow_zero=True)
        for name, v in (("lr", lr), ("gan_lr", gan_lr), ("gan_mask_lr", gan_mask_lr), ("gan_clip", gan_clip)):
            check_positive(name, v)
        for name, v in (("feat_steps", feat_steps), ("steps", steps), ("noise_copies", noise_copies),
                        ("gan_critic_iter", gan_critic_iter), ("gan_batch", gan_batch)):
            check_positive(name, v, integer=True)
        check_positive("gan_steps", gan_steps, integer=True, allow_zero=True)
        if not isinstance(init_alpha, (int, float)) or not math.isfinite(init_alpha):
            raise UsageError(f"init_alpha must be a finite number, got {init_alpha!r}")
        super().__init__(model, layer=layer, estimate=estimate, estimate_data=estimate_data,
                         estimate_samples=estimate_samples, seed=seed, internal_batch_size=internal_batch_size,
                         progress=progress)
        self.feat_beta, self.feat_steps = float(feat_beta), int(feat_steps)
        self.beta, self.steps, self.lr, self.noise_copies = float(beta), int(steps), float(lr), int(noise_copies)
        self.init_alpha, self.sigma = float(init_alpha), float(sigma)
        self.gan_steps, self.gan_critic_iter, self.gan_batch = int(gan_steps), int(gan_critic_iter), int(gan_batch)
        self.gan_lr, self.gan_mask_lr, self.gan_clip = float(gan_lr), float(gan_mask_lr), float(gan_clip)

    # ------------------------------------------------------------------ spaces
    def _to_net(self, x: torch.Tensor) -> torch.Tensor:
        norm = getattr(self.model, "normalize", None)
        return norm(x) if callable(norm) else x

    def _from_net(self, z: torch.Tensor) -> torch.Tensor:
        den = getattr(self.model, "denormalize", None)
        return den(z) if callable(den) else z

    # ------------------------------------------------------------------ stages
    def _gan_mask(self, x: torch.Tensor, lam_f: torch.Tensor, cap_f: torch.Tensor, est: BottleneckEstimate,
                  g: torch.Generator) -> torch.Tensor:
        """Stage 2: the generator's input mask ``m`` ``[1,3,H,W]`` in (0,1)."""
        h, w = x.shape[-2:]
        xn = self._to_net(x)
        c = xn.shape[1]
        init = F.interpolate(cap_f.sum(1, keepdim=True), size=(h, w), mode="bilinear", align_corners=False)
        theta = init.expand(1, c, h, w).clone().requires_grad_(True)
        mu = torch.zeros(1, c, 1, 1, device=x.device, requires_grad=True)
        sd = torch.ones(1, c, 1, 1, device=x.device, requires_grad=True)
        if self.gan_steps == 0:
            return torch.sigmoid(theta).detach()
        with torch.no_grad():
            r = capture_features(self.model, self._layer, x)
        mean, std = est.mean.to(r), est.std.to(r).clamp_min(MIN_STD)
        critic = Critic(r.shape[1], generator=g).to(r.device)
        opt_d = torch.optim.RMSprop(critic.parameters(), lr=self.gan_lr)
        opt_g = torch.optim.RMSprop([{"params": [mu], "lr": 0.1}, {"params": [sd], "lr": 0.05},
                                     {"params": [theta], "lr": self.gan_mask_lr}])
        n = self.gan_batch
        shape = (n,) + tuple(r.shape[1:])

        def fake(with_grad: bool) -> torch.Tensor:
            noise = torch.randn((n, c, h, w), generator=g, device=x.device) * sd + mu
            m = torch.sigmoid(theta)
            masked = self._from_net(m * xn + (1 - m) * noise)
            with torch.set_grad_enabled(with_grad):
                return capture_features(self.model, self._layer, masked)

        for step in range(self.gan_steps):
            real = lam_f * r + (1 - lam_f) * (std * torch.randn(shape, generator=g, device=r.device) + mean)
            train_g = step % self.gan_critic_iter == 0
            fk = fake(train_g)
            loss_d = critic(fk.detach()).mean() - critic(real).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            with torch.no_grad():
                for p in critic.parameters():
                    p.clamp_(-self.gan_clip, self.gan_clip)
            if train_g:
                loss_g = -critic(fk).mean()
                gm, gs, gt = torch.autograd.grad(loss_g, [mu, sd, theta])
                mu.grad, sd.grad, theta.grad = gm, gs, gt
                opt_g.step()
                opt_g.zero_grad(set_to_none=True)
        return torch.sigmoid(theta).detach()

    def _input_bottleneck(self, x: torch.Tensor, t: torch.Tensor, prior: torch.Tensor,
                          g: torch.Generator) -> torch.Tensor:
        """Stage 3: optimise the input bottleneck; return ``sigmoid(alpha)`` ``[1,3,H,W]``."""
        xn = self._to_net(x)
        k = self.noise_copies
        smooth = GaussianSmoothing(self.sigma).to(x.device) if self.sigma > 0 else None
        alpha = torch.full_like(xn, self.init_alpha).requires_grad_(True)
        opt = torch.optim.Adam([alpha], lr=self.lr)
        zero, one = torch.zeros((), device=x.device), torch.ones((), device=x.device)
        tk = t.repeat(k)
        for _ in range(self.steps):
            lam = torch.sigmoid(alpha)
            lam = smooth(lam) if smooth is not None else lam
            eps = torch.randn((k,) + tuple(xn.shape[1:]), generator=g, device=x.device)
            z = lam * xn + (1 - lam) * eps
            ce = F.cross_entropy(self.model(self._from_net(z)), tk)
            info = bottleneck_kl(xn, lam, zero, one, prior_lam=prior * lam).mean()
            (grad,) = torch.autograd.grad(ce + self.beta * info, alpha)
            alpha.grad = grad
            opt.step()
            opt.zero_grad(set_to_none=True)
        return torch.sigmoid(alpha).detach()

    def explain_one(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All three stages for one image ``[1,3,H,W]``: (input mask, GAN mask, feature capacity map)."""
        est = self._estimate_for((x.shape[-2], x.shape[-1]))
        g = self.generator()
        lam_f, cap_f = fit_feature_bottleneck(self.model, self._layer, x, t, est, beta=self.feat_beta,
                                              steps=self.feat_steps, lr=self.lr, copies=self.noise_copies,
                                              init_alpha=self.init_alpha, smooth=None, generators=[g])
        prior = self._gan_mask(x, lam_f, cap_f, est, g)
        mask = self._input_bottleneck(x, t, prior, g)
        return mask, prior, cap_f

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = []
        for b in tqdm(range(images.shape[0]), desc="input-iba", disable=not self.progress):
            mask, _, _ = self.explain_one(images[b:b + 1], target[b:b + 1])
            out.append(mask.mean(1, keepdim=True))
        return torch.cat(out)
