"""What wrote a file: the chiraljax version, the JAX version and the precision, stamped into
every file chiraljax writes (network files, simulate results, sweep results, reports, figures),
so that a number can be traced to the code that computed it."""

from __future__ import annotations

import functools


@functools.cache
def provenance() -> dict[str, str]:
    """{"chiraljax": version, "jax": version, "precision": "float64" or "float32"}."""
    import jax

    from chiraljax import __version__
    from chiraljax._precision import PRECISION

    return {"chiraljax": __version__, "jax": jax.__version__, "precision": PRECISION}


def software() -> str:
    """The one-line form, for figure metadata: "chiraljax 0.1.0 (jax 0.10.2, float64)"."""
    p = provenance()
    return f"chiraljax {p['chiraljax']} (jax {p['jax']}, {p['precision']})"
