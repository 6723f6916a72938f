"""Hostile and careless input: every bad file, setting and output path is refused with one line
and the right exit status (2 bad input, 1 failure during a run) before anything runs, nothing
outside the output folder changes, and a sweep resumed over a damaged chunk file equals an
uninterrupted one.

The CLI runs in-process (`chiraljax.cli.main` with its argv), sharing compiled programs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import chiraljax as cj
import chiraljax.cli
import chiraljax.cli._simulate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NETWORK = EXAMPLES / "two_module_transfer.toml"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(argv: list[str], monkeypatch, capsys) -> tuple[int, list[str]]:
    """(exit status, stderr lines) of `chiraljax ARGV`."""
    monkeypatch.setattr(sys, "argv", ["chiraljax", *argv])
    try:
        chiraljax.cli.main()
        code = 0
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err.strip().splitlines()


def sweep_spec(folder: Path, simulation: str, axes: str, name: str = "spec.toml") -> Path:
    path = folder / name
    path.write_text(
        f'[network]\nfile = "{NETWORK}"\n[simulation]\n{simulation}\n{axes}\n[metrics]\ntransfer = "population:A1+B1"\n'
    )
    return path


def _grid(name: str, n: int, lo: float, hi: float) -> str:
    return f'[[axes]]\nname = "{name}"\nkind = "linspace"\nlo = {lo}\nhi = {hi}\nn = {n}\n'


NEGATIVE_RATE = b"""
[[emitters]]
name = "q"
[[ports]]
name = "p"
emitter = "q"
position = 0
rate = -1.0
"""
NAN_NETWORK = b'{"emitters": [{"name": "q", "decay": NaN}], "ports": [{"name": "p", "emitter": "q", "position": 0}]}'
UNKNOWN_EMITTER = NEGATIVE_RATE.replace(b"rate = -1.0", b"rate = 1.0").replace(b'emitter = "q"', b'emitter = "x"')
_SPEC_HEAD = f'[network]\nfile = "{NETWORK}"\n[simulation]\nt_span = [-12.0, 12.0]\n'.encode()
UNKNOWN_KEY_SPEC = _SPEC_HEAD + (
    b'[[axes]]\nname = "links.1.transmission"\nkind = "grid"\nvalues = [0.5]\n'
    b'colour = "red"\n[metrics]\nt = "population:A1"\n'
)
UNKNOWN_AXIS_SPEC = (
    _SPEC_HEAD
    + b'[[axes]]\nname = "links.9.transmission"\nkind = "grid"\nvalues = [0.5]\n[metrics]\nt = "population:A1"\n'
)
PYTHON_SPEC = (
    b'[network]\npython = "build.py:network"\n[simulation]\nt_span = [0.0, 1.0]\n'
    b'[[axes]]\nname = "ports.p.rate"\nkind = "grid"\nvalues = [0.5]\n[metrics]\na = "population:A"\n'
)


# Each case: (label, files to create {name: bytes}, argv with {d} for the folder, expected exit
# status, a phrase of the one-line message).
BINARY = b"\x00\x01\x02binary\xff"
CASES = [
    ("binary network", {"net.toml": BINARY}, ["simulate", "{d}/net.toml"], 2, "not a text file"),
    (
        "deep JSON",
        {"net.json": b'{"emitters":' + b"[" * 5000 + b"]" * 5000 + b"}"},
        ["simulate", "{d}/net.json"],
        2,
        "nested too deeply",
    ),
    (
        "JSON deeper than a document may be",  # parsed by every Python; refused by the reader
        {"net.json": b'{"emitters":' + b"[" * 100 + b"]" * 100 + b"}"},
        ["simulate", "{d}/net.json"],
        2,
        "nested too deeply (more than 64 levels)",
    ),
    (
        "duplicate JSON key",
        {"net.json": b'{"emitters": [], "emitters": []}'},
        ["simulate", "{d}/net.json"],
        2,
        "'emitters' is given twice",
    ),
    ("binary spec", {"spec.toml": BINARY}, ["sweep", "{d}/spec.toml", "--out", "{d}/o.nc"], 2, "not a text file"),
    ("unknown network suffix", {"net.yaml": b"emitters: []"}, ["simulate", "{d}/net.yaml"], 2, "unknown file type"),
    ("network is a folder", {}, ["simulate", "{d}"], 2, "unknown file type"),
    ("a billion save times", {}, ["simulate", str(NETWORK), "--n-save", "1000000000"], 2, "of memory"),
    ("more save times than steps", {}, ["simulate", str(NETWORK), "--n-save", "1000000"], 2, "max_steps"),
    ("--out is a folder", {"sub/x": b""}, ["simulate", str(NETWORK), "--out", "{d}/sub"], 2, "unsupported file type"),
    ("--out in a missing folder", {}, ["simulate", str(NETWORK), "--out", "{d}/no/r.json"], 2, "does not exist"),
    ("--out of another type", {}, ["simulate", str(NETWORK), "--out", "{d}/r.txt"], 2, "unsupported file type"),
    ("--out folder not writable", {}, ["simulate", str(NETWORK), "--out", "/proc/r.json"], 2, "cannot write"),
    ("reproduce into a file", {"report": b"keep"}, ["reproduce", "--quick", "--out", "{d}/report"], 2, "is a file"),
    ("plot to an unknown image type", {}, ["plot", "{result}", "--out", "{d}/fig.xyz"], 2, "unsupported file type"),
    ("plot into a missing folder", {}, ["plot", "{result}", "--out", "{d}/no/fig.png"], 2, "does not exist"),
    (
        "sweep grid of 1e10 points",
        {},
        ["sweep", "{spec:big}", "--out", "{d}/o.nc", "--no-progress"],
        2,
        "sweep grid of 1e+10 points",
    ),
    ("fixed steps too coarse", {}, ["sweep", "{spec:coarse}", "--out", "{d}/o.nc", "--no-progress"], 2, "too coarse"),
    ("network as a JSON list", {"net.json": b"[1, 2, 3]"}, ["simulate", "{d}/net.json"], 2, "net.json"),
    ("negative rate", {"net.toml": NEGATIVE_RATE}, ["simulate", "{d}/net.toml"], 2, "rate"),
    ("NaN in a network", {"net.json": NAN_NETWORK}, ["simulate", "{d}/net.json"], 2, "net.json"),
    ("unknown emitter of a port", {"net.toml": UNKNOWN_EMITTER}, ["simulate", "{d}/net.toml"], 2, "unknown emitter"),
    ("reversed window", {}, ["simulate", str(NETWORK), "--t-span", "5", "1"], 2, "t1 > t0"),
    ("unknown representation", {}, ["simulate", str(NETWORK), "--representation", "magic"], 2, "magic"),
    ("missing network file", {}, ["simulate", "{d}/absent.toml"], 2, "no such network file"),
    ("params of a binary file", {"net.toml": BINARY}, ["params", "{d}/net.toml"], 2, "not a text file"),
    (
        "sweep spec with an unknown key",
        {"spec.toml": UNKNOWN_KEY_SPEC},
        ["sweep", "{d}/spec.toml", "--out", "{d}/o.nc"],
        2,
        "unknown key",
    ),
    ("sweep output of another type", {}, ["sweep", "{spec:coarse}", "--out", "{d}/o.csv"], 2, "unsupported"),
    ("sweep output in a missing folder", {}, ["sweep", "{spec:coarse}", "--out", "{d}/no/o.nc"], 2, "does not exist"),
    ("plot of a missing result", {}, ["plot", "{d}/absent.nc", "--out", "{d}/fig.png"], 2, "does not exist"),
    (
        "plot of a damaged result",
        {"bad.nc": b"not netcdf"},
        ["plot", "{d}/bad.nc", "--out", "{d}/fig.png"],
        2,
        "not a readable sweep result",
    ),
    (
        "sweep axis of an unknown parameter",
        {"spec.toml": UNKNOWN_AXIS_SPEC},
        ["sweep", "{d}/spec.toml", "--out", "{d}/o.nc"],
        2,
        "unknown parameter",
    ),
    (
        "Python in a spec without consent",
        {"spec.toml": PYTHON_SPEC, "build.py": b"raise SystemExit('ran')"},
        ["sweep", "{d}/spec.toml", "--out", "{d}/o.nc"],
        2,
        "--allow-python",
    ),
]


@pytest.fixture(scope="module")
def sweep_result(tmp_path_factory) -> Path:
    """A small finished sweep result to plot."""
    folder = tmp_path_factory.mktemp("result")
    out = folder / "r.nc"
    cj.sweep(
        cj.Network([cj.Emitter("A")], [cj.Port("p", "A", 0, 1.0)], initial={"A": 1.0}),
        [cj.Grid("ports.p.rate", [0.5, 1.0])],
        metrics={"a": "population:A"},
        t_span=(0.0, 1.0),
        out=out,
        progress=False,
    )
    return out


@pytest.mark.parametrize("label, files, argv, status, phrase", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line(
    label, files, argv, status, phrase, tmp_path, sweep_result, monkeypatch, capsys
):
    folder = tmp_path / "work"
    folder.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("untouched")
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    specs = {
        "big": sweep_spec(
            folder,
            "t_span = [-12.0, 12.0]\nn_save = 2\nsteps = 16",
            _grid("links.1.transmission", 100000, 0.1, 0.9) + _grid("emitters.*.dephasing", 100000, 0.0, 0.01),
            "big.toml",
        ),
        "coarse": sweep_spec(
            folder,
            "t_span = [-12.0, 12.0]\nn_save = 2\nsteps = 2",
            _grid("links.1.transmission", 2, 0.5, 0.6),
            "coarse.toml",
        ),
    }
    before = _snapshot(outside), sorted(p.name for p in EXAMPLES.iterdir())
    args = [a.replace("{d}", str(folder)).replace("{result}", str(sweep_result)) for a in argv]
    args = [str(specs[a[6:-1]]) if a.startswith("{spec:") else a for a in args]
    code, err = run_cli(args, monkeypatch, capsys)
    assert code == status, err
    # one error line, the last one (a sweep announces itself first)
    errors = [line for line in err if line.startswith("chiraljax: error: ")]
    assert len(errors) == 1 and err[-1] == errors[0] and phrase in errors[0], err
    assert (_snapshot(outside), sorted(p.name for p in EXAMPLES.iterdir())) == before
    assert not any(p.suffix in (".nc", ".json", ".png") and p.name not in files for p in folder.iterdir())


def test_a_failure_during_a_run_is_one_line_with_exit_1(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("XLA backend failed\nwith a long story\nover lines")

    monkeypatch.setattr(chiraljax.solve._simulate, "simulate", broken)
    code, err = run_cli(["simulate", str(NETWORK), "--out", str(tmp_path / "r.json")], monkeypatch, capsys)
    assert code == 1
    assert err == [
        "chiraljax: error: RuntimeError: XLA backend failed with a long story over lines "
        "(set CHIRALJAX_TRACEBACK=1 for the traceback)"
    ]
    assert not (tmp_path / "r.json").exists()

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(chiraljax.solve._simulate, "simulate", out_of_memory)
    code, err = run_cli(["simulate", str(NETWORK)], monkeypatch, capsys)
    assert code == 1 and len(err) == 1 and "out of memory during the run; lower n_save" in err[0]


def test_size_guards_refuse_before_building_and_can_be_switched_off(monkeypatch):
    """400 emitters would take hours of dense algebra in the Markov build; a delay of 1e9 a
    terabyte of history. Both are refused at once with the knob; CHIRALJAX_LIMITS=off lifts a
    guard."""
    emitters = [cj.Emitter(f"q{i}") for i in range(400)]
    ports = [cj.Port(f"p{i}", f"q{i}", i, 0.1) for i in range(400)]
    with pytest.raises(cj.ValidationError, match="400 emitters and 400 ports.*representation='delay'"):
        cj.simulate(cj.Network(emitters, ports, initial={"q0": 1.0}), (0.0, 1.0), representation="sector")
    far = cj.Network(
        [cj.Emitter("a"), cj.Emitter("b")],
        [cj.Port("pa", "a", 0, 1.0), cj.Port("pb", "b", 1, 1.0)],
        links=[cj.Link(delay=1e9)],
        initial={"a": 1.0},
    )
    with pytest.raises(cj.ValidationError, match="link delay of 1e\\+09.*CHIRALJAX_LIMITS=off"):
        cj.simulate(far, (0.0, 10.0), n_save=3)
    monkeypatch.setenv("CHIRALJAX_MAX_MEMORY_GB", "1e-6")
    with pytest.raises(cj.ValidationError, match="201 save times would need about"):
        cj.simulate(cj.Network([cj.Emitter("A")], [cj.Port("p", "A", 0, 1.0)], initial={"A": 1.0}), (0.0, 1.0))
    monkeypatch.setenv("CHIRALJAX_LIMITS", "off")
    result = cj.simulate(cj.Network([cj.Emitter("A")], [cj.Port("p", "A", 0, 1.0)], initial={"A": 1.0}), (0.0, 1.0))
    assert abs(float(result.final_population("A")) - np.exp(-1.0)) < 1e-7


def _decay(point):
    return {"p": point["rate"] * point["t"], "q": point["rate"] + point["t"]}


def test_a_damaged_chunk_file_is_computed_again(tmp_path):
    """A sweep killed after two chunks, one chunk file then truncated (a crash of the disk):
    the resumed sweep recomputes that chunk and equals an uninterrupted run."""
    axes = [cj.Grid("rate", np.linspace(0.1, 1.0, 5)), cj.Grid("t", [1.0, 2.0, 3.0, 4.0])]
    reference = cj.sweep(_decay, axes, chunk_size=6, progress=False)
    out = tmp_path / "scan.nc"
    done: list[int] = []

    def stop_after_two(chunk):
        done.append(chunk.index)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cj.sweep(_decay, axes, chunk_size=6, out=out, progress=False, callback=stop_after_two)
    chunk = sorted((tmp_path / "scan.nc.chunks").glob("chunk_*.npz"))[1]
    chunk.write_bytes(chunk.read_bytes()[:40])
    resumed: list[int] = []
    result = cj.sweep(_decay, axes, out=out, progress=False, callback=lambda c: resumed.append(c.index))
    assert resumed == [1, 2, 3]
    xr.testing.assert_identical(result.drop_attrs(), reference.drop_attrs())
