"""The Markov kernel compiles per size, not per network, and methods select the solver.

The symbolic model of a network is lowered to tables of numbers (`chiraljax.algebra._lowering`), so a
network of another topology with the same sizes, or another pulse of the same family, runs the
program compiled for the first one. Counted in compilations, never in seconds.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import RECEIVER, TRANSFER_WINDOW, chiral_link

import chiraljax as cj

SAVES = 17
_TRACES: list[str] = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: _TRACES.append(event) if event == "/jax/core/compile/jaxpr_trace_duration" else None
)


def compiled() -> int:
    """Programs traced for compilation in this process so far, whatever path the call took (a
    program found in the persistent caches is still traced once per process or loaded)."""
    return len(_TRACES)


def receiver_population(net: cj.Network, **kw) -> float:
    res = cj.simulate(net, TRANSFER_WINDOW, n_save=SAVES, **kw)
    return float(res.final_population(*RECEIVER))


def rewired(net: cj.Network) -> cj.Network:
    """The same sizes and pulse families, another topology: the modules' roles swapped (the
    right module emits towards the left one), other link numbers, the couplings listed in the
    other order, B1 excited."""
    swap = {"emit": "absorb", "absorb": "emit"}
    ports = [cj.Port(p.name, p.emitter, p.position, p.rate, control=swap[p.control]) for p in net.ports]
    couplings = [cj.Coupling(c.a, c.b, c.strength, control=swap[c.control]) for c in net.couplings[::-1]]
    controls = {"emit": cj.SechEmission(1.2, -0.3), "absorb": cj.SechAbsorption(0.8, 0.4)}
    links = [cj.Link(phase=0.3), cj.Link(transmission=0.9, phase=1.0), cj.Link(phase=-0.4)]
    return cj.Network(net.emitters, ports, links=links, couplings=couplings, controls=controls, initial={"B1": 1.0})


def test_other_topology_and_pulses_of_the_same_sizes_do_not_compile_again():
    net = chiral_link()
    p0 = receiver_population(net)
    receiver_population(net)
    after_first = compiled()
    p1 = float(cj.simulate(rewired(net), TRANSFER_WINDOW, n_save=SAVES).final_population("A0", "B0"))
    p2 = receiver_population(net.with_parameters({"controls.emit.kappa": 1.3, "links.1.transmission": 0.4}))
    assert compiled() == after_first
    # the answers are those of three different problems
    assert abs(p0 - 0.5770813) < 1e-6
    assert abs(p1 - p0) > 1e-3 and abs(p2 - p0) > 1e-3


def test_a_direct_coupling_more_does_not_compile_again():
    """The counts of couplings (and of ports, links, emitters) are padded to a multiple of four
    in the parameters the kernel takes, so a coupling added to a pair leaves its program as it is."""

    def pair(couplings) -> cj.Network:
        ports = [cj.Port("pa", "a", 0, 1.0), cj.Port("pb", "b", 1, 1.0)]
        return cj.Network([cj.Emitter("a"), cj.Emitter("b")], ports, couplings=couplings, initial={"a": 1.0})

    def excited(net: cj.Network) -> np.ndarray:
        return np.asarray(cj.simulate(net, (0.0, 4.0), n_save=SAVES).populations)[-1]

    bare = excited(pair([]))
    before = compiled()
    coupled = excited(pair([cj.Coupling("a", "b", 0.4)]))
    assert compiled() == before
    assert np.abs(coupled - bare).max() > 1e-3  # the coupling acts,
    # and two couplings add up (more Hamiltonian entries: a size, compiled anew)
    twice = excited(pair([cj.Coupling("a", "b", 0.3), cj.Coupling("a", "b", 0.1)]))
    np.testing.assert_allclose(twice, coupled, atol=1e-9)


def test_method_objects_match_the_keyword_shorthand():
    net = chiral_link()
    by_method = receiver_population(net, method=cj.Sector(rtol=1e-9, atol=1e-11))
    by_keywords = receiver_population(net, representation="sector", rtol=1e-9, atol=1e-11)
    assert abs(by_method - by_keywords) < 1e-13  # one problem (equal bits on a CPU; a GPU build may differ)
    fixed = receiver_population(net, method=cj.Sector(steps=48 * (SAVES - 1) // 16))
    assert abs(fixed - by_method) < 1e-6


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda: cj.Sector(rtol=0.0), "rtol and atol must be positive"),
        (lambda: cj.Sector(steps=0), "steps must be a positive integer"),
        (lambda: cj.Full(max_steps=0), "max_steps must be a positive integer"),
        (lambda: cj.Delay(dt=-1.0), "dt must be positive"),
        (lambda: cj.Sector(adjoint="backward"), "adjoint must be one of"),
        (lambda: cj.Full(checkpoints=0), "checkpoints must be a positive integer"),
        (lambda: cj.simulate(chiral_link(), TRANSFER_WINDOW, method=cj.Sector(), rtol=1e-6), "not both"),
        (lambda: cj.simulate(chiral_link(), TRANSFER_WINDOW, method="sector"), "method must be cj.Sector"),
        (lambda: cj.simulate(chiral_link(), TRANSFER_WINDOW, rtool=1e-6), "unknown option"),
    ],
)
def test_bad_methods_are_refused_in_words(bad, message):
    with pytest.raises(cj.ValidationError, match=message):
        bad()


def test_a_solve_that_runs_out_of_steps_says_so():
    with pytest.raises(cj.ValidationError, match="max_steps"):
        receiver_population(chiral_link(), method=cj.Sector(max_steps=5))


def test_lean_adaptive_stepper_agrees_with_the_converged_answer_at_every_save():
    """The continuous extension gives the traces between steps: the populations at the save
    times agree with a tight fixed-step 8th-order solve to 1e-7."""
    net = chiral_link()
    loose = cj.simulate(net, TRANSFER_WINDOW, n_save=SAVES)
    tight = cj.simulate(net, TRANSFER_WINDOW, n_save=SAVES, method=cj.Sector(steps=16 * 48))
    np.testing.assert_allclose(np.asarray(loose.populations), np.asarray(tight.populations), atol=1e-7)
    np.testing.assert_allclose(np.asarray(loose.outputs), np.asarray(tight.outputs), atol=1e-7)
    assert float(loose.conservation_error) < 1e-8


@pytest.mark.parametrize(
    "ts, message",
    [
        ([0.0, 2.0, 1.0], "increasing order"),
        ([-13.0, 0.0], "must lie in t_span"),
        ([[0.0, 1.0]], "1-D array"),
        ([0.0, float("nan")], "finite"),
    ],
)
def test_bad_save_times_are_refused(ts, message):
    with pytest.raises(cj.ValidationError, match=message):
        cj.simulate(chiral_link(), TRANSFER_WINDOW, ts=np.asarray(ts))


def test_a_reflecting_end_is_refused_even_when_the_structure_is_cached():
    """The plan is cached by structure; a value that makes the network non-Markovian is still
    checked on every call."""
    net = chiral_link()
    receiver_population(net, representation="sector")
    reflecting = cj.Network(
        net.emitters,
        net.ports,
        links=net.links,
        couplings=net.couplings,
        controls=net.controls,
        initial=net.initial,
        end_reflections=(0.5, 0.0),
    )
    with pytest.raises(cj.ValidationError, match="reflecting waveguide ends"):
        receiver_population(reflecting, representation="sector")


def test_a_network_rebuilt_from_its_leaves_reuses_the_plan_correctly():
    """The plan is cached by tree structure; JAX rebuilds dicts in sorted key order, so a
    network whose initial state and controls were given in another order must iterate in that
    order too (it once gave 0.0006 for 0.31 when the copy ran after the original)."""
    a, b = cj.Emitter("b", detuning=0.3), cj.Emitter("a")
    ports = [cj.Port("pb", "b", 0.0, 1.0, control="zeta"), cj.Port("pa", "a", 1.0, 1.0, control="alpha")]
    controls = {"zeta": cj.Constant(1.0), "alpha": cj.Constant(0.25)}  # not in sorted order
    net = cj.Network([a, b], ports, controls=controls, initial={"b": 0.6, "a": 0.8j})  # not sorted either
    copy = jax.tree.map(lambda leaf: leaf, net)
    results = [cj.simulate(n, (0.0, 3.0), n_save=5).populations for n in (net, copy, net)]
    for res in results[1:]:
        np.testing.assert_allclose(np.asarray(res), np.asarray(results[0]), rtol=0, atol=1e-12)
    assert float(results[0][0, 0]) == pytest.approx(0.36)  # emitter "b" starts with |0.6|^2


def test_a_repeated_call_goes_straight_to_the_kernel(monkeypatch):
    """The same (immutable) network asked again with the same settings is not checked or
    planned again; another network object, other settings or a traced network are."""
    import chiraljax.solve._simulate as simulate_module

    net = chiral_link()
    first = cj.simulate(net, TRANSFER_WINDOW, n_save=5)
    checks = []
    original = simulate_module.check_markov
    monkeypatch.setattr(simulate_module, "check_markov", lambda *a: checks.append(1) or original(*a))
    again = cj.simulate(net, TRANSFER_WINDOW, n_save=5)
    # the same numbers; on a GPU the first call's build and the one that takes over may round
    # the last bit differently
    np.testing.assert_allclose(np.asarray(again.populations), np.asarray(first.populations), rtol=1e-12, atol=1e-15)
    assert checks == []
    cj.simulate(net, TRANSFER_WINDOW, n_save=6)
    cj.simulate(chiral_link(), TRANSFER_WINDOW, n_save=5)
    assert len(checks) == 2
    # under jit the network is traced: checked at every trace, never kept
    population = jax.jit(
        lambda eta: cj.simulate(
            net.with_parameters({"links.1.transmission": eta}), TRANSFER_WINDOW, n_save=5
        ).final_population(*RECEIVER)
    )
    # another compiled program of the same solve: rounding may differ, and with it an adaptive
    # step or two, so the two agree to the default tolerance (atol 1e-10)
    assert abs(float(population(0.6)) - float(first.final_population(*RECEIVER))) < 1e-10
    assert np.isfinite(float(population(0.5))) and len(checks) == 3


def test_a_repeated_delay_call_reuses_its_plan_and_honours_a_new_key(monkeypatch):
    import chiraljax.algebra._delay_model as delay_model

    emitter = cj.Network([cj.Emitter("A")], [cj.Port("p", "A", 0, 1.0, right_fraction=1.0)], initial={"A": 1.0})
    method = cj.Delay(dt=0.01)
    first = float(cj.simulate(emitter, (0.0, 2.0), n_save=3, method=method).final_population("A"))
    plans = []
    original = delay_model.plan_delay
    monkeypatch.setattr(delay_model, "plan_delay", lambda *a, **k: plans.append(1) or original(*a, **k))
    again = float(cj.simulate(emitter, (0.0, 2.0), n_save=3, method=method).final_population("A"))
    assert again == first and abs(first - np.exp(-2.0)) < 1e-6 and plans == []
    # a PRNG key given is part of the call: planned again
    cj.simulate(emitter, (0.0, 2.0), n_save=3, method=cj.Delay(dt=0.01, key=jax.random.key(3)))
    assert plans == [1]
