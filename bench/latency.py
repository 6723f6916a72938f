"""What a user waits for: import, first call, warm call, gradient, whole CLI process.

Measured on the anchor problem (`ANCHOR_PROBLEM.md`, M modules, P = 0.577081321870) in one
run beside QuTiP (CSR operators, a hand-built Liouvillian, vern7, one BLAS thread: the fastest
peer, `bench/peers.py`). Every "first" figure runs in a fresh process; "empty cache" gives that
process a new, empty persistent compilation cache, "warm cache" reuses the one the previous
process filled. A first call runs the kept program's quick build (`chiraljax/solve/_tiers.py`);
the warm figures are the steady state, once the optimized build has taken over. Beside the anchor
problem: the delay kernel's first and warm calls (an atom before a mirror), and fifteen small
networks of other sizes and kinds each simulated once in one fresh process
(`validation_networks.py`). Nothing here is asserted: the numbers go to
`bench/results/latency.json`.

    python bench/latency.py [--modules 2 4] [--repeats 20] [--out bench/results/latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REFERENCE = 0.577081321870
HEAVY = ("xarray", "scipy", "matplotlib", "rich", "jsonschema", "typer", "pandas", "diffrax", "optax")

# ---- probes: each runs in its own process and prints one JSON line ----------------------------

_PROBES = {
    "import": """
import sys, time
t = time.perf_counter()
import chiraljax
dt = time.perf_counter() - t
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY))
print(json.dumps({"import_s": dt, "heavy_modules_loaded": heavy}))
""",
    "first": """
import time
t = time.perf_counter()
import chiraljax as cj, jax
sys.path.insert(0, HERE)
from anchor_problem import anchor_network, T_SPAN
t_import = time.perf_counter() - t
net = anchor_network(M)
t = time.perf_counter()
P = float(cj.simulate(net, T_SPAN).final_population("A1", "B1"))
first = time.perf_counter() - t

def transfer(eta):
    res = cj.simulate(net.with_parameters({"links.1.transmission": eta}), T_SPAN, n_save=2)
    return res.final_population("A1", "B1")

vg = jax.value_and_grad(transfer)
t = time.perf_counter()
jax.block_until_ready(vg(0.6))
first_grad = time.perf_counter() - t

LINKS = [f"links.{i}.transmission" for i in range(3)]

def transfer_links(etas):
    res = cj.simulate(net.with_parameters(dict(zip(LINKS, etas))), T_SPAN, n_save=2)
    return res.final_population("A1", "B1")

t = time.perf_counter()
jax.block_until_ready(jax.value_and_grad(transfer_links)(jax.numpy.asarray([0.6, 1.0, 1.0])))
first_grad3 = time.perf_counter() - t
print(json.dumps({"import_s": t_import, "first_simulate_s": first, "first_value_and_grad_s": first_grad,
                  "first_value_and_grad_three_links_s": first_grad3, "P": P}))
""",
    "warm": """
import time, statistics
import chiraljax as cj, jax
sys.path.insert(0, HERE)
from anchor_problem import anchor_network, T_SPAN
net = anchor_network(M)

P = float(cj.simulate(net, T_SPAN).final_population("A1", "B1"))
warm = loop(lambda: float(cj.simulate(net, T_SPAN).final_population("A1", "B1")), REPEATS)
forward_end = loop(lambda: float(cj.simulate(net, T_SPAN, n_save=2).final_population("A1", "B1")), REPEATS)
# "change something, ask again": the network written anew for every answer
rebuilt = loop(lambda: float(cj.simulate(anchor_network(M), T_SPAN).final_population("A1", "B1")), REPEATS)

def transfer(eta):
    res = cj.simulate(net.with_parameters({"links.1.transmission": eta}), T_SPAN, n_save=2)
    return res.final_population("A1", "B1")

vg = jax.value_and_grad(transfer)
eager_forward = loop(lambda: float(transfer(0.6)), REPEATS)
warm_grad = loop(lambda: jax.block_until_ready(vg(0.6)), max(3, REPEATS // 4))
jit_forward, jit_vg = jax.jit(transfer), jax.jit(vg)
jit_f = loop(lambda: jax.block_until_ready(jit_forward(0.6)), REPEATS)
jit_g = loop(lambda: jax.block_until_ready(jit_vg(0.6)), REPEATS)

def transfer_forward_mode(eta):
    res = cj.simulate(net.with_parameters({"links.1.transmission": eta}), T_SPAN, n_save=2,
                      method=cj.Sector(adjoint="forward"))
    return res.final_population("A1", "B1")

jit_jvp = jax.jit(lambda e: jax.jvp(transfer_forward_mode, (e,), (1.0,)))
jit_d = loop(lambda: jax.block_until_ready(jit_jvp(0.6)), REPEATS)

# a gradient in several numbers (three link transmissions): reverse mode, the discrete adjoint
LINKS = [f"links.{i}.transmission" for i in range(3)]

def transfer_links(etas):
    res = cj.simulate(net.with_parameters(dict(zip(LINKS, etas))), T_SPAN, n_save=2)
    return res.final_population("A1", "B1")

etas = jax.numpy.asarray([0.6, 1.0, 1.0])
jit_vg3 = jax.jit(jax.value_and_grad(transfer_links))
jit_g3 = loop(lambda: jax.block_until_ready(jit_vg3(etas)), REPEATS)
eager_vg3 = jax.value_and_grad(transfer_links)
eager_g3 = loop(lambda: jax.block_until_ready(eager_vg3(etas)), max(3, REPEATS // 2))
print(json.dumps({"warm_simulate_s": warm, "warm_simulate_end_only_s": forward_end,
                  "network_built_and_simulated_s": rebuilt,
                  "warm_value_and_grad_s": warm_grad, "value_and_grad_over_forward": warm_grad / eager_forward,
                  "jit_forward_s": jit_f, "jit_value_and_grad_s": jit_g, "jit_value_and_grad_over_forward": jit_g / jit_f,
                  "jit_forward_mode_derivative_over_forward": jit_d / jit_f,
                  "jit_value_and_grad_three_links_s": jit_g3, "jit_value_and_grad_three_links_over_forward": jit_g3 / jit_f,
                  "eager_value_and_grad_three_links_s": eager_g3,
                  "P": P, "P_error": P - REFERENCE, "backend": jax.default_backend()}))
""",
    "topology": """
import jax
import chiraljax as cj, numpy as np
traces = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: traces.append(event) if event == "/jax/core/compile/jaxpr_trace_duration" else None)
sys.path.insert(0, HERE)
from anchor_problem import anchor_network, T_SPAN
net = anchor_network(M)
cj.simulate(net, T_SPAN)
before = len(traces)
# the same sizes, another topology: other links, the couplings in the other order, other pulses
other = cj.Network(net.emitters, net.ports, links=[cj.Link(transmission=0.8, phase=0.3)] * len(net.links),
                   couplings=net.couplings[::-1], controls={"emit": cj.SechEmission(1.3, 0.5),
                                                         "absorb": cj.SechAbsorption(0.7, -0.2)},
                   initial={"B0": 1.0})
cj.simulate(other, T_SPAN)
print(json.dumps({"traced_before": before, "traced_after_other_topology": len(traces)}))
""",
    "delay": """
import time
import chiraljax as cj, jax

def mirror(gamma):
    # an atom before a mirror, round trip 1: trapped population (1 + gamma / 2)^-2
    return cj.Network([cj.Emitter("a")], [cj.Port("p", "a", 1.0, gamma)], scatterers=[cj.Scatterer("m", 0.0, -1.0)],
                      links=[cj.Link(delay=0.5)], initial={"a": 1.0})

def trapped(gamma):
    return cj.simulate(mirror(gamma), (0.0, 12.0), dt=0.05).final_population("a")

net = mirror(1.0)
t = time.perf_counter()
P = float(cj.simulate(net, (0.0, 12.0), dt=0.05).final_population("a"))
first = time.perf_counter() - t
vg = jax.value_and_grad(trapped)
t = time.perf_counter()
value, slope = vg(1.0)
first_grad = time.perf_counter() - t

warm = loop(lambda: float(cj.simulate(net, (0.0, 12.0), dt=0.05).final_population("a")), REPEATS)
warm_grad = loop(lambda: vg(1.0), REPEATS)
print(json.dumps({"first_simulate_s": first, "first_value_and_grad_s": first_grad, "warm_simulate_s": warm,
                  "warm_value_and_grad_s": warm_grad, "P_error": P - 4 / 9, "slope_error": float(slope) + 8 / 27}))
""",
    "validation": """
import time
t0 = time.perf_counter()
import chiraljax as cj
sys.path.insert(0, HERE)
from validation_networks import validation_networks
cases = []
for label, net, span, method in validation_networks():
    t = time.perf_counter()
    result = cj.simulate(net, span, method=method)
    float(result.final_population(*[e.name for e in net.emitters]))
    cases.append([label, result.representation, time.perf_counter() - t])
print(json.dumps({"total_s": time.perf_counter() - t0, "cases": cases}))
""",
    "qutip": """
sys.path.insert(0, HERE)
from peers import qutip_fair
P, first, median = qutip_fair(M, repeats=REPEATS)
print(json.dumps({"P": P, "first_s": first, "warm_s": median}))
""",
}

_PRELUDE = "import json, sys\nHERE = {here!r}\nM = {M}\nREPEATS = {repeats}\nREFERENCE = {ref}\nHEAVY = {heavy!r}\n"

# The median of n timed calls in the steady state: past the quick build's budget, the optimized
# build compiled (`chiraljax/solve/_tiers.py`). Imports inside, so that the import probe stays
# a bare import.
_LOOP = """
def loop(fn, n):
    import time, statistics, jax
    from chiraljax.solve._tiers import wait_for_optimized_builds
    fn()
    start = time.perf_counter()
    while time.perf_counter() - start < 0.2:
        fn()
    wait_for_optimized_builds()
    out = []
    for _ in range(n):
        t = time.perf_counter(); jax.block_until_ready(fn()); out.append(time.perf_counter() - t)
    return statistics.median(out)
"""


def probe(name: str, M: int = 2, repeats: int = 20, env: dict | None = None) -> dict:
    """Run one probe in a fresh interpreter and return its JSON line."""
    code = _PRELUDE.format(here=HERE, M=M, repeats=repeats, ref=REFERENCE, heavy=HEAVY) + _LOOP + _PROBES[name]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"probe {name} (M={M}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def wall(cmd: list[str], env: dict | None = None) -> float:
    """Seconds a whole process takes, from exec to exit."""
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})}, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - t


def cli_runs(M: int, cache_dir: str) -> dict:
    """`chiraljax simulate FILE` for the M-module anchor network: empty cache, then warm."""
    import chiraljax as cj

    sys.path.insert(0, HERE)
    from anchor_problem import T_SPAN, anchor_network

    path = os.path.join(cache_dir, f"anchor_{M}.json")
    cj.save_network(anchor_network(M), path, settings=cj.SimulationSettings(t_span=T_SPAN))
    exe = os.path.join(os.path.dirname(sys.executable), "chiraljax")
    env = {"CHIRALJAX_COMPILATION_CACHE": os.path.join(cache_dir, f"cache_{M}")}
    result = os.path.join(cache_dir, f"result_{M}.json")
    empty = wall([exe, "simulate", path, "--out", result], env)
    warm = wall([exe, "simulate", path, "--out", result], env)
    return {"cli_empty_cache_s": empty, "cli_warm_cache_s": warm}


def qutip_process(M: int) -> float:
    """A whole QuTiP script on the same problem (build the model, one solve)."""
    code = f"import sys; sys.path.insert(0, {HERE!r}); from peers import qutip_fair; qutip_fair({M}, repeats=1)"
    env = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return wall([sys.executable, "-c", code], env)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "latency.json"))
    ap.add_argument(
        "--no-peers", action="store_true", help="skip QuTiP (a machine without it, e.g. a GPU run): no ratios"
    )
    args = ap.parse_args(argv)

    report: dict = {
        "machine": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "command": "python bench/latency.py " + " ".join(argv),
        "modules": {},
    }

    def save() -> None:
        """Write what is measured so far (atomically: a stopped run keeps the modules it did)."""
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        report["load_average"] = os.getloadavg()
        with open(args.out + ".partial", "w") as fh:
            json.dump(report, fh, indent=2)
        os.replace(args.out + ".partial", args.out)

    imports = [probe("import") for _ in range(3)]
    report["import_s"] = statistics.median(r["import_s"] for r in imports)
    report["heavy_modules_loaded_by_import"] = imports[0]["heavy_modules_loaded"]
    print(
        f"import chiraljax: {report['import_s']:.2f} s; heavy modules loaded: {report['heavy_modules_loaded_by_import']}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        cache = {"CHIRALJAX_COMPILATION_CACHE": os.path.join(tmp, "probe_cache_delay")}
        report["delay"] = {"empty_cache": probe("delay", env=cache), "warm_cache": probe("delay", env=cache)}
        d, w = report["delay"]["empty_cache"], report["delay"]["warm_cache"]
        print(
            f"delay (atom before a mirror, dt 0.05): first simulate {d['first_simulate_s']:.2f} s "
            f"(warm cache {w['first_simulate_s']:.2f} s), first value+grad {d['first_value_and_grad_s']:.2f} s "
            f"({w['first_value_and_grad_s']:.2f} s); warm simulate {1e3 * w['warm_simulate_s']:.2f} ms, "
            f"value+grad (eager) {1e3 * w['warm_value_and_grad_s']:.2f} ms; P error {w['P_error']:.1e}, "
            f"slope error {w['slope_error']:.1e}"
        )
        save()
        cache = {"CHIRALJAX_COMPILATION_CACHE": os.path.join(tmp, "probe_cache_validation")}
        report["validation"] = {
            "empty_cache": probe("validation", env=cache),
            "warm_cache": probe("validation", env=cache),
        }
        v, w = report["validation"]["empty_cache"], report["validation"]["warm_cache"]
        print(
            f"15 small validation networks, each simulated once in a fresh process (import included): "
            f"{v['total_s']:.1f} s with empty caches, {w['total_s']:.1f} s with warm ones"
        )
        save()
        for M in args.modules:
            row: dict = {}
            cache = {"CHIRALJAX_COMPILATION_CACHE": os.path.join(tmp, f"probe_cache_{M}")}
            row["empty_cache"] = probe("first", M, env=cache)
            row["warm_cache"] = probe("first", M, env=cache)
            row["warm"] = probe("warm", M, args.repeats, env=cache)
            row["topology"] = probe("topology", M, env=cache)
            row.update(cli_runs(M, tmp))
            report["modules"][str(M)] = row
            w, e, c = row["warm"], row["empty_cache"], row["warm_cache"]
            print(
                f"M = {M}: first simulate {e['first_simulate_s']:.2f} s (warm cache {c['first_simulate_s']:.2f} s), "
                f"first value+grad {e['first_value_and_grad_s']:.2f} s (three links {e['first_value_and_grad_three_links_s']:.2f} s, "
                f"warm cache {c['first_value_and_grad_three_links_s']:.2f} s); warm simulate {1e3 * w['warm_simulate_s']:.2f} ms "
                f"(P - ref = {w['P_error']:.1e}), end-only {1e3 * w['warm_simulate_end_only_s']:.2f} ms, "
                f"network built anew each time {1e3 * w['network_built_and_simulated_s']:.2f} ms, "
                f"value+grad = {w['value_and_grad_over_forward']:.1f} forward solves "
                f"({w['jit_value_and_grad_over_forward']:.1f} jitted, forward mode "
                f"{w['jit_forward_mode_derivative_over_forward']:.1f}, three links "
                f"{w['jit_value_and_grad_three_links_over_forward']:.1f}, eagerly "
                f"{1e3 * w['eager_value_and_grad_three_links_s']:.1f} ms); "
                f"programs traced {row['topology']['traced_before']} -> "
                f"{row['topology']['traced_after_other_topology']} after another topology; "
                f"CLI process {row['cli_empty_cache_s']:.2f} s empty cache, {row['cli_warm_cache_s']:.2f} s warm"
            )
            save()
            if args.no_peers:
                continue
            row["qutip"] = probe("qutip", M, max(1, args.repeats // 4 if M > 3 else args.repeats))
            row["qutip_process_s"] = qutip_process(M)
            q = row["qutip"]
            row["ratios"] = {
                "cli_empty_over_qutip_process": row["cli_empty_cache_s"] / row["qutip_process_s"],
                "cli_warm_over_qutip_process": row["cli_warm_cache_s"] / row["qutip_process_s"],
                "qutip_warm_over_chiraljax_warm": q["warm_s"] / w["warm_simulate_s"],
                "first_value_and_grad_over_first_simulate": row["empty_cache"]["first_value_and_grad_s"]
                / row["empty_cache"]["first_simulate_s"],
            }
            print(
                f"       QuTiP script {row['qutip_process_s']:.2f} s; QuTiP warm solve {1e3 * q['warm_s']:.2f} ms "
                f"({row['ratios']['qutip_warm_over_chiraljax_warm']:.1f}x chiraljax's)"
            )
            save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
