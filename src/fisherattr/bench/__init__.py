"""Running methods x metrics over a data set: resumable runner, results files, plots, report."""
from .report import render
from .results import build_results, summarise
from .runner import EvalConfig, Evaluation, resolve_metrics
from .store import ResultStore

__all__ = ["EvalConfig", "Evaluation", "ResultStore", "build_results", "render", "resolve_metrics", "summarise"]
