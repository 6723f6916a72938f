"""Reference networks that tests, benchmarks and documentation share: one home each.

`chiral_transfer_network(modules)` is the peer-benchmark problem: M chiral modules on one
waveguide, in order 0 .. M-1 from left to right. Each module is two qubits A, B a quarter
wavelength apart (propagation phase pi/2), each port of rate 1 split equally between the two
directions; module 0 emits a sech photon (kappa = 1) by gamma_e(t) = (1 + tanh(t/2))/2 and
module 1 absorbs it by the time reverse, each with a direct coupling -gamma(t)/2 that cancels
the waveguide-mediated exchange (docs/theory.md section 2); modules 2 .. M-1 are idle (rate 0)
but part of the state space. Neighbouring modules are joined by a link of power transmission
`transmission`; every qubit has T1 decay `decay` and pure dephasing `dephasing`. Module 0
starts in (|eg> + i|ge>)/sqrt 2. The excitation stored in module 1 at t = 12 from t = -12 is
0.5770813 for the defaults, for every M (QuTiP and dynamiqs agree, bench/peers.py).
"""

from __future__ import annotations

import numpy as np

from chiraljax.network._network import Coupling, Emitter, Link, Network, Port
from chiraljax.network._pulses import SechAbsorption, SechEmission

#: The window of the transfer and the converged answer of the defaults.
TRANSFER_WINDOW = (-12.0, 12.0)
TRANSFER_REFERENCE = 0.577081321870


def chiral_transfer_network(
    modules: int = 2, transmission: float = 0.6, decay: float = 1e-3, dephasing: float = 1e-3
) -> Network:
    """The M-module chiral transfer network of the module docstring.

    **Arguments:**

    - `modules`: M >= 2.
    - `transmission`: power transmission eta of each link between neighbouring modules.
    - `decay`, `dephasing`: T1 decay rate and pure-dephasing rate of every qubit.

    **Returns:** the `Network`; links 2m (inside module m, phase pi/2) alternate with links
    2m + 1 (between modules m and m + 1, transmission eta).
    """
    emitters, ports, links, couplings = [], [], [], []
    controls = {"emit": SechEmission(1.0, 0.0), "absorb": SechAbsorption(1.0, 0.0)}
    for m in range(int(modules)):
        control = {0: "emit", 1: "absorb"}.get(m)
        for q in "AB":
            emitters.append(Emitter(f"{q}{m}", decay=decay, dephasing=dephasing))
            ports.append(Port(f"p{q}{m}", f"{q}{m}", 2 * m + (q == "B"), 1.0 if control else 0.0, control=control))
        links.append(Link(phase=np.pi / 2))
        if m < modules - 1:
            links.append(Link(transmission=transmission))
        if control:
            couplings.append(Coupling(f"A{m}", f"B{m}", -0.5, control=control))
    return Network(
        emitters,
        ports,
        links=links,
        couplings=couplings,
        controls=controls,
        initial={"A0": 1 / np.sqrt(2), "B0": 1j / np.sqrt(2)},
    )
