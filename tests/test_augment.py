"""Training augmentation of the ruler: seeded, image and labels stay registered, section defects, intensity."""

import numpy as np
from helpers import cells

from srseg import affinity, augment
from srseg.config import section

AUG = section("affinity")["augment"]


def _volume():
    image, labels = cells((6, 64, 64), 10, seed=3)
    return image, labels


def test_geometry_keeps_image_and_labels_registered():
    """An image that is a function of the labels stays that function after rotation, elastic and flips."""
    _, labels = _volume()
    image = np.where(labels > 0, 0.8, 0.1).astype(np.float32)
    rng = np.random.default_rng(0)
    aug = AUG | {"rotate_deg": 30.0, "elastic_sigma": 3.0}
    for _ in range(5):
        geometry = augment.sample_geometry(rng, 40, aug)
        assert geometry[3] is not None and geometry[3].shape == (2, 40, 40)
        img, lab = augment.cut(image, labels, 1, 3, 8, 8, 40, augment.geometry_margin(40, aug), geometry, 3)
        assert img.shape == lab.shape == (3, 40, 40)
        assert set(np.unique(lab)) <= set(np.unique(labels))  # nearest neighbour: no new IDs
        inside = lab > 0
        # linear interpolation blurs the image only where a membrane is within a pixel
        assert np.mean(np.abs(img[inside] - 0.8) < 0.05) > 0.8 and np.mean(img[~inside] < 0.45) > 0.7


def test_sampling_is_seeded_and_changes_the_patch():
    image, labels = _volume()
    vol = [(image, labels, [50, 10, 10])]
    targets = affinity.Targets(section("affinity", {"dim": 3}))
    aug = section("affinity", {"dim": 3})["augment"]
    a = affinity.sample_batch(vol, np.random.default_rng(5), 3, 24, 3, 2, aug, targets)
    b = affinity.sample_batch(vol, np.random.default_rng(5), 3, 24, 3, 2, aug, targets)
    c = affinity.sample_batch(vol, np.random.default_rng(6), 3, 24, 3, 2, aug, targets)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    x, aff, lsd, fg = a
    assert x.shape == (3, 1, 2, 24, 24) and aff.shape == (3, 3 + 2, 2, 24, 24)
    assert lsd.shape == (3, 10, 2, 24, 24) and fg.shape == (3, 1, 2, 24, 24)
    assert not lsd[np.broadcast_to(fg == 0, lsd.shape)].any()  # LSDs are 0 off the cells


def test_section_defects():
    _, labels = _volume()
    image = np.where(labels > 0, 0.8, 0.1).astype(np.float32)
    rng = np.random.default_rng(1)
    dropped = augment.drop_sections(image, rng, AUG | {"missing_section": 1.0})
    assert not dropped.any() and image.any()  # the input is not changed
    img, lab = augment.shift_sections(image, labels, rng, AUG | {"shifted_section": 1.0, "shift_px": 3})
    assert np.array_equal(img[0], image[0]) and not np.array_equal(img[1:], image[1:])
    assert np.array_equal(img > 0.5, (lab > 0) | (img > 0.5))  # labels moved with the image
    same = augment.shift_sections(image, labels, rng, AUG | {"shifted_section": 0.0})
    assert same[0] is image


def test_intensity_augmentation_is_seeded_and_in_range():
    patch = np.random.default_rng(0).random((1, 24, 24), dtype=np.float32)
    aug = AUG | {"prob": 1.0}
    a = augment.augment_intensity(patch, np.random.default_rng(3), aug)
    b = augment.augment_intensity(patch, np.random.default_rng(3), aug)
    assert np.array_equal(a, b) and not np.array_equal(a, patch)
    assert a.min() >= 0 and a.max() <= 1


def test_elastic_field_is_the_cubic_spline_of_its_control_points():
    """The separable W g W^T form gives what interpolating each pixel with map_coordinates(order=3) gives."""
    from scipy import ndimage

    for side in (17, 124):
        field = augment._elastic_field(side, np.random.default_rng(5), 40.0, 2.0)
        n = max(2, int(np.ceil(side / 40.0)) + 1)
        grid = np.random.default_rng(5).normal(0.0, 2.0, (2, n, n))
        t = np.linspace(0, n - 1, side)
        yy, xx = np.meshgrid(t, t, indexing="ij")
        expected = np.stack([ndimage.map_coordinates(g, [yy, xx], order=3, mode="nearest") for g in grid])
        np.testing.assert_allclose(field, expected, atol=1e-12)
