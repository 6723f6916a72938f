"""Bad input is refused before any computation, with a `ValidationError` whose message names the
field and says how to fix it (DESIGN.md: errors early and in words)."""

from __future__ import annotations

import numpy as np
import pytest

import chiraljax as cj
from chiraljax import ValidationError


def two_qubits(**overrides) -> dict:
    """Keyword arguments of a valid two-qubit Network, with `overrides` applied."""
    kwargs = dict(
        emitters=[cj.Emitter("A"), cj.Emitter("B")],
        ports=[cj.Port("pA", "A", 0, 1.0), cj.Port("pB", "B", 1, 1.0)],
        initial={"A": 1.0},
    )
    kwargs.update(overrides)
    return kwargs


def build(**overrides) -> cj.Network:
    kwargs = two_qubits(**overrides)
    return cj.Network(kwargs.pop("emitters"), kwargs.pop("ports"), **kwargs)


def test_validation_error_is_a_value_error():
    assert issubclass(ValidationError, ValueError) and issubclass(ValidationError, cj.ChiralJaxError)


def test_unknown_emitter_in_port_is_refused_with_suggestion():
    with pytest.raises(ValidationError, match=r"Port 'pB': unknown emitter 'Bb' \(did you mean 'B'"):
        build(ports=[cj.Port("pA", "A", 0), cj.Port("pB", "Bb", 1)])


def test_unknown_emitter_in_coupling_is_refused():
    with pytest.raises(ValidationError, match=r"Coupling 'A'-'C': unknown emitter 'C'"):
        build(couplings=[cj.Coupling("A", "C", 0.1)])


def test_unknown_emitter_in_initial_state_is_refused():
    with pytest.raises(ValidationError, match=r"initial state names unknown emitter 'A1' \(did you mean 'A'"):
        build(initial={"A1": 1.0})


def test_unknown_control_is_refused():
    with pytest.raises(ValidationError, match=r"Port 'pA': unknown control 'emt' \(did you mean 'emit'"):
        build(
            ports=[cj.Port("pA", "A", 0, control="emt"), cj.Port("pB", "B", 1)], controls={"emit": cj.SechEmission(1.0)}
        )


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: cj.Port("p", "A", 0, rate=-0.5), r"Port 'p': rate must be >= 0"),
        (lambda: cj.Emitter("A", decay=-1e-3), r"Emitter 'A': decay must be >= 0"),
        (lambda: cj.Emitter("A", dephasing=-1e-3), r"Emitter 'A': dephasing must be >= 0"),
        (lambda: cj.Link(delay=-1.0), r"Link: delay must be >= 0"),
        (lambda: cj.Port("p", "A", 0, right_fraction=1.5), r"right_fraction must be <= 1"),
    ],
)
def test_negative_rates_and_fractions_are_refused(make, match):
    with pytest.raises(ValidationError, match=match):
        make()


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: cj.Port("p", "A", 0, rate="fast"), r"Port 'p': rate must be a number, got 'fast'"),
        (lambda: cj.Emitter("A", decay=None), r"Emitter 'A': decay must be a number, got None"),
        (lambda: cj.Coupling("A", "B", "strong"), r"strength must be a number, got 'strong'"),
    ],
)
def test_values_that_are_not_numbers_are_refused_by_name(make, match):
    with pytest.raises(ValidationError, match=match):
        make()


def test_transmission_above_one_is_refused():
    with pytest.raises(ValidationError, match=r"Link: transmission must be <= 1"):
        cj.Link(transmission=1.2)
    with pytest.raises(ValidationError, match=r"beam_splitter: transmission must lie in \[0, 1\]"):
        cj.beam_splitter(cj.Space.qubits(["q"]), 1.5)
    with pytest.raises(ValidationError, match=r"not a passive element"):
        cj.Scatterer("j", 0.5, reflection=0.8, transmission=0.8)


def test_non_unitary_scattering_matrix_is_refused():
    space = cj.Space.qubits(["q"])
    zero = cj.Operator.zero(space)
    with pytest.raises(ValidationError, match=r"S is not unitary.*beam splitter to a discarded channel"):
        cj.SLH(np.array([[1.0, 0.0], [0.0, 0.5]]), [zero, zero], zero)
    with pytest.raises(ValidationError, match=r"S is 2 x 2 but L has 1 entries"):
        cj.SLH(np.eye(2), [zero], zero)


def test_operators_on_different_spaces_are_refused():
    small, large = cj.Space.qubits(["a"]), cj.Space.qubits(["a", "b"])
    a = cj.Operator.constant(small, small.destroy("a"))
    b = cj.Operator.constant(large, large.destroy("a"))
    with pytest.raises(ValidationError, match=r"cannot combine operators on different spaces"):
        a + b
    with pytest.raises(ValidationError, match=r"cannot combine operators on different spaces"):
        a @ b
    with pytest.raises(ValidationError, match=r"different spaces"):
        cj.SLH.emitter(small, a) << cj.SLH.emitter(large, b)
    with pytest.raises(ValidationError, match=r"does not act on a space of dimension 2"):
        cj.Operator.constant(small, np.eye(4))


@pytest.mark.parametrize(
    "make,field",
    [
        (lambda: cj.SechEmission(float("nan")), "kappa"),
        (lambda: cj.SechAbsorption(1.0, t0=float("inf")), "t0"),
        (lambda: cj.SechMode(float("nan")), "kappa"),
        (lambda: cj.Gaussian(1.0, 0.0, float("nan")), "sigma"),
        (lambda: cj.Sampled(np.array([0.0, 1.0, 2.0]), np.array([0.0, np.nan, 1.0])), "values"),
        (lambda: cj.Halted(cj.SechEmission(1.0), float("nan")), "t_stop"),
    ],
)
def test_nan_in_pulse_parameters_is_refused(make, field):
    with pytest.raises(ValidationError, match=rf"parameter '{field}' contains NaN or infinity"):
        make()


def test_nonpositive_pulse_width_is_refused():
    with pytest.raises(ValidationError, match=r"SechEmission: kappa must be positive"):
        cj.SechEmission(0.0)


def test_unnormalised_initial_state_is_refused():
    with pytest.raises(ValidationError, match=r"norm\^2 0.5.*normalise them to 1"):
        build(initial={"A": 0.5, "B": 0.5})


def test_sector_too_small_is_refused():
    net = build()
    with pytest.raises(ValidationError, match=r"max_excitations must be >= 1"):
        cj.simulate(net, (0.0, 1.0), representation="sector", max_excitations=0)
    # an initial excitation plus an input photon need two excitations
    with_photon = build(inputs=[cj.PhotonInput("src", cj.SechMode(1.0))])
    with pytest.raises(
        ValidationError, match=r"need 2 excitation\(s\) but the sector allows only 1; raise max_excitations"
    ):
        cj.simulate(with_photon, (-5.0, 5.0), representation="sector", max_excitations=1)


def test_unknown_parameter_name_gets_a_suggestion():
    net = build(links=[cj.Link(transmission=0.5)])
    with pytest.raises(
        ValidationError, match=r"no parameter 'links.0.transmision' \(did you mean 'links.0.transmission'"
    ):
        net.with_parameters({"links.0.transmision": 0.3})
    with pytest.raises(ValidationError, match=r"no parameter 'ports.pC.rate'.*network.parameters\(\)"):
        net.with_parameters({"ports.pC.rate": 0.3})


def test_new_parameter_values_are_checked():
    """Concrete values given to with_parameters must be finite and physical."""
    net = build(links=[cj.Link(transmission=0.5)])
    with pytest.raises(ValidationError, match=r"parameter 'links.0.transmission' must be <= 1.0, got 1.5"):
        net.with_parameters({"links.0.transmission": 1.5})
    with pytest.raises(ValidationError, match=r"parameter 'emitters.A.decay' must be finite"):
        net.with_parameters({"emitters.A.decay": float("nan")})
    with pytest.raises(ValidationError, match=r"parameter 'ports.pA.rate' must be >= 0.0"):
        net.with_parameters({"ports.pA.rate": -0.1})
    assert float(net.with_parameters({"links.0.transmission": 1.0}).parameters()["links.0.transmission"]) == 1.0


def test_with_parameters_changes_the_named_leaf_only():
    """Every named parameter, nested pulse fields included, is replaced where `parameters()`
    reads it, in the dtype it had, and nothing else moves."""
    net = build(
        links=[cj.Link(transmission=0.5)],
        controls={"drive": cj.Halted(cj.SechEmission(1.0, 0.2), 3.0)},
        couplings=[cj.Coupling("A", "B", 0.1)],
    )
    before = net.parameters()
    assert "controls.drive.pulse.kappa" in before
    for k, name in enumerate(before):
        value = 0.25 + 0.01 * k
        after = net.with_parameters({name: value}).parameters()
        assert set(after) == set(before)
        for other, old in before.items():
            new = after[other]
            assert np.result_type(new) == np.result_type(old), other
            assert np.allclose(new, value if other == name else old), (name, other)


def test_structural_mistakes_are_refused():
    with pytest.raises(ValidationError, match=r"emitter names must be unique"):
        build(emitters=[cj.Emitter("A"), cj.Emitter("A")])
    with pytest.raises(ValidationError, match=r"two elements share a position"):
        build(ports=[cj.Port("pA", "A", 0), cj.Port("pB", "B", 0)])
    with pytest.raises(ValidationError, match=r"2 elements on the line need 1 links, got 2"):
        build(links=[cj.Link(), cj.Link()])
    with pytest.raises(ValidationError, match=r"an emitter cannot couple to itself"):
        cj.Coupling("A", "A", 0.1)


def test_bad_simulate_arguments_are_refused():
    net = build()
    with pytest.raises(ValidationError, match=r"representation must be one of"):
        cj.simulate(net, (0.0, 1.0), representation="exact")
    with pytest.raises(ValidationError, match=r"t_span must be finite with t1 > t0"):
        cj.simulate(net, (1.0, 0.0))
    with pytest.raises(ValidationError, match=r"network must be a Network"):
        cj.simulate({"emitters": []}, (0.0, 1.0))


def test_markov_solvers_refuse_reflections():
    net = build(
        ports=[cj.Port("pA", "A", 0), cj.Port("pB", "B", 2)],
        scatterers=[cj.Scatterer("m", 1, reflection=0.3)],
        links=[cj.Link(), cj.Link()],
    )
    with pytest.raises(ValidationError, match=r"non-Markovian; use representation='delay'"):
        cj.simulate(net, (0.0, 1.0), representation="sector")


def test_concrete_numbers_stay_on_the_host_until_a_computation_reads_them():
    """Every concrete number of a network (and of one made by `with_parameters`) is a NumPy
    array: placing 42 numbers on the device one by one made building a two-module network
    take 4.4 ms. Inside a trace the replaced number is the tracer itself."""
    import jax

    from chiraljax.experiment._references import chiral_transfer_network

    net = chiral_transfer_network(2, 0.6, 1e-3, 1e-3)
    changed = net.with_parameters({"links.1.transmission": 0.5, "ports.pA0.rate": 0.9})
    for network in (net, changed):
        leaves = jax.tree.leaves(network)
        assert len(leaves) > 40
        assert all(isinstance(x, np.ndarray) for x in leaves)
    assert float(changed.parameters()["links.1.transmission"]) == 0.5
    traced = jax.jit(
        lambda eta: net.with_parameters({"links.1.transmission": eta}).parameters()["links.1.transmission"]
    )
    assert float(traced(0.25)) == 0.25
