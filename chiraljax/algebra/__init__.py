"""The SLH algebra and the models made of it: spaces and operators, SLH triples and their
compositions, the Markov (Lindblad) model of a network and its lowering to number tables, and
the delay model of the time-delayed waveguide.
"""
