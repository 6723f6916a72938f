"""Network files: parsing, schema and physics validation, round trips, and the examples."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chiraljax as cj
from chiraljax._errors import ValidationError
from chiraljax.network._network_io import PULSE_SHAPES, READ_ONLY_SHAPES, _validator, read_document

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# examples/ also holds sweep specs; network files are the documents that list emitters
EXAMPLE_FILES = sorted(
    p.name for p in EXAMPLES.glob("*") if p.suffix in (".toml", ".json") and "emitters" in read_document(p)
)
N_SAVE = 11  # the CLI tests use the same count, so the compiled solvers are shared


def _structure(network: cj.Network) -> tuple:
    """Everything static about a Network: names, topology, control and pulse types."""
    return (
        [(e.name, e.levels, e.detuning_control) for e in network.emitters],
        [(p.name, p.emitter, p.position, p.control) for p in network.ports],
        [(s.name, s.position) for s in network.scatterers],
        len(network.links),
        [(c.a, c.b, c.control) for c in network.couplings],
        {k: type(v).__name__ for k, v in network.controls.items()},
        [(x.name, x.end, type(x.mode).__name__) for x in network.inputs + network.outputs],
        sorted(network.initial),
    )


def assert_same_network(a: cj.Network, b: cj.Network) -> None:
    assert _structure(a) == _structure(b)
    pa, pb = a.parameters(), b.parameters()
    assert pa.keys() == pb.keys()
    for name in pa:
        np.testing.assert_allclose(np.asarray(pa[name]), np.asarray(pb[name]), rtol=0, atol=1e-15, err_msg=name)
    for name in a.initial:
        assert complex(a.initial[name]) == pytest.approx(complex(b.initial[name]), abs=1e-15)
    np.testing.assert_allclose(np.asarray(a.end_reflections), np.asarray(b.end_reflections), atol=1e-15)


def rich_network() -> cj.Network:
    """A network that uses every section and every pulse shape of the format."""
    controls = {
        "emit": cj.SechEmission(1.3, -0.5),
        "absorb": cj.SechAbsorption(1.3, 0.7),
        "const": cj.Constant(0.25 - 0.5j),
        "bump": cj.Gaussian(0.4 + 0.1j, 1.0, 0.6),
        "late": cj.Halted(cj.Shifted(cj.SechEmission(2.0), 0.3), 1.5),
        "half": cj.Scaled(cj.SechAbsorption(1.0), 0.5),
        "steps": cj.Sampled([0.0, 1.0, 2.0], [0.0, 1.0], kind="hold"),
        "ramp": cj.Sampled([0.0, 1.0, 2.0], [0.0, 0.5j, 1.0]),
    }
    emitters = [
        cj.Emitter("A", 0.1, 1e-3, 2e-3),
        cj.Emitter("B", -0.2, decay=1e-3, detuning_control="bump"),
        cj.Emitter("T", levels=3, anharmonicity=-5.0),
    ]
    ports = [
        cj.Port("pA", "A", 0.0, 1.0, control="emit"),
        cj.Port("pB", "B", 2.0, 0.8, right_fraction=0.7),
        cj.Port("pT", "T", 3.0, 0.5, control="half"),
    ]
    scatterers = [cj.Scatterer("joint", 1.0, 0.1 + 0.05j)]
    links = [cj.Link(0.0, 1.0, math.pi / 2), cj.Link(0.5, 0.6, 0.3), cj.Link(0.1, 0.9, -1.0)]
    couplings = [cj.Coupling("A", "B", -0.5 + 0.1j, control="const"), cj.Coupling("B", "T", 0.2, control="steps")]
    inputs = [cj.PhotonInput("photon", cj.SechMode(1.0, -3.0), end="left")]
    outputs = [
        cj.OutputMode("detect", cj.GaussianMode(4.0, 1.0), end="right"),
        cj.OutputMode("back", cj.SechMode(0.8), end="left"),
    ]
    return cj.Network(
        emitters,
        ports,
        links=links,
        scatterers=scatterers,
        couplings=couplings,
        controls=controls,
        inputs=inputs,
        outputs=outputs,
        initial={"A": 0.6, "B": 0.8j},
        end_reflections=(0.05, -0.02j),
    )


# ---- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_round_trip_through_files(tmp_path, suffix):
    network = rich_network()
    settings = cj.SimulationSettings(t_span=(-5.0, 5.0), n_save=51, representation="delay", rtol=1e-7)
    path = tmp_path / f"net{suffix}"
    cj.save_network(network, path, settings)
    loaded, loaded_settings = cj.load_network(path)
    assert_same_network(network, loaded)
    assert loaded_settings == settings
    assert cj.network_to_dict(loaded, loaded_settings) == cj.network_to_dict(network, settings)


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_examples_round_trip(tmp_path, name):
    network, settings = cj.load_network(EXAMPLES / name)
    rebuilt, rebuilt_settings = cj.network_from_dict(cj.network_to_dict(network, settings))
    assert_same_network(network, rebuilt)
    assert rebuilt_settings == settings
    for suffix in (".toml", ".json"):
        cj.save_network(network, tmp_path / f"copy{suffix}", settings)
        assert_same_network(network, cj.load_network(tmp_path / f"copy{suffix}")[0])


def test_dict_is_plain_json():
    doc = cj.network_to_dict(rich_network())
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    assert doc["couplings"][0]["strength"] == {"re": -0.5, "im": 0.1}
    assert doc["controls"]["late"] == {
        "shape": "halted",
        "t_stop": 1.5,
        "pulse": {"shape": "shifted", "delay": 0.3, "pulse": {"shape": "sech_emission", "kappa": 2.0, "t0": 0.0}},
    }


def test_pulse_table_matches_schema():
    defs = _validator().schema["$defs"]
    fields = {**{name: tuple(f) for name, (_, f) in PULSE_SHAPES.items()}, **READ_ONLY_SHAPES}
    assert set(defs["pulse"]["properties"]["shape"]["enum"]) == set(fields)
    for rule in defs["pulse"]["allOf"]:
        shape = rule["if"]["properties"]["shape"]["const"]
        target = defs[rule["then"]["$ref"].split("/")[-1]]
        assert set(target["properties"]) == {"shape", *fields[shape]}, shape


# ---- alternative units and complex forms ------------------------------------------------------------


def minimal_doc() -> dict:
    return {
        "emitters": [{"name": "a"}, {"name": "b"}],
        "ports": [
            {"name": "pa", "emitter": "a", "position": 0, "rate": 1.0},
            {"name": "pb", "emitter": "b", "position": 1, "rate": 1.0, "control": "emit"},
        ],
        "links": [{"transmission": 0.9, "phase": 0.5}],
        "controls": {"emit": {"shape": "sech_emission", "kappa": 1.0}},
        "initial": {"a": 1.0},
        "simulation": {"t_span": [0.0, 5.0]},
    }


def test_loss_in_db_and_phase_in_degrees():
    doc = minimal_doc()
    doc["links"] = [{"loss_db": 3.0, "phase_deg": 90.0}]
    network, _ = cj.network_from_dict(doc)
    assert float(network.links[0].transmission) == pytest.approx(10**-0.3, rel=1e-14)
    assert float(network.links[0].phase) == pytest.approx(math.pi / 2, rel=1e-14)


@pytest.mark.parametrize("form", [{"re": 0.6, "im": 0.8}, [0.6, 0.8]])
def test_complex_forms(form):
    doc = minimal_doc()
    doc["initial"] = {"a": form}
    doc["couplings"] = [{"a": "a", "b": "b", "strength": form}]
    network, _ = cj.network_from_dict(doc)
    assert complex(network.initial["a"]) == pytest.approx(0.6 + 0.8j)
    assert complex(network.couplings[0].strength) == pytest.approx(0.6 + 0.8j)


# ---- validation: schema first, then finiteness, then physics --------------------------------------


def _set(doc, path, value):
    *parents, last = path
    for p in parents:
        doc = doc[p]
    doc[last] = value


BAD_DOCUMENTS = [
    (("ports", 1, "rate"), -1, "ports[1].rate: -1 is less than the minimum of 0"),
    (("ports", 0, "rate"), "fast", "ports[0].rate: 'fast' is not of type 'number'"),
    (("ports", 0, "right_fraction"), 1.5, "ports[0].right_fraction: 1.5 is greater than the maximum of 1"),
    (("links", 0, "transmission"), 1.2, "links[0].transmission: 1.2 is greater than the maximum of 1"),
    (("links", 0, "loss_db"), 3.0, "links[0]: give either transmission or loss_db, not both"),
    (("links", 0, "phase"), float("nan"), "links[0].phase: nan is not a finite number"),
    (("ports", 0, "rat"), 1.0, "ports[0]: Additional properties are not allowed ('rat' was unexpected)"),
    (("ports", 0, "emitter"), "x", "Port 'pa': unknown emitter 'x'"),
    (("ports", 1, "control"), "emitt", "Port 'pb': unknown control 'emitt' (did you mean 'emit'?)"),
    (("controls", "emit", "shape"), "sech", "controls.emit.shape: 'sech' is not one of"),
    (("controls", "emit", "kappa"), -1.0, "controls.emit.kappa: -1.0 is less than or equal to the minimum of 0"),
    (("controls", "emit"), {"shape": "gaussian", "t0": 0.0, "sigma": 1.0}, "'amplitude' is a required property"),
    (("initial", "a"), 0.5, "normalise them to 1"),
    (("emitters",), [], "emitters: [] should be non-empty"),
    (
        ("scatterers",),
        [{"name": "s", "position": 0.5, "reflection": 0.8, "transmission": 0.8}],
        "scatterers[0]: Scatterer 's': |reflection|^2 + |transmission|^2",
    ),
    (("simulation", "representation"), "fast", "simulation.representation: 'fast' is not one of"),
]


@pytest.mark.parametrize("path,value,message", BAD_DOCUMENTS, ids=[m.split(":")[0] for *_, m in BAD_DOCUMENTS])
def test_bad_documents_name_the_field(path, value, message):
    doc = copy.deepcopy(minimal_doc())
    _set(doc, path, value)
    with pytest.raises(ValidationError) as err:
        cj.network_from_dict(doc)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("bad.toml", "[[emitters]]\nname = \n", "bad.toml: not valid TOML: Invalid value (at line 2, column 8)"),
        ("bad.json", '{"emitters": [', "bad.json: not valid JSON: Expecting"),
        ("net.yaml", "emitters: []", "net.yaml: unknown file type '.yaml'"),
    ],
)
def test_unparsable_files(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValidationError) as err:
        cj.load_network(tmp_path / name)
    assert message in str(err.value)


def test_missing_file_and_file_prefix(tmp_path):
    with pytest.raises(ValidationError, match="no such network file"):
        cj.load_network(tmp_path / "absent.toml")
    doc = minimal_doc()
    doc["ports"][0]["rate"] = -2.0
    (tmp_path / "neg.json").write_text(json.dumps(doc))
    with pytest.raises(ValidationError, match=r"neg\.json: ports\[0\]\.rate: -2\.0 is less than the minimum of 0"):
        cj.load_network(tmp_path / "neg.json")


def test_nan_in_json_and_toml(tmp_path):
    (tmp_path / "n.json").write_text(json.dumps(minimal_doc()).replace('"transmission": 0.9', '"transmission": NaN'))
    with pytest.raises(ValidationError, match=r"links\[0\]\.transmission: nan is not a finite number"):
        cj.load_network(tmp_path / "n.json")
    text = (EXAMPLES / "single_emitter.toml").read_text().replace("rate = 1.0", "rate = nan")
    (tmp_path / "n.toml").write_text(text)
    with pytest.raises(ValidationError, match=r"ports\[0\]\.rate: nan is not a finite number"):
        cj.load_network(tmp_path / "n.toml")


def test_unsaveable_networks(tmp_path):
    network = rich_network()
    batched = network.with_parameters({"ports.pA.rate": np.array([1.0, 2.0])})
    with pytest.raises(ValidationError, match=r"ports\[0\]\.rate: holds an array of shape \(2,\)"):
        cj.network_to_dict(batched)

    class Custom(cj.AbstractPulse):
        def __call__(self, t):
            return t

    custom = cj.Network(
        network.emitters,
        network.ports,
        links=network.links,
        scatterers=network.scatterers,
        controls={**network.controls, "emit": Custom()},
        couplings=network.couplings,
    )
    with pytest.raises(ValidationError, match="controls.emit: a Custom pulse has no file form"):
        cj.save_network(custom, tmp_path / "c.toml")
    assert not list(tmp_path.iterdir())


# ---- every example loads, validates and simulates ------------------------------------------------------


@pytest.fixture(scope="module")
def example_results():
    out = {}
    for name in EXAMPLE_FILES:
        network, settings = cj.load_network(EXAMPLES / name)
        kwargs = settings.simulate_kwargs() | {"n_save": N_SAVE}
        out[name] = cj.simulate(network, settings.t_span, **kwargs)
    return out


def test_examples_are_schema_valid():
    for name in EXAMPLE_FILES:
        doc = read_document(EXAMPLES / name)
        assert not list(_validator().iter_errors(doc)), name


def test_examples_simulate(example_results):
    assert {"directional_emission.json", "single_emitter.toml", "two_module_transfer.toml"} <= set(example_results)
    for name, result in example_results.items():
        scalars = result.scalars()
        assert all(math.isfinite(v) for v in scalars.values()), name
        assert scalars["conservation_error"] < 1e-6, name


def test_example_single_emitter(example_results):
    r = example_results["single_emitter.toml"].scalars()
    gamma = 1.01
    assert r["population:q"] == pytest.approx(math.exp(-gamma * 8.0), rel=1e-5)
    assert r["output:right"] == pytest.approx(r["output:left"], rel=1e-10)
    assert r["output:right"] == pytest.approx(0.5 / gamma * (1 - math.exp(-gamma * 8.0)), rel=1e-6)


def test_example_directional_emission(example_results):
    r = example_results["directional_emission.json"].scalars()
    assert r["output:right"] > 0.9999
    assert r["output:left"] < 1e-9


def test_example_two_module_transfer_matches_peer_value(example_results):
    result = example_results["two_module_transfer.toml"]
    assert float(result.final_population("A1", "B1")) == pytest.approx(0.5770813, abs=2e-7)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
@pytest.mark.parametrize("basis", ["pwc", "spline", "fourier", "chebyshev"])
def test_a_shaped_pulse_is_stored_and_read_back(tmp_path, suffix, basis):
    """The pulses of pulse shaping (bases over a window, the bounded and pinned `Shaped`
    pulse, Gaussian couplings, time reversal) have a file form: a network holding an optimised
    drive is saved and read back with the same drive, to the last bit."""
    from chiraljax.optimize import BasisParameterization

    shaping = BasisParameterization(
        basis, 6, -10.0, 10.0, bounds=(0.0, None), baseline=cj.SechAbsorption(1.0), start=0.5, end=0.0, ramp=2.0
    )
    drive = shaping(jnp.linspace(-0.3, 0.4, shaping.size))
    others = {
        "gauss_in": cj.GaussianAbsorption(1.2, 0.5),
        "gauss_out": cj.GaussianEmission(0.8, -1.0),
        "reversed": cj.TimeReversed(cj.SechEmission(1.0, 0.3), 0.5),
        "free": BasisParameterization(basis, 4, -5.0, 5.0)(jnp.array([0.1, -0.2, 0.3, 0.05])),
    }
    net = cj.Network(
        [cj.Emitter("q")],
        [cj.Port("p", "q", 0, 1.0, control="drive")],
        controls={"drive": drive, **others},
        initial={"q": 1.0},
    )
    cj.save_network(net, tmp_path / f"net{suffix}")
    back, _ = cj.load_network(tmp_path / f"net{suffix}")
    t = jnp.linspace(-12.0, 12.0, 97)
    for name, pulse in net.controls.items():
        assert type(back.controls[name]) is type(pulse)
        np.testing.assert_array_equal(np.asarray(jax.vmap(back.controls[name])(t)), np.asarray(jax.vmap(pulse)(t)))
    assert back.controls["drive"].upper == math.inf and back.controls["free"].transform is None


def test_a_document_found_valid_is_not_checked_again(tmp_path, monkeypatch):
    """The schema check of a valid document is remembered by the hash of schema and document;
    an invalid one is checked (and refused) every time, and without a cache folder every
    document is checked."""
    import chiraljax.network._network_io as network_io
    import chiraljax.solve._cache as cache

    checks = []

    def counting_validator():
        checks.append(1)
        return _validator()

    monkeypatch.setattr(network_io, "_validator", counting_validator)
    monkeypatch.setattr(cache, "compilation_cache_dir", lambda: str(tmp_path))
    doc = read_document(EXAMPLES / "two_module_transfer.toml")
    network_io.validate_document(doc)
    network_io.validate_document(copy.deepcopy(doc))
    assert len(checks) == 1 and len(list((tmp_path / "validated").iterdir())) == 1
    bad = copy.deepcopy(doc)
    bad["emitters"][0]["decay"] = -1.0
    for _ in range(2):
        with pytest.raises(ValidationError, match="emitters"):
            network_io.validate_document(bad)
    assert len(checks) == 3 and len(list((tmp_path / "validated").iterdir())) == 1
    monkeypatch.setattr(cache, "compilation_cache_dir", lambda: None)
    network_io.validate_document(doc)
    assert len(checks) == 4
