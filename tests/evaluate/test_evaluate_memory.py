"""Bench's per-artifact memory: what a block (an artifact's session) adds, not the process's running peak."""

from __future__ import annotations

import time

import numpy as np

from edgexfer.evaluate.memory import SessionMemory

MB = 1024 * 1024


def test_a_block_that_allocates_and_frees_200_mb_shows_its_peak():
    with SessionMemory() as memory:
        held = np.ones(200 * MB // 8)  # written: resident, not only reserved
        time.sleep(0.1)
        del held
    assert 190 <= memory.peak_mb <= 260, memory.peak_mb


def test_memory_the_process_held_before_is_not_charged_to_the_block():
    earlier = np.ones(300 * MB // 8)  # an earlier artifact's peak, still resident
    earlier[0] = 2
    with SessionMemory() as memory:
        small = np.ones(8 * MB // 8)
        time.sleep(0.05)
        del small
    del earlier
    assert memory.peak_mb < 40, memory.peak_mb
