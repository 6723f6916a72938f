"""Exceptions raised by chiraljax.

Every error a user can trigger by a bad argument or a bad file is a `ValidationError` whose
message names the offending field and says how to fix it. The CLI maps it to exit code 2.
"""

from __future__ import annotations


class ChiralJaxError(Exception):
    """Base class of all chiraljax errors."""


class ValidationError(ChiralJaxError, ValueError):
    """A model, argument or file was rejected before any computation started."""


def require(condition: bool, message: str) -> None:
    """Raise `ValidationError(message)` unless `condition` holds.

    **Arguments:**

    - `condition`: a concrete Python boolean (never a traced value).
    - `message`: what is wrong, naming the field, and how to fix it.
    """
    if not condition:
        raise ValidationError(message)
