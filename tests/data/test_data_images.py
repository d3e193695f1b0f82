"""Every image format becomes RGB uint8 at the model's size; unreadable files raise ImageReadError."""

import sys

import numpy as np
import pytest
from PIL import Image

from edgexfer.data.images import ImageReadError, load_image, to_rgb_uint8
from edgexfer.errors import EdgexferError


def gradient(h=20, w=30, dtype=np.uint8, low=0, high=255):
    return np.linspace(low, high, h * w).reshape(h, w).astype(dtype)


def write_dicom(path, pixels, photometric="MONOCHROME2", window=None, slope=None, intercept=None, frames=1):
    """A small uncompressed DICOM file written with pydicom (16-bit unsigned grayscale)."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientName = "Synthetic^Test"
    pixels = np.asarray(pixels, dtype=np.uint16)
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.Rows, ds.Columns = pixels.shape[1:]
    else:
        ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    ds.PixelData = pixels.tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def test_gray_png_keeps_values_in_three_equal_channels(tmp_path):
    pixels = gradient()
    Image.fromarray(pixels, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png", (20, 30))
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], pixels)


def test_resize_to_height_width(tmp_path):
    Image.fromarray(gradient(), mode="L").save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png", (12, 7)).shape == (12, 7, 3)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_gray_scaled_by_its_range(tmp_path, suffix):
    pixels = gradient(dtype=np.uint16, low=1000, high=5000)  # 12-bit data in a 16-bit file
    Image.fromarray(pixels).save(tmp_path / f"g{suffix}")
    assert Image.open(tmp_path / f"g{suffix}").mode.startswith("I")
    out = load_image(tmp_path / f"g{suffix}", (20, 30))
    assert out[..., 0].min() == 0 and out[..., 0].max() == 255
    expected = np.round((pixels.astype(float) - 1000) * 255 / 4000).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)


def test_rgba_composited_on_black(tmp_path):
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:5, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png", (10, 10))
    np.testing.assert_array_equal(out[:5], np.broadcast_to([200, 0, 0], (5, 10, 3)))
    np.testing.assert_array_equal(out[5:], 0)


@pytest.mark.parametrize("suffix,mode", [(".jpg", "RGB"), (".bmp", "RGB"), (".png", "P"), (".tiff", "L"), (".png", "LA")])
def test_other_formats_and_modes(tmp_path, suffix, mode):
    img = Image.fromarray(np.stack([gradient()] * 3, axis=-1), mode="RGB").convert(mode)
    img.save(tmp_path / f"x{suffix}")
    out = load_image(tmp_path / f"x{suffix}", (16, 16))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert out.max() > 100  # the content survived


def test_array_conversion():
    assert to_rgb_uint8(np.zeros((5, 6, 1), np.uint8), (5, 6)).shape == (5, 6, 3)
    floats = to_rgb_uint8(np.linspace(0, 1, 30).reshape(5, 6), (5, 6))
    assert floats.min() == 0 and floats.max() == 255
    with pytest.raises(EdgexferError, match="not an image"):
        to_rgb_uint8(np.zeros((5, 6, 2)), (5, 6))


def test_dicom_window_applied(tmp_path):
    pixels = np.array([[0, 890, 1000, 1110, 4000]] * 4)
    write_dicom(tmp_path / "w.dcm", pixels, window=(1000, 201))
    out = load_image(tmp_path / "w.dcm", (4, 5))[0, :, 0]
    # linear VOI: below c-0.5-(w-1)/2 → 0, above c-0.5+(w-1)/2 → 255, centre → middle grey
    assert out[0] == 0 and out[1] == 0 and out[3] == 255 and out[4] == 255
    assert 125 <= out[2] <= 130


def test_dicom_rescale_before_window(tmp_path):
    pixels = np.array([[0, 1000, 2000]] * 3)
    # stored 1000 → -24 HU with slope 1 and intercept -1024: a window centred on -24 shows it mid-grey
    write_dicom(tmp_path / "r.dcm", pixels, window=(-24, 101), slope=1, intercept=-1024)
    out = load_image(tmp_path / "r.dcm", (3, 3))[0, :, 0]
    assert out[0] == 0 and out[2] == 255 and 125 <= out[1] <= 130


def test_dicom_without_window_uses_full_range_and_monochrome1_is_inverted(tmp_path):
    pixels = gradient(dtype=np.uint16, low=100, high=3000)
    write_dicom(tmp_path / "m2.dcm", pixels)
    write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1")
    m2 = load_image(tmp_path / "m2.dcm", (20, 30))
    m1 = load_image(tmp_path / "m1.dcm", (20, 30))
    assert m2[..., 0].min() == 0 and m2[..., 0].max() == 255
    np.testing.assert_array_equal(m1, 255 - m2)


def test_dicom_multiframe_first_frame(tmp_path):
    frames = np.stack([gradient(dtype=np.uint16, high=4000), np.zeros((20, 30), np.uint16)])
    write_dicom(tmp_path / "mf.dcm", frames, frames=2)
    assert load_image(tmp_path / "mf.dcm", (20, 30)).max() == 255


def test_dicom_without_pydicom_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "x.dcm").write_bytes(b"\0" * 200)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import fails as if not installed
    with pytest.raises(EdgexferError, match=r"edgexfer\[dicom\]"):
        load_image(tmp_path / "x.dcm", (8, 8))


@pytest.mark.parametrize(
    "name,content",
    [("text.png", b"this is not an image"), ("empty.jpg", b""), ("junk.dcm", b"not dicom at all" * 20)],
)
def test_unreadable_files_raise_with_the_path(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageReadError) as info:
        load_image(tmp_path / name, (8, 8))
    assert name in str(info.value) and info.value.reason


def test_truncated_png_raises(tmp_path):
    Image.fromarray(gradient(64, 64)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="t.png"):
        load_image(tmp_path / "t.png", (8, 8))


def test_missing_file_and_bad_size(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "absent.png", (8, 8))
    Image.fromarray(gradient()).save(tmp_path / "g.png")
    with pytest.raises(EdgexferError, match="not positive"):
        load_image(tmp_path / "g.png", (0, 8))
