"""Exceptions with one-line messages that name the problem.

``UsageError`` is for things the caller can fix (bad option, bad input, unknown
name); the command line turns it into exit code 2.
"""
from __future__ import annotations


class FisherAttrError(Exception):
    """Base class of every error this library raises on purpose."""


class UsageError(FisherAttrError, ValueError):
    """The caller asked for something invalid (option, input, name)."""


class InputError(UsageError):
    """An image tensor, file or target that cannot be used."""
