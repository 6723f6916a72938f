"""The experiment on top of the generic core: chiral modules and lines, the protocols (emission,
transfer, W state, routing, error budget), presets, the reproduction pipeline and its report,
and the reference networks shared by benchmarks and tests.
"""
