"""Errors the built-in apps raise: a process ends ``crashed`` with one of these as the last line.

Rule: the message says what went wrong and what to do next (as every ``LlmasosError``); bad arguments
found before the process starts are ``InvalidArguments`` (from ``App.bind``), not these.
"""

from __future__ import annotations

from llmasos.errors import LlmasosError


class AppError(LlmasosError):
    """A built-in app could not do what it was asked (its input, or a child it ran, was at fault)."""


class NoInput(AppError):
    """The app was given no text to work on (no arguments, and nothing on stdin)."""


class TooMuchInput(AppError):
    """The input is larger than the app may handle with the rights it holds."""


class ChildFailed(AppError):
    """A child process the app spawned did not exit cleanly."""
