"""Image sources, conversions, patches and splits."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from spade.data import (PatchDataset, check_disjoint, dihedral, embedded_mri, embedded_photos, example_pair,
                        folder_images, load_images, read_image, rgb_to_y, split)
from spade.errors import SpadeError
from spade.physics import build_physics


def test_embedded_sources_ship_with_the_packages():
    photos = embedded_photos()
    assert len(photos) >= 10 and all(p.pixels.dtype == np.uint8 and p.pixels.ndim == 2 for p in photos)
    mri = embedded_mri()
    assert mri[0].name == "s1045" and mri[0].shape == (256, 256)
    assert 150 < mri[0].pixels.max() <= 255 and mri[0].pixels.mean() > 10  # a real 8-bit MR slice


def test_rgb_to_y_matches_opencv_fixed_point():
    rgb = np.random.default_rng(1).integers(0, 256, (3, 50, 60), dtype=np.uint8)
    y = rgb_to_y(rgb)
    ref = np.round(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
    assert y.dtype == np.uint8 and np.abs(y.astype(int) - ref).max() <= 1
    grey = np.repeat(rgb[:1], 3, axis=0)
    assert np.array_equal(rgb_to_y(grey), rgb[0])


def test_folder_formats(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    PILImage.fromarray(grey).save(tmp_path / "a.png")
    PILImage.fromarray(grey).save(tmp_path / "b.tif")
    PILImage.fromarray(rgb).save(tmp_path / "c.bmp")
    PILImage.fromarray(rgb).save(tmp_path / "d.jpg", quality=95)
    np.save(tmp_path / "e.npy", grey.astype(np.float32) / 255)
    (tmp_path / "notes.txt").write_text("ignored")
    images = folder_images(tmp_path)
    assert [i.name for i in images] == ["a", "b", "c", "d", "e"]
    assert np.array_equal(images[0].pixels, grey) and np.array_equal(images[1].pixels, grey)
    assert np.array_equal(images[2].pixels, rgb_to_y(np.moveaxis(rgb, -1, 0)))
    assert images[4].pixels.dtype == np.float32
    assert torch.allclose(images[4].tensor(), images[0].tensor(), atol=1e-6)
    colour = folder_images(tmp_path, channels="rgb")
    assert colour[2].pixels.shape == (3, 20, 30) and colour[0].pixels.shape == (3, 20, 30)


def test_bad_images_and_folders(tmp_path):
    with pytest.raises(SpadeError, match="does not exist"):
        folder_images(tmp_path / "none")
    with pytest.raises(SpadeError, match="holds no images"):
        folder_images(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(SpadeError, match="cannot read image .*broken.png"):
        folder_images(tmp_path)
    np.save(tmp_path / "nan.npy", np.full((4, 4), np.nan, dtype=np.float32))
    with pytest.raises(SpadeError, match="NaN"):
        read_image(tmp_path / "nan.npy")
    with pytest.raises(SpadeError, match="neither a folder"):
        load_images("no-such-set")


def test_patches_are_reproducible_and_augmented():
    images = embedded_photos()[:3]
    ds = PatchDataset(images, 33, 50, seed=7)
    assert ds[3].shape == (1, 33, 33)
    assert torch.equal(ds[3], PatchDataset(images, 33, 50, seed=7)[3])
    assert not torch.equal(ds[3], PatchDataset(images, 33, 50, seed=8)[3])
    x = torch.arange(6.0).reshape(1, 2, 3)
    group = {tuple(dihedral(x, k).flatten().tolist()) + (dihedral(x, k).shape,) for k in range(8)}
    assert len(group) == 8
    with pytest.raises(SpadeError, match="smaller than"):
        PatchDataset(images, 2000, 5)


def test_split_is_disjoint_by_content():
    images = embedded_photos()
    train, test = split(images, 3, seed=0)
    assert len(train) == len(images) - 3 and len(test) == 3
    assert not {i.name for i in train} & {i.name for i in test}
    with pytest.raises(SpadeError, match="overlap"):
        check_disjoint(train, [train[0]])
    with pytest.raises(SpadeError, match="cannot hold out"):
        split(images, len(images))


def test_benchmark_sets(bench_data):
    set11 = load_images("set11")
    assert len(set11) == 11 and {i.shape for i in set11} == {(256, 256), (512, 512)}
    assert len(load_images("brain50")) == 50


def test_example_pair_shapes():
    for cfg, xs, ys in [({"kind": "cs", "ratio": 0.1}, (2, 1, 264, 264), (2, 109, 8, 8)),
                        ({"kind": "mri", "shape": [64, 48]}, (2, 2, 64, 48), (2, 1, 64, 48, 2)),
                        ({"kind": "sr", "scale": 4}, (2, 1, 256, 256), (2, 1, 64, 64))]:
        x, y = example_pair(build_physics(cfg), batch=2)
        assert x.shape == xs and y.shape == ys and 0 <= float(x.min()) and float(x.max()) <= 1
