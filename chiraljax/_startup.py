"""What `import chiraljax` does to Python's cyclic garbage collector: pause it while the package
(and JAX with it) loads, then freeze what was loaded.

Loading JAX, equinox and chiraljax creates a few hundred thousand long-lived objects. With the
collector running, the import triggers full collections over all of them, and every later full
collection (in a user's optimisation loop, say) walks them again: measured on the anchor
problem, import plus a first cached `simulate` 1.04 s with the collector as it is, 0.85 s with
it paused during the import and the loaded objects frozen (`gc.freeze`: moved to a permanent
generation that collections skip; they live as long as the process anyway). Objects the user
created before importing chiraljax are frozen with them; only cycles among those would then
wait for the process's end.
"""

from __future__ import annotations

import gc

_RESUME = gc.isenabled()
gc.disable()


def finish() -> None:
    """Freeze what the import loaded and resume the collector if it was running (called by
    `chiraljax/__init__.py` at the end of its import, or when the import fails)."""
    gc.freeze()
    if _RESUME:
        gc.enable()
