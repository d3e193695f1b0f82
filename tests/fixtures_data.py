"""Shared data fixtures: a small synthetic demo set and its split, made once per test session.

- ``demo_data_dir``: the demo set (3 classes: nodule, normal, pneumonia; 40 images each, 64 px grayscale
  PNG) as class folders; treat it as read-only (copy it before changing anything).
- ``demo_split``: a `Split` of it (fractions 0.7/0.2/0.1, seed 0): 28/8/4 images per class.
"""

from pathlib import Path

import pytest

DEMO_PER_CLASS = 40
DEMO_SIZE = 64


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory) -> Path:
    from edgexfer.data.synthetic import generate_demo

    return generate_demo(tmp_path_factory.mktemp("data") / "demo", per_class=DEMO_PER_CLASS, size=DEMO_SIZE, seed=0)


@pytest.fixture(scope="session")
def demo_split(demo_data_dir):
    from edgexfer.data.sources import discover
    from edgexfer.data.splits import make_split

    return make_split(discover(demo_data_dir), fractions=(0.7, 0.2, 0.1), seed=0)
