"""Localisation metrics: 1.0 for a map equal to the region, chance for random maps, hand examples."""
from __future__ import annotations

import numpy as np
import torch

from fisherattr.metrics.grid_pointing import cell_mask, grid_pointing
from fisherattr.metrics.localisation import best_f1, ehr, pointing_game, region_ratio, roc_auc, wsl

H = W = 32


def region_batch(n: int = 1) -> torch.Tensor:
    r = torch.zeros(n, H, W, dtype=torch.bool)
    r[:, 8:20, 4:28] = True  # 288 of 1024 pixels
    return r


def random_maps(n: int, c: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, H, W, generator=torch.Generator().manual_seed(seed))


def test_perfect_map_scores_one_everywhere():
    reg = region_batch()
    m = reg.float().unsqueeze(1).expand(1, 3, H, W)
    assert float(ehr(m, reg)[0]) == 1.0
    assert float(pointing_game(m, reg)[0]) == 1.0
    assert float(region_ratio(m, reg, 3 * 288)[0]) == 1.0
    w = wsl(m, reg)
    assert (float(w["auc"][0]), float(w["f1"][0]), float(w["mae"][0])) == (1.0, 1.0, 0.0)


def test_random_maps_score_near_chance():
    n = 64
    reg = region_batch(n)
    share = 288 / 1024
    maps = random_maps(n)
    assert abs(float(ehr(maps, reg).mean()) - share) < 0.03
    assert abs(float(region_ratio(maps, reg, 300).mean()) - share) < 0.03
    assert abs(float(wsl(maps, reg)["auc"].mean()) - 0.5) < 0.03
    # pointing game: chance = share of the region dilated by the tolerance
    hits = pointing_game(random_maps(400, seed=1), region_batch(400), tolerance=0)
    assert abs(float(hits.mean()) - share) < 0.07


def test_pointing_tolerance_is_in_pixels():
    m = torch.zeros(1, 1, H, W)
    m[0, 0, 8, 0] = 1.0  # 4 px left of the region (x0 = 4)
    reg = region_batch()
    assert float(pointing_game(m, reg, tolerance=3)[0]) == 0.0
    assert float(pointing_game(m, reg, tolerance=4)[0]) == 1.0
    assert float(pointing_game(m, reg)[0]) == 1.0  # default 15 px


def test_ehr_by_hand():
    # 4 pixels, values 4,3,2,1; region = the pixel valued 3 and the one valued 1
    m = torch.tensor([[4.0, 3.0], [2.0, 1.0]]).view(1, 1, 2, 2)
    reg = torch.tensor([[False, True], [False, True]]).view(1, 2, 2)
    qs = (0.0, 0.5, 1.0)  # thresholds 1, 2.5, 4 -> {all}: 4/10, {4,3}: 3/7, {4}: 0
    assert abs(float(ehr(m, reg, quantiles=qs)[0]) - (0.4 + 3 / 7 + 0) / 3) < 1e-12


def test_roc_auc_and_f1_by_hand():
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    y = np.array([1, 0, 1, 0, 0], bool)
    # positive pairs ranked above negatives: (0.9 > all 3) + (0.7 > 0.6, 0.5) = 5 of 6
    assert abs(roc_auc(s, y) - 5 / 6) < 1e-12
    # cuts: k=1 F1 = 2/3; k=3 (tp 2) F1 = 4/5
    assert abs(best_f1(s, y) - 0.8) < 1e-12
    # ties are cut together: all-equal scores give one cut with everything selected
    assert abs(best_f1(np.ones(5), y) - 2 * 2 / (5 + 2)) < 1e-12
    assert abs(roc_auc(np.ones(5), y) - 0.5) < 1e-12


def test_grid_pointing_cell_map_is_one_random_is_a_quarter():
    cells = list(range(4))
    perfect = torch.stack([cell_mask(H, W, k).float() for k in cells]).unsqueeze(1)
    assert torch.equal(grid_pointing(perfect, cells), torch.ones(4, dtype=torch.float64))
    rnd = random_maps(4 * 32, c=1) - 0.2
    score = grid_pointing(rnd, cells * 32)
    assert abs(float(score.mean()) - 0.25) < 0.02
    neg = -perfect  # no positive mass at all
    assert torch.equal(grid_pointing(neg, cells), torch.zeros(4, dtype=torch.float64))
