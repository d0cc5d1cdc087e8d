"""The two flags every command that loads a classifier takes: ``--allow-download`` and ``--trust-model-code``.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_model_flags(p)
    >>> model_kwargs(p.parse_args(["--trust-model-code"]))
    {'allow_download': False, 'trust_code': True}
"""
from __future__ import annotations

import argparse
from typing import Any, Dict


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """Add ``--allow-download`` and ``--trust-model-code`` to a command's parser."""
    p.add_argument("--allow-download", action="store_true",
                   help="let torchvision:/timm: models fetch weights missing from the local cache")
    p.add_argument("--trust-model-code", action="store_true",
                   help="run code a model file names or is (a folder's own builder, companions outside the "
                        "folder, a TorchScript file); only for model files you trust")


def model_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    """``load_classifier`` keywords from the parsed flags."""
    return {"allow_download": bool(getattr(args, "allow_download", False)),
            "trust_code": bool(getattr(args, "trust_model_code", False))}
