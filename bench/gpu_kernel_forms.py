"""Which form of the Lindblad kernel runs a vmapped sweep fastest: an A/B on one machine.

The sweep of `gpu_run.py` (the two-module transfer over the 4-parameter grid, `--per-axis` values
each, 48 and 16 fixed steps) runs in a fresh process for each form, from a copy of the package
in which one switch is changed:

- `current`: as shipped (the single-excitation sector on the blocks of rho, H(t) from the real
  block form of its slot matrices);
- `no_real_blocks`: H(t) as a complex contraction (`kernels._lindblad._BLOCKS_FROM` past every
  size);
- `no_sector_blocks`: the whole-matrix equation on the sector (the lowering's `to_ground` off);
- `neither`: both off; `current_again`: the first form once more (the machine's drift).

Usage:  python bench/gpu_kernel_forms.py [--per-axis 10] [--out bench/results/gpu/kernel_forms.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORMS = {
    "current": (),
    "no_real_blocks": (("kernels/_lindblad.py", "_BLOCKS_FROM = 4", "_BLOCKS_FROM = 10**9"),),
    "no_sector_blocks": (
        ("chiraljax/algebra/_lowering.py", "        bool(sector)\n", "        False and bool(sector)\n"),
    ),
}
FORMS["neither"] = FORMS["no_real_blocks"] + FORMS["no_sector_blocks"]
FORMS["current_again"] = ()

SWEEP = """
import json, sys
sys.path.insert(0, {bench!r})
from gpu_run import run_sweep
out = {{}}
for steps in (48, 16):
    values, record = run_sweep({per_axis}, None, {{}}, steps)
    out[steps] = {{"points_per_second": record["points_per_second"], "mean_transfer": float(values.mean())}}
print(json.dumps(out))
"""


def package_copy(folder: Path, edits: tuple) -> Path:
    """chiraljax with its kernels and optimize packages inside it, edited: importable from
    `folder` ahead of the installed package (run from `folder`, so that no checkout of the
    package is on the path before it)."""
    target = folder / "chiraljax"
    shutil.copytree(ROOT / "chiraljax", target, ignore=shutil.ignore_patterns("__pycache__"))
    for sub in ("kernels", "optimize"):
        shutil.copytree(ROOT / sub, target / sub, ignore=shutil.ignore_patterns("__pycache__", "results"))
    for path, old, new in edits:
        file = target / path.replace("chiraljax/", "", 1) if path.startswith("chiraljax/") else target / path
        text = file.read_text()
        if old not in text:
            raise SystemExit(f"{path}: {old.strip()!r} not found; update this script")
        file.write_text(text.replace(old, new))
    return folder


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-axis", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu" / "kernel_forms.json"))
    args = ap.parse_args(argv)
    results: dict = {"command": "python bench/gpu_kernel_forms.py " + " ".join(argv), "forms": {}}
    for name, edits in FORMS.items():
        with tempfile.TemporaryDirectory() as tmp:
            folder = package_copy(Path(tmp), edits)
            env = dict(os.environ, PYTHONPATH=str(folder), CHIRALJAX_COMPILATION_CACHE="off")
            code = SWEEP.format(bench=str(ROOT / "bench"), per_axis=args.per_axis)
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=folder)
        if done.returncode != 0:
            results["forms"][name] = {"error": done.stderr[-1500:]}
        else:
            results["forms"][name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(name, json.dumps(results["forms"][name]), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
