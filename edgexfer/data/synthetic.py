"""A deterministic, chest-X-ray-like demo data set: `normal`, `pneumonia` and `nodule` grayscale PNGs.

Each image is drawn with numpy from its own seed (`seed`, class, index), so the same seed gives
byte-identical files, and a smaller `per_class` gives a subset of a larger one. Anatomy varies from
image to image (body and lung shape and position, ribs, heart, vessel markings, exposure, noise) and
the findings vary in size and density, some of them faint, so a small CNN trained briefly lands well
above chance but not at 100%.

- normal: lungs with vessel markings and texture only;
- pneumonia: patchy, mottled opacities inside one or both lung fields, mostly in the lower zones;
- nodule: one or two small, round, well-defined dense masses inside a lung field.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from edgexfer.errors import EdgexferError
from edgexfer.io import fix_modes, read_json, write_json
from edgexfer.limits import check_image_side

DEMO_CLASSES = ("nodule", "normal", "pneumonia")  # sorted: the index order discover() gives
DEMO_SCHEMA = "edgexfer.demo/1"
GENERATOR_VERSION = 1
MARKER = "demo.json"
MIN_SIZE = 16
FAINT_FRACTION = 0.12  # findings drawn faint: what keeps a good classifier below 100%


def render_image(class_name: str, size: int, seed: int, index: int, *, with_finding: bool = True) -> np.ndarray:
    """One demo image as uint8 (size, size), drawn from the seed (seed, class, index) alone.

    ``with_finding=False`` draws the very same image without its finding (for tests and illustrations):
    the finding has its own random stream, so the anatomy, exposure and noise do not change.
    """
    if class_name not in DEMO_CLASSES:
        raise EdgexferError(f"unknown demo class '{class_name}'", f"use one of {', '.join(DEMO_CLASSES)}")
    key = [int(seed), DEMO_CLASSES.index(class_name), int(index), GENERATOR_VERSION]
    renderer = _Renderer(size, np.random.default_rng(key), np.random.default_rng([*key, 1]))
    return renderer.draw(class_name if with_finding else "normal")


class _Renderer:
    """Draws on a grid of normalized coordinates: x, y in [-1, 1], y down, patient's right on the left."""

    def __init__(self, size: int, rng: np.random.Generator, finding_rng: np.random.Generator):
        self.size = size
        self.rng = rng  # anatomy, exposure and noise
        self.finding_rng = finding_rng  # the finding alone
        coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
        y, x = np.meshgrid(coords, coords, indexing="ij")
        # a small tilt and shift of the whole patient
        angle = rng.normal(0.0, 0.05)
        shift_x, shift_y = rng.normal(0.0, 0.04, size=2)
        cos, sin = np.cos(angle), np.sin(angle)
        self.x = (cos * x - sin * y - shift_x).astype(np.float32)
        self.y = (sin * x + cos * y - shift_y).astype(np.float32)
        self.pixel = 2.0 / size

    # -------------------------------------------------------------- primitives

    def ellipse(self, cx: float, cy: float, ax: float, ay: float, edge: float = 0.04, power: float = 2.0) -> np.ndarray:
        """A soft-edged (super)ellipse mask in 0..1."""
        d = (np.abs(self.x - cx) / ax) ** power + (np.abs(self.y - cy) / ay) ** power
        r = d ** (1.0 / power)
        return 1.0 / (1.0 + np.exp(np.minimum((r - 1.0) / max(edge, self.pixel), 50.0)))

    def blob(self, cx: float, cy: float, sigma: float) -> np.ndarray:
        return np.exp(-((self.x - cx) ** 2 + (self.y - cy) ** 2) / (2.0 * sigma**2))

    def smooth_noise(self, cells: int, rng: np.random.Generator) -> np.ndarray:
        """Low-frequency noise in about -1..1: a coarse random grid upsampled bicubically."""
        coarse = rng.standard_normal((cells, cells)).astype(np.float32)
        img = Image.fromarray(coarse, mode="F").resize((self.size, self.size), Image.Resampling.BICUBIC)
        return np.asarray(img, dtype=np.float32)

    def point_in(self, lung: tuple[float, float, float, float], rng: np.random.Generator, lower_bias: float = 0.0) -> tuple[float, float]:
        """A random point inside a lung ellipse, pulled towards its lower part by ``lower_bias``."""
        cx, cy, ax, ay = lung
        r = np.sqrt(rng.uniform(0.0, 0.7))
        theta = rng.uniform(0.0, 2.0 * np.pi)
        px, py = cx + r * ax * np.cos(theta), cy + r * ay * np.sin(theta)
        return float(px), float(py + lower_bias * ay * (1.0 - r))

    # -------------------------------------------------------------- anatomy

    def draw(self, class_name: str) -> np.ndarray:
        rng = self.rng
        body = self.ellipse(0.0, 0.1, rng.uniform(0.78, 0.92), rng.uniform(1.05, 1.2), edge=0.05)
        img = 0.06 + rng.uniform(0.36, 0.46) * body

        # lungs: darker fields, each with its own size and position
        spread = rng.uniform(0.31, 0.40)
        top = rng.uniform(-0.12, 0.0)
        lungs = []
        for side in (-1.0, 1.0):
            ax = rng.uniform(0.20, 0.27)
            ay = rng.uniform(0.46, 0.58)
            lungs.append((side * spread + rng.normal(0.0, 0.02), top + rng.normal(0.0, 0.03), ax, ay))
        lung_mask = np.maximum.reduce([self.ellipse(*lung, edge=0.035, power=rng.uniform(1.8, 2.6)) for lung in lungs])
        # the heart overlaps the left lung field (image right) and hides what lies behind it
        heart = self.ellipse(rng.uniform(0.08, 0.16), rng.uniform(0.26, 0.38), rng.uniform(0.2, 0.28), rng.uniform(0.16, 0.23), edge=0.05)
        spine = 1.0 / (1.0 + np.exp(np.minimum((np.abs(self.x) - rng.uniform(0.06, 0.09)) / 0.02, 50.0)))
        lung_mask = lung_mask * (1.0 - 0.8 * heart)
        img -= rng.uniform(0.22, 0.30) * lung_mask
        img += 0.05 * heart * body + rng.uniform(0.03, 0.06) * spine * body

        # posterior ribs: curved bright bands, visible mainly across the lung fields
        rib_spacing = rng.uniform(0.105, 0.13)
        rib_curve = rng.uniform(0.6, 1.1)
        rib_width = rng.uniform(0.018, 0.028)
        ribs = np.zeros_like(img)
        for cx, _, ax, _ in lungs:
            # ten parallel curved bands at once: distance to the nearest band through the band phase
            curve = rib_curve * (self.x - cx) ** 2 - 0.25 * (self.x - cx) * np.sign(cx)
            phase = (self.y - (top - 0.58) - curve) / rib_spacing
            nearest = np.round(phase)
            distance = (phase - nearest) * (rib_spacing / rib_width)
            ribs += np.exp(-(distance**2)) * ((nearest >= 0) & (nearest <= 9) & (np.abs(self.x - cx) < ax * 1.3))
        img += rng.uniform(0.04, 0.07) * ribs * (0.35 + 0.65 * lung_mask) * body

        # vessel markings and parenchymal texture in every class: the background findings must beat
        texture = self.smooth_noise(int(rng.integers(10, 16)), rng)
        img += rng.uniform(0.015, 0.03) * texture * lung_mask
        for _ in range(int(rng.integers(8, 18))):
            lung = lungs[int(rng.integers(0, 2))]
            px, py = self.point_in(lung, rng)
            img += rng.uniform(0.02, 0.06) * self.blob(px, py, rng.uniform(0.008, 0.016)) * lung_mask

        if class_name == "pneumonia":
            img += self._pneumonia(lungs, lung_mask)
        elif class_name == "nodule":
            img += self._nodules(lungs, lung_mask)

        # exposure, contrast and detector noise
        img = img * rng.uniform(0.9, 1.1) + rng.uniform(-0.04, 0.04)
        img += rng.uniform(-0.05, 0.05) * self.y  # heel effect: brighter towards one end
        img = np.clip(img, 0.0, 1.0) ** rng.uniform(0.85, 1.15)
        img += rng.normal(0.0, rng.uniform(0.01, 0.035), size=img.shape).astype(np.float32)
        return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)

    def severity(self) -> float:
        """How marked a finding is: most are clear, about one in eight is faint (hard to tell from normal)."""
        rng = self.finding_rng
        return float(rng.uniform(0.15, 0.4)) if rng.uniform() < FAINT_FRACTION else 1.0

    def _pneumonia(self, lungs, lung_mask: np.ndarray) -> np.ndarray:
        rng = self.finding_rng
        sides = [int(rng.integers(0, 2))] if rng.uniform() < 0.6 else [0, 1]
        density = np.zeros_like(lung_mask)
        for side in sides:
            for _ in range(int(rng.integers(3, 7))):
                px, py = self.point_in(lungs[side], rng, lower_bias=0.5)
                density += rng.uniform(0.6, 1.0) * self.blob(px, py, rng.uniform(0.08, 0.18))
        mottle = np.clip(0.7 + 0.5 * self.smooth_noise(int(rng.integers(14, 22)), rng), 0.0, 1.0)
        amplitude = rng.uniform(0.22, 0.45) * self.severity()
        return amplitude * np.clip(density, 0.0, 1.2) * mottle * lung_mask

    def _nodules(self, lungs, lung_mask: np.ndarray) -> np.ndarray:
        rng = self.finding_rng
        out = np.zeros_like(lung_mask)
        severity = self.severity()
        for _ in range(1 if rng.uniform() < 0.7 else 2):
            px, py = self.point_in(lungs[int(rng.integers(0, 2))], rng)
            radius = rng.uniform(0.055, 0.095)
            r = np.sqrt((self.x - px) ** 2 + (self.y - py) ** 2)
            disc = 1.0 / (1.0 + np.exp(np.minimum((r - radius) / max(0.18 * radius, self.pixel * 0.5), 50.0)))
            out += rng.uniform(0.25, 0.45) * severity * disc
        return out * np.clip(lung_mask * 1.5, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------- writing


def generate_demo(
    out_dir: str | os.PathLike[str], per_class: int = 100, size: int = 128, seed: int = 0
) -> Path:
    """Write the demo set as ``out_dir/<class>/<class>_<index>.png`` and return ``out_dir``.

    Deterministic: the same arguments give byte-identical files. When ``out_dir`` already holds the demo
    made with the same arguments it is kept as is; a demo made with other arguments is replaced; a
    folder holding anything else is refused. The folder appears complete or not at all.
    """
    per_class, size, seed = int(per_class), int(size), int(seed)
    if per_class < 3:
        raise EdgexferError(f"--per-class {per_class} is too small", "use at least 3 images per class (train, val and test)")
    if size < MIN_SIZE:
        raise EdgexferError(f"--size {size} is too small", f"use at least {MIN_SIZE} pixels")
    check_image_side(size, "--size")
    out = Path(out_dir).expanduser()
    marker = {"schema": DEMO_SCHEMA, "generator": GENERATOR_VERSION, "classes": list(DEMO_CLASSES),
              "per_class": per_class, "size": size, "seed": seed}
    if out.exists():
        if not out.is_dir():
            raise EdgexferError(f"{out} exists and is not a folder", "choose another output folder")
        if _matches(out, marker, per_class):
            return out
        if not (out / MARKER).is_file() and any(out.iterdir()):
            raise EdgexferError(f"{out} is not empty and holds no demo data set", "choose a new or empty folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise EdgexferError(f"cannot create {out}: {exc.strerror or exc}", "choose a writable folder") from exc
    try:
        for name in DEMO_CLASSES:
            (tmp / name).mkdir()
            for i in range(per_class):
                pixels = render_image(name, size, seed, i)
                Image.fromarray(pixels, mode="L").save(tmp / name / f"{name}_{i:05d}.png", optimize=False)
        write_json(tmp / MARKER, marker)
        fix_modes(tmp)  # mkdtemp makes 0700: give the folder the mode a plain mkdir gives, like every other output
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except OSError as exc:
        if _matches(out, marker, per_class):  # another process wrote the same demo meanwhile
            return out
        raise EdgexferError(f"cannot write the demo data to {out}: {exc.strerror or exc}", "check free disk space and permissions") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _matches(out: Path, marker: dict, per_class: int) -> bool:
    """True when ``out`` holds a complete demo made with the same arguments."""
    try:
        previous = read_json(out / MARKER, "demo marker")
    except EdgexferError:
        return False
    return previous == marker and all(len(list((out / name).glob("*.png"))) == per_class for name in DEMO_CLASSES)
