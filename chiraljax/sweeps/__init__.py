"""Sweeps over the hardware parameter space: axes and plans, the engine, sweep specs, progress
and the chunked, resumable store. (Named `sweeps` so that `chiraljax.sweep` stays the function.)
"""
