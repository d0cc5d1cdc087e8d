"""The shared maths of FDA and DiffIB: schedules, quadrature, information curves (METHODS.md 1)."""
from .information import (draw_noise, fisher_curve, gaussian_noise, integral_to, mmse_curve, retained_grid,
                          retained_pixelwise)
from .quadrature import nodes, variable
from .schedules import DDPMSchedule, Schedule, VESchedule, VPSchedule, get_schedule, vp_perturb

__all__ = ["DDPMSchedule", "Schedule", "VESchedule", "VPSchedule", "draw_noise", "fisher_curve", "gaussian_noise",
           "get_schedule", "integral_to", "mmse_curve", "nodes", "retained_grid", "retained_pixelwise", "variable",
           "vp_perturb"]
