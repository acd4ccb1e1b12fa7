"""The root of every error llmasos raises on purpose.

Rule: a message says what went wrong and what to do next; the shell and the CLI show it as is.
"""

from __future__ import annotations


class LlmasosError(Exception):
    """Something llmasos refused or could not do; the message is meant for the user."""
