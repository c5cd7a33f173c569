"""Timing that is fair to every contender: the benchmarks' shared helper."""
from __future__ import annotations

import statistics

import numpy as np


def interleaved(timers: dict, rounds: int, seed: int = 0) -> dict:
    """One untimed warm-up each, then `rounds` rounds calling every timer once; medians.

    Each round runs the timers in a fresh random order: a call can leave work behind for the
    next one (Aer's threads, garbage), so no timer should always follow the same neighbour.
    """
    for timer in timers.values():
        timer()
    order = np.random.default_rng(seed)
    samples = {name: [] for name in timers}
    for _ in range(rounds):
        for name in order.permutation(list(timers)):
            samples[name].append(timers[name]())
    return {name: statistics.median(times) for name, times in samples.items()}
