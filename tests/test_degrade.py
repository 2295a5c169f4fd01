"""Synthetic degradations: seeded, and changing real photographs the way blur and rain do."""

from __future__ import annotations

import numpy as np
import pytest

from irdeploy.core.images import read_image, sample_path
from irdeploy.core.pairs import find_pairs
from irdeploy.model.degrade import (
    apply_kernel, blur, degrade, degrade_folder, motion_blur, rain, random_motion_kernel, splat_kernel,
)
from irdeploy.runtime.cli import main


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return read_image(sample_path())[:160, :200]


def _gradient_energy(image: np.ndarray) -> float:
    return float(np.mean(np.abs(np.diff(image, axis=0))) + np.mean(np.abs(np.diff(image, axis=1))))


@pytest.mark.parametrize("kind", ["blur", "rain"])
def test_same_seed_same_result_other_seed_other_result(photo, kind):
    a = degrade(photo, kind, np.random.default_rng(3))
    b = degrade(photo, kind, np.random.default_rng(3))
    c = degrade(photo, kind, np.random.default_rng(4))
    assert np.array_equal(a, b)
    assert not np.allclose(a, c, atol=1e-3)
    assert a.shape == photo.shape and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0


def test_motion_kernels_are_normalised_paths():
    rng = np.random.default_rng(0)
    for _ in range(20):
        k = random_motion_kernel(rng, size=31)
        assert k.shape == (31, 31)
        assert k.min() >= 0.0 and k.sum() == pytest.approx(1.0, abs=1e-5)
        # A path, not a disc: a small share of the square carries the weight.
        assert 3 <= np.count_nonzero(k > 1e-4) < 31 * 31 // 4
    with pytest.raises(ValueError, match="odd"):
        random_motion_kernel(rng, size=30)


def test_apply_kernel_matches_the_box_blur_and_a_delta_is_identity(photo):
    delta = splat_kernel(np.zeros((1, 2)), 5)
    assert delta[2, 2] == pytest.approx(1.0)
    np.testing.assert_allclose(apply_kernel(photo, delta), photo, atol=1e-7)
    box = np.zeros((5, 5), np.float32)
    box[2, :] = 1.0 / 5
    np.testing.assert_allclose(apply_kernel(photo, box), motion_blur(photo, 5), atol=1e-6)


def test_blur_removes_detail_and_keeps_brightness(photo):
    blurred = blur(photo, np.random.default_rng(0))
    assert _gradient_energy(blurred) < 0.8 * _gradient_energy(photo)
    assert blurred.mean() == pytest.approx(photo.mean(), abs=0.01)


def test_rain_adds_bright_near_vertical_streaks(photo):
    rainy = rain(photo, np.random.default_rng(0))
    streaks = (rainy - photo).mean(-1)
    assert streaks.min() >= -1e-6  # screen blending only brightens
    assert 0.01 < np.mean(streaks > 0.05) < 0.8
    # Streaks run top to bottom (tilt <= 25 degrees) and are a few pixels wide: 4 pixels apart,
    # the streak layer still correlates along the columns, hardly along the rows.
    centred = streaks - streaks.mean()
    vertical = np.mean(centred[4:] * centred[:-4])
    horizontal = np.mean(centred[:, 4:] * centred[:, :-4])
    assert vertical > 3 * abs(horizontal)


def test_degrade_folder_writes_reproducible_pairs(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        (clean / name).write_bytes(sample_path(name).read_bytes())
    first = degrade_folder(clean, tmp_path / "a", "rain", seed=7, crops=2, size=48)
    degrade_folder(clean, tmp_path / "b", "rain", seed=7, crops=2, size=48)
    other = degrade_folder(clean, tmp_path / "c", "rain", seed=8, crops=2, size=48)
    assert first.pairs == ["chelsea_000.png", "chelsea_001.png", "coffee_000.png", "coffee_001.png"] == other.pairs
    pairs = find_pairs(tmp_path / "a")
    assert [p.name for p in pairs] == [n[:-4] for n in first.pairs]
    assert {(p.height, p.width) for p in pairs} == {(48, 48)}
    for sub in ("input", "target"):
        for name in first.pairs:
            assert (tmp_path / "a" / sub / name).read_bytes() == (tmp_path / "b" / sub / name).read_bytes()
    assert (tmp_path / "a" / "input" / first.pairs[0]).read_bytes() != (tmp_path / "c" / "input" / first.pairs[0]).read_bytes()

    with pytest.raises(ValueError, match="together"):
        degrade_folder(clean, tmp_path / "d", crops=2)
    with pytest.raises(ValueError, match="chelsea.png: 451x300 is smaller than the crop size 320"):
        degrade_folder(clean, tmp_path / "d", crops=1, size=320)
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade_folder(clean, tmp_path / "d", "snow")


def test_degrade_cli(tmp_path, capsys):
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "coffee.png").write_bytes(sample_path("coffee.png").read_bytes())
    assert main(["degrade", str(clean), "-o", str(tmp_path / "data"), "--kind", "blur", "--crops", "3", "--size", "64"]) == 0
    assert "wrote 3 blur pairs" in capsys.readouterr().out
    assert len(find_pairs(tmp_path / "data")) == 3
    assert main(["degrade", str(tmp_path / "missing"), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"irdeploy degrade: error: {tmp_path / 'missing'}: no such folder"]
