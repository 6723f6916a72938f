"""Pulse shaping: gradient optimisers, the reinforcement-learning baseline, comparisons."""
