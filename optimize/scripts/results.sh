#!/usr/bin/env bash
# Regenerates optimize/results/: the gradient-versus-RL comparison on the paper preset's transfer
# (exact rewards at 5100 evaluations; with 1000 shots per PPO candidate at 1020, with the tutorial
# and the hardware PPO settings; PPO alone at 1020 with exact rewards and 100 shots) and on the
# distorted stand-in, the robust objective on both, the paper problem with a frequency correction,
# the ideal transfer by gradient from a constant receiver coupling, and the device study (three ways
# of working on hidden devices that answer in single shots).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=optimize/results
chiraljax optimize --preset paper --method compare --budget 5100 --seeds 3 --out "$out/paper"
chiraljax optimize --preset paper --method compare --budget 1020 --seeds 3 --shots 1000 --out "$out/paper_shots"
chiraljax optimize --preset paper --method compare --budget 1020 --seeds 3 --shots 1000 --ppo-settings hardware \
    --out "$out/paper_shots_hardware"
rl="chiraljax optimize --preset paper --method rl --budget 1020 --seeds 3"
$rl --out "$out/paper_rl_1020/exact"
$rl --shots 100 --out "$out/paper_rl_1020/shots100"
$rl --ppo-settings hardware --out "$out/paper_rl_1020/hardware_exact"
$rl --shots 100 --ppo-settings hardware --out "$out/paper_rl_1020/hardware_shots100"
chiraljax optimize --preset paper --method device-study --budget 600000 --seeds 3 --out "$out/device_study"
chiraljax optimize --preset paper --method sim-to-real --budget 1020 --seeds 1 --out "$out/paper_sim_to_real"
python optimize/scripts/paper_correction.py "$out/paper/correction.json"
chiraljax optimize --preset distorted --method compare --budget 5100 --seeds 3 --out "$out/distorted"
chiraljax optimize --preset ideal --method grad --budget 300 --seeds 3 --out "$out/ideal"
chiraljax optimize --preset distorted --method sim-to-real --budget 1020 --seeds 1 --out "$out/sim_to_real"
