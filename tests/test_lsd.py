"""Local shape descriptors: lsd-lite's numbers (when it is installed), their meaning on a disc, background 0."""

import numpy as np
import pytest
from helpers import cells

from srseg.lsd import local_shape_descriptors, n_channels


def _disc(n=64, r=20):
    yy, xx = np.mgrid[0:n, 0:n]
    return ((yy - n // 2) ** 2 + (xx - n // 2) ** 2 <= r**2).astype(np.uint64)


def test_disc_descriptors_mean_what_they_say():
    lab = _disc()
    lsd = local_shape_descriptors(lab, 4.0)
    assert lsd.shape == (n_channels(2), 64, 64) and lsd.dtype == np.float32
    assert lsd.min() >= 0 and lsd.max() <= 1
    assert not lsd[:, lab == 0].any()  # background is 0 in every channel
    centre = lsd[:, 32, 32]
    # at the centre of a disc much wider than sigma: no offset to the window's centre of mass (0.5),
    # isotropic variance (sigma^2 / sigma^2 = 1), no correlation (0.5), the Gaussian's full mass
    np.testing.assert_allclose(centre[:5], [0.5, 0.5, 1.0, 1.0, 0.5], atol=0.02)
    # at the disc's top edge the window's mass lies below: offset y > 0.5, offset x = 0.5
    edge = lsd[:, 32 - 19, 32]
    assert edge[0] > 0.6 and abs(edge[1] - 0.5) < 0.02 and edge[5] < centre[5]


@pytest.mark.parametrize("dims,downsample,side,n", [(2, 1, 48, 8), (2, 2, 48, 8), (3, 1, 48, 8), (2, 2, 116, 60)])
def test_same_numbers_as_lsd_lite(dims, downsample, side, n):
    # the last case is a training patch: many cells, packed into several filter groups (srseg.lsd._pack)
    lsd_lite = pytest.importorskip("lsd_lite")
    _, lab = cells((3, side, side), n, seed=1)
    lab = lab[0] if dims == 2 else lab
    sigma, voxel = ((30.0, 30.0), (4, 4)) if dims == 2 else ((60.0, 30.0, 30.0), (50, 10, 10))
    ours = local_shape_descriptors(lab, sigma, voxel, downsample)
    theirs = lsd_lite.get_lsds(lab, sigma, voxel_size=voxel, downsample=downsample)
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_large_ids_and_3d_channels():
    lab = _disc(32, 10)[None].repeat(3, 0) * np.uint64(2**40)
    lsd = local_shape_descriptors(lab, (50.0, 20.0, 20.0), (50, 10, 10))
    assert lsd.shape == (10, 3, 32, 32) and lsd[:, lab == 0].max() == 0 and lsd[-1, 1, 16, 16] > 0
