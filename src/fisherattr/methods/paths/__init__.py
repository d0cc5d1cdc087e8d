"""Path methods: IG, Guided IG, Blur IG and IDGI on any path.

Importing this package registers ``ig``, ``guided-ig``, ``blur-ig``,
``idgi-ig``, ``idgi-guided-ig`` and ``idgi-blur-ig``. To put IDGI (or any
rule) on a path of your own, subclass :class:`Path` and wrap it in
:class:`PathAttribution` (see ``docs/paths.md``).
"""
from .blur import BlurPath, gaussian_blur, gaussian_kernel1d
from .core import IDGI, RULES, Path, PointAverage, Riemann, Rule, ScoreFunction, Segment, Trapezoid, integrate, make_rule, \
    resolve_baseline
from .guided import SELECTIONS, GuidedIGPath
from .methods import IG, IG_RULES, IDGIBlurIG, IDGIGuidedIG, IDGIIG, BlurIG, GuidedIG, PathAttribution
from .straight import StraightLinePath

__all__ = ["BlurPath", "gaussian_blur", "gaussian_kernel1d", "IDGI", "RULES", "Path", "PointAverage", "Riemann",
           "Rule", "ScoreFunction", "Segment", "Trapezoid", "integrate", "make_rule", "resolve_baseline",
           "GuidedIGPath", "SELECTIONS", "IG", "IG_RULES", "IDGIBlurIG", "IDGIGuidedIG", "IDGIIG", "BlurIG", "GuidedIG", "PathAttribution",
           "StraightLinePath"]
