#!/usr/bin/env bash
# Regenerates optimize/results/: the gradient-versus-RL comparison on the distorted transfer,
# the ideal transfer by gradient from a constant receiver coupling, and the sim-to-real study.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=optimize/results
chiraljax optimize --preset distorted --method compare --budget 5100 --seeds 3 --out "$out/distorted"
chiraljax optimize --preset ideal --method grad --budget 300 --seeds 3 --out "$out/ideal"
chiraljax optimize --preset distorted --method sim-to-real --budget 1020 --seeds 1 --out "$out/sim_to_real"
