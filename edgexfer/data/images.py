"""One decode-and-resize function for every stage: training, calibration and bench see identical pixels.

Pillow and numpy only (no TensorFlow): the bench on a Jetson reads the test split through this module.
Every image becomes RGB uint8 (H, W, 3) at the model's size, whatever its bit depth or mode.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgexfer._lazy import require
from edgexfer.errors import EdgexferError

#: file suffixes read as images (lower case); DICOM needs the `dicom` extra
RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
IMAGE_SUFFIXES = RASTER_SUFFIXES | DICOM_SUFFIXES

# Bilinear with Pillow's default antialiasing on downscale: fast, deterministic across machines.
_RESAMPLE = Image.Resampling.BILINEAR


class ImageReadError(EdgexferError):
    """An image file that cannot be decoded; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike[str], reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}", "replace or remove the file")


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True for a visible file whose suffix is one we read."""
    p = Path(path)
    return not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise EdgexferError(f"image size {size!r} is not (height, width)", "pass two positive integers") from None
    if height < 1 or width < 1:
        raise EdgexferError(f"image size {size!r} is not positive", "pass two positive integers")
    return height, width


def load_image(path: str | os.PathLike[str], size: tuple[int, int]) -> np.ndarray:
    """Read an image file as RGB uint8 of shape (height, width, 3).

    PNG/JPEG/BMP/TIFF in 8 or 16 bits, grayscale, RGB, RGBA or palette; `.dcm` through pydicom.
    Raises ImageReadError naming the file when it is missing, truncated or not an image.
    """
    height, width = _check_size(size)
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(p, "no such file")
    if p.suffix.lower() in DICOM_SUFFIXES:
        return to_rgb_uint8(read_dicom(p), (height, width))
    try:
        with Image.open(p) as opened:
            opened.load()
            # phone/camera JPEGs carry their rotation in EXIF
            return _pil_to_rgb(ImageOps.exif_transpose(opened), (height, width))
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(p, _reason(exc)) from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.replace(os.linesep, " ").replace("\t", " ")


def _pil_to_rgb(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # more than 8 bits per pixel: scale through numpy so no precision is lost before resizing
        return to_rgb_uint8(np.asarray(img), size)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # transparent pixels become black, as a viewer on a dark background shows them
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    return _resize_rgb(img, width, height)


def _resize_rgb(img: Image.Image, width: int, height: int) -> np.ndarray:
    # resize before gray -> RGB: a third of the work, and the same pixels (channels resize independently)
    if img.size != (width, height):
        img = img.resize((width, height), _RESAMPLE)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def to_rgb_uint8(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Turn a decoded pixel array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) into RGB uint8 at ``size``.

    uint8 data keeps its values; other integer or float data is scaled by its own min..max to 0..255
    (the full window, as a viewer with no window settings shows it). Used for DICOM and `.npz` arrays too.
    """
    height, width = _check_size(size)
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]  # array data carries no compositing intent: drop alpha
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3) or arr.size == 0:
        raise EdgexferError(
            f"pixel array of shape {arr.shape} is not an image", "expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
        )
    if arr.dtype != np.uint8:
        arr = _scale_to_uint8(arr)
    img = Image.fromarray(np.ascontiguousarray(arr), mode="L" if arr.ndim == 2 else "RGB")
    return _resize_rgb(img, width, height)


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    data = arr.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.all():
        data = np.where(finite, data, np.nanmin(np.where(finite, data, np.nan)) if finite.any() else 0.0)
    low, high = float(data.min()), float(data.max())
    if high <= low:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.clip(np.round((data - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- DICOM


def read_dicom(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a DICOM file as display-ready pixels: uint8 (H, W) for grayscale, (H, W, 3) for colour.

    Applies Rescale Slope/Intercept, then Window Center/Width when present (else the full min..max
    range), and inverts MONOCHROME1 so that bone is bright as in MONOCHROME2. Multi-frame: first frame.
    """

    pydicom = require("pydicom", "reading DICOM files")
    p = Path(path)
    try:
        ds = pydicom.dcmread(p)
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types (InvalidDicomError, KeyError, AttributeError…)
        raise ImageReadError(p, f"not a readable DICOM image ({_reason(exc)})") from exc

    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    if samples == 3:
        # pydicom 3 returns YBR data converted to RGB by default
        return pixels if pixels.dtype == np.uint8 else _scale_to_uint8(pixels)
    if pixels.ndim != 2:
        raise ImageReadError(p, f"unsupported DICOM pixel layout {pixels.shape}")

    values = pixels.astype(np.float64)
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    values = values * slope + intercept

    window = _dicom_window(ds)
    if window is not None:
        display = _apply_window(values, *window)
    else:
        display = _scale_to_uint8(values)
    if str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        display = 255 - display  # MONOCHROME1: low values are white
    return display


def _first(value) -> float:
    # Window Center/Width may be multi-valued (several presets): the first one is the default view.
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _dicom_window(ds) -> tuple[float, float] | None:
    center = getattr(ds, "WindowCenter", None)
    width = getattr(ds, "WindowWidth", None)
    if center is None or width is None:
        return None
    try:
        c, w = _first(center), _first(width)
    except (ValueError, IndexError):
        return None
    return (c, w) if w >= 1 else None


def _apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """The DICOM linear VOI function (PS3.3 C.11.2.1.2.1) onto 0..255."""
    if width <= 1:
        return np.where(values > center - 0.5, 255, 0).astype(np.uint8)
    scaled = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)
