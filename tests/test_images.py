"""Image IO: every format, depth and channel layout restore accepts, round-tripped through real files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from irdeploy.core.images import ImageError, load_image, read_image, sample_path, write_image


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return read_image(sample_path())[:48, :64]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("layout", ["gray", "rgb", "rgba", "gray+alpha"])
def test_lossless_round_trip(tmp_path, photo, suffix: str, depth: int, layout: str) -> None:
    pixels = photo.mean(-1, keepdims=True) if layout.startswith("gray") else photo
    alpha = np.linspace(0, 1, 64, dtype=np.float32)[None].repeat(48, 0) if layout in ("rgba", "gray+alpha") else None
    path = write_image(tmp_path / f"x{suffix}", pixels, alpha=alpha, bit_depth=depth)
    image = load_image(path)
    assert image.bit_depth == depth
    step = 1 / (255 if depth == 8 else 65535)
    # gray + alpha at 16 bits is stored as RGBA (OpenCV writes no two-channel PNG)
    expected = np.repeat(pixels, 3, -1) if image.pixels.shape[-1] == 3 and pixels.shape[-1] == 1 else pixels
    assert image.pixels.shape == expected.shape
    assert np.abs(image.pixels - expected).max() <= step / 2 + 1e-7
    if alpha is None:
        assert image.alpha is None
    else:
        assert np.abs(image.alpha - alpha).max() <= step / 2 + 1e-7


def test_sixteen_bit_colour_keeps_its_low_byte(tmp_path) -> None:
    values = np.arange(3 * 8 * 8, dtype=np.float32).reshape(8, 8, 3) * 7 / 65535  # 7-unit steps: below one 8-bit level
    path = write_image(tmp_path / "deep.png", values, bit_depth=16)
    with Image.open(path) as im:
        assert np.unique(np.asarray(im)).size < np.unique(values).size  # what Pillow alone would give
    assert np.array_equal(np.round(load_image(path).pixels * 65535), np.round(values * 65535))


@pytest.mark.parametrize("suffix", [".jpg", ".bmp"])
def test_eight_bit_formats(tmp_path, photo, suffix: str) -> None:
    image = load_image(write_image(tmp_path / f"x{suffix}", photo))
    assert image.pixels.shape == photo.shape and image.bit_depth == 8 and image.alpha is None
    assert np.abs(image.pixels - photo).mean() < (0.02 if suffix == ".jpg" else 0.002)


def test_palette_and_orientation(tmp_path, photo) -> None:
    rgb = Image.fromarray((photo * 255).astype(np.uint8))
    rgb.convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").pixels.shape == photo.shape
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    rgb.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").pixels.shape == (64, 48, 3)


def test_read_image_converts_channels(tmp_path, photo) -> None:
    gray = read_image(write_image(tmp_path / "g.png", photo.mean(-1)))
    assert gray.shape == photo.shape and np.array_equal(gray[..., 0], gray[..., 2])
    luma = read_image(sample_path(), channels=1)
    assert luma.shape[-1] == 1 and abs(float(luma.mean()) - float(read_image(sample_path()).mean())) < 0.05


def test_bad_files_fail_in_one_line_naming_the_file(tmp_path) -> None:
    (tmp_path / "junk.png").write_bytes(b"not an image")
    data = sample_path().read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    jpeg = tmp_path / "cut.jpg"
    write_image(jpeg, read_image(sample_path()))
    jpeg.write_bytes(jpeg.read_bytes()[:2000])
    for name in ("junk.png", "cut.png", "cut.jpg", "absent.png"):
        with pytest.raises(ImageError) as err:
            load_image(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value)


def test_writes_that_cannot_work_leave_nothing(tmp_path, photo) -> None:
    with pytest.raises(ImageError, match="cannot store 16 bits"):
        write_image(tmp_path / "x.jpg", photo, bit_depth=16)
    with pytest.raises(ImageError, match="keeps no alpha"):
        write_image(tmp_path / "x.jpg", photo, alpha=photo[..., 0])
    with pytest.raises(ImageError, match="cannot write image"):
        write_image(tmp_path / "missing" / "x.png", photo)
    assert list(tmp_path.iterdir()) == []
