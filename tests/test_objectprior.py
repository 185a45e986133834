"""Object-prior pretraining: reading the object set, learning, determinism, caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vslrepro.data.errors import DataError
from vslrepro.methods.ezvsl import EZVSL
from vslrepro.objectprior import (
    load_object_set,
    load_or_pretrain,
    object_prior_path,
    pretrain_object_prior,
    random_resized_crop_flip,
)

TRAIN = dict(image_size=32, epochs=14, batch_size=32, lr=3e-3)


def squares_and_circles(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: a filled square, class 1: a filled disc; random colours, sizes and positions."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, 3, size, size), np.uint8)
    labels = np.arange(n) % 2
    for i in range(n):
        background, colour = rng.integers(0, 80, 3), rng.integers(150, 256, 3)
        r = rng.uniform(5, 9)
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        if labels[i] == 0:
            mask = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        images[i] = np.where(mask[None], colour[:, None, None], background[:, None, None])
    return torch.from_numpy(images), torch.from_numpy(labels)


@pytest.fixture(scope="module")
def shapes():
    return squares_and_circles(160)


@pytest.fixture(scope="module")
def trained(shapes):
    return pretrain_object_prior(*shapes, seed=0, **TRAIN)


def test_learns_well_above_chance(trained):
    state, info = trained
    assert info["clean_accuracy"] >= 0.8 and info["train_accuracy"] >= 0.8, info
    assert info["epoch_loss"][-1] < 0.6 * info["epoch_loss"][0]
    assert (info["n_images"], info["n_classes"]) == (160, 2)


def test_state_dict_is_the_ezvsl_image_encoder(trained):
    state, _ = trained
    model = EZVSL(backbone="small", image_weights=state)
    assert set(state) == set(model.imgnet.state_dict())
    for key, value in state.items():
        assert torch.equal(model.imgnet.state_dict()[key], value), key


def test_same_seed_same_weights_other_seed_other_weights(shapes, trained):
    again, _ = pretrain_object_prior(*shapes, seed=0, **TRAIN)
    assert all(torch.equal(again[k], v) for k, v in trained[0].items())
    other, _ = pretrain_object_prior(*shapes, seed=1, **{**TRAIN, "epochs": 1})
    assert not torch.equal(other["stages.0.conv.weight"], trained[0]["stages.0.conv.weight"])


def test_global_rng_untouched(shapes):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    pretrain_object_prior(*shapes, seed=5, **{**TRAIN, "epochs": 1})
    assert torch.equal(torch.rand(3), expected)


def test_cache_reuse_and_invalidation(tmp_path, shapes):
    images, labels = shapes[0][:32], shapes[1][:32]
    params = {**TRAIN, "epochs": 1}
    state, info = load_or_pretrain(tmp_path, "smoke", images, labels, seed=0, **params)
    path = object_prior_path(tmp_path, "smoke", 0)
    assert info["cached"] is False and path.is_file() and info["path"] == str(path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    cached_state, cached_info = load_or_pretrain(tmp_path, "smoke", images, labels, seed=0, **params)
    assert cached_info["cached"] is True
    assert all(torch.equal(cached_state[k], v) for k, v in state.items())
    _, retrained = load_or_pretrain(tmp_path, "smoke", images, labels, seed=0, **{**params, "lr": 1e-3})
    assert retrained["cached"] is False
    _, changed_data = load_or_pretrain(tmp_path, "smoke", images, 1 - labels, seed=0, **{**params, "lr": 1e-3})
    assert changed_data["cached"] is False
    # the cache file itself is accepted as image weights
    EZVSL(backbone="small", image_weights=path)
    with pytest.raises(ValueError, match="unknown object-prior parameters"):
        load_or_pretrain(tmp_path, "smoke", images, labels, epoch=3)


def write_object_set(root, images: torch.Tensor, labels: torch.Tensor, names=("square", "circle")):
    (root / "images").mkdir(parents=True)
    rows = ["id,class"]
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / "images" / f"obj{i:03d}.jpg", quality=95)
        rows.append(f"obj{i:03d},{names[int(label)]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


def test_load_object_set_round_trip(tmp_path, shapes):
    write_object_set(tmp_path, shapes[0][:6], shapes[1][:6])
    images, labels, classes = load_object_set(tmp_path)
    assert images.dtype == torch.uint8 and images.shape == (6, 3, 32, 32)
    assert classes == ["circle", "square"]
    assert labels.tolist() == [1, 0, 1, 0, 1, 0]
    assert (images.float() - shapes[0][:6].float()).abs().mean() < 8  # JPEG, not bit-exact


def test_load_object_set_errors_name_the_file(tmp_path, shapes):
    with pytest.raises(DataError, match="labels.csv"):
        load_object_set(tmp_path)
    write_object_set(tmp_path, shapes[0][:3], shapes[1][:3])
    (tmp_path / "images" / "obj001.jpg").unlink()
    with pytest.raises(DataError, match=r"obj001\.jpg.*missing"):
        load_object_set(tmp_path)
    (tmp_path / "images" / "obj001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"obj001\.jpg.*unreadable"):
        load_object_set(tmp_path)
    Image.new("RGB", (20, 20)).save(tmp_path / "images" / "obj001.jpg")
    with pytest.raises(DataError, match=r"obj001\.jpg is 20x20"):
        load_object_set(tmp_path)
    (tmp_path / "labels.csv").write_text("name,label\nobj000,square\n")
    with pytest.raises(DataError, match="header 'id,class'"):
        load_object_set(tmp_path)
    (tmp_path / "labels.csv").write_text("id,class\nobj000\n")
    with pytest.raises(DataError, match="line 2"):
        load_object_set(tmp_path)


def test_random_resized_crop_flip_identity_and_flip():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(16, 3, 20, 20, generator=g)
    out = random_resized_crop_flip(images, 10, torch.Generator().manual_seed(1))
    assert out.shape == (16, 3, 10, 10)
    assert out.min() >= images.min() - 1e-6 and out.max() <= images.max() + 1e-6
    same = random_resized_crop_flip(images, 10, torch.Generator().manual_seed(1))
    assert torch.equal(out, same)
    whole = random_resized_crop_flip(images, 20, torch.Generator().manual_seed(2), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    flipped = [torch.allclose(whole[i], images[i], atol=1e-5) or torch.allclose(whole[i], images[i].flip(-1), atol=1e-5)
               for i in range(16)]
    assert all(flipped)
    assert any(torch.allclose(whole[i], images[i].flip(-1), atol=1e-5) for i in range(16))
