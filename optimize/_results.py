"""The result vocabulary the optimisers share: `OptimizeResult`.

`gradient_optimize` returns a `GradientResult`, `ppo_optimize` a `PPOResult`; both are
`OptimizeResult`s, so comparisons and reports read one set of names whatever the method. The
names each result had before stay readable as aliases (`older_name`).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
from jaxtyping import Array, Float

__all__ = ["OptimizeResult", "older_name"]


class OptimizeResult(eqx.Module):
    """Outcome of an optimiser run, under the names every method shares.

    - `best_x`: the best parameters seen, shape (P,).
    - `best_value`: their noiseless objective value (the score or reward maximised).
    - `final_x`: the parameters the run ended at (the last iterate; PPO: its final policy
      mean), shape (P,).
    - `history`: the method's per-iteration record.
    - `evaluations`: simulator evaluations spent.
    - `iterations`: optimiser steps (PPO: epochs) completed.
    - `stop_reason`: why the run stopped (the method's own words, e.g. `"budget"`).
    """

    best_x: Float[Array, " P"]
    best_value: float
    final_x: Float[Array, " P"]
    history: Any
    evaluations: int
    iterations: int
    stop_reason: str


def older_name(name: str) -> property:
    """A read-only alias of the field `name`, for the name a result had before `OptimizeResult`."""
    return property(lambda self: getattr(self, name), doc=f"The older name of `{name}`.")
