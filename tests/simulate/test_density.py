import numpy as np
import pytest
from scipy import ndimage

from cryoml import CryomlError
from cryoml.simulate import (
    builtin_complexes,
    density_from_atoms,
    load_density,
    pad_or_crop,
    resample_fourier,
)


def _centred(volume):
    centre = np.array(ndimage.center_of_mass(np.clip(volume, 0, None)))
    return ndimage.shift(volume, np.array(volume.shape) // 2 - centre, order=3)


def test_there_are_at_least_eight_visibly_distinct_builtin_complexes():
    names = builtin_complexes()
    assert len(names) >= 8
    volumes = [load_density(n, voxel_size=9.2, box=40) for n in names if n != "klh"]
    flat = np.array([v.ravel() for v in volumes])
    corr = np.corrcoef(flat)
    off_diagonal = corr[~np.eye(len(volumes), dtype=bool)]
    assert off_diagonal.max() < 0.9


def test_builtin_density_is_normalised_to_protein_interior_one():
    volume = load_density("barrel_d7", voxel_size=9.2, box=40)
    assert volume.dtype == np.float32 and volume.shape == (40, 40, 40)
    assert 0.9 < volume[volume > 0.5 * volume.max()].mean() < 1.1
    assert abs(np.median(volume[0])) < 1e-3


def test_fourier_resampling_preserves_a_smooth_blob_at_a_non_integer_ratio():
    grid = (np.arange(48) - 24) * 10.0
    zz, yy, xx = np.meshgrid(grid, grid, grid, indexing="ij")
    blob = np.exp(-(zz**2 + yy**2 + (xx - 30) ** 2) / (2 * 40.0**2)).astype(np.float32)
    out = resample_fourier(blob, voxel_size=10.0, new_voxel_size=9.2)
    assert out.shape == (52, 52, 52)
    new = (np.arange(52) - 26) * 9.2
    zz, yy, xx = np.meshgrid(new, new, new, indexing="ij")
    expected = np.exp(-(zz**2 + yy**2 + (xx - 30) ** 2) / (2 * 40.0**2))
    assert np.abs(out - expected).max() < 0.01


def test_pad_or_crop_keeps_the_centre_voxel():
    volume = np.zeros((9, 9, 9), np.float32)
    volume[4, 4, 4] = 1
    assert pad_or_crop(volume, 16)[8, 8, 8] == 1
    assert pad_or_crop(pad_or_crop(volume, 16), 9)[4, 4, 4] == 1


def test_unknown_density_names_are_refused_with_the_choices():
    with pytest.raises(CryomlError, match="ribosome_like"):
        load_density("no_such_complex", voxel_size=10)


def test_cropping_away_mass_warns():
    from cryoml import CryomlWarning

    with pytest.warns(CryomlWarning, match="cuts away"):
        load_density("klh", voxel_size=9.2, box=20)


def test_shared_map_loads_by_name_at_another_voxel_size(structures):
    volume = load_density("4v4r", voxel_size=9.2, box=40)
    assert volume.shape == (40, 40, 40)
    assert volume[20, 20, 20] > 0.3


def test_pdb_to_map_matches_the_reference_1bxn_map(structures):
    from cryoml.io import read_mrc

    reference = np.asarray(read_mrc(structures / "maps_10A" / "1bxn.mrc").data, np.float32)
    model = density_from_atoms(
        structures / "pdb" / "1bxn.pdb", voxel_size=10.0, resolution=10.0, box=reference.shape[0]
    )
    corr = np.corrcoef(_centred(model).ravel(), _centred(reference).ravel())[0, 1]
    assert corr > 0.9  # measured 0.965
