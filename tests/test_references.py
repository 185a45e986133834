"""Reference methods (random map, centre prior), the confidence scores and the method registry."""

from __future__ import annotations

import math

import pytest
import torch

from vslrepro.factory import arguments, evaluation_model, training_model
from vslrepro.methods import (
    METHODS,
    LocalizationMethod,
    build_method,
    confidence_scores,
    display_name,
    method_class,
    register,
)
from vslrepro.methods.references import CenterPrior, RandomMap, gaussian_center_map


def batch(b: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 56, 56, generator=g), torch.randn(b, 1, 65, 64, generator=g)


def test_random_map_reproducible_and_independent_of_batch_order():
    image, spec = batch()
    a = RandomMap(seed=3).localize(image, spec)
    b = RandomMap(seed=3).localize(image, spec)
    assert torch.equal(a.maps, b.maps)
    for kind in a.confidence:
        assert torch.equal(a.confidence[kind], b.confidence[kind])
    order = torch.tensor([3, 0, 4, 1, 2])
    permuted = RandomMap(seed=3).localize(image[order], spec[order])
    assert torch.equal(permuted.maps, a.maps[order])
    single = RandomMap(seed=3).localize(image[2:3], spec[2:3])
    assert torch.equal(single.maps[0], a.maps[2])


def test_random_map_depends_on_seed_and_pair_and_is_uniform():
    image, spec = batch(8)
    raw = RandomMap(seed=0).raw_maps(image, spec)
    assert raw.shape == (8, 7, 7) and raw.min() >= 0 and raw.max() < 1
    assert not torch.equal(raw, RandomMap(seed=1).raw_maps(image, spec))
    # the same frame with another clip's audio (an automated negative) gets another map
    other = RandomMap(seed=0).raw_maps(image, spec.roll(1, dims=0))
    assert not torch.equal(raw, other)
    assert len({tuple(m.flatten().tolist()) for m in raw}) == 8
    values = RandomMap(seed=0).raw_maps(*batch(64, seed=1)).flatten()
    assert abs(values.mean().item() - 0.5) < 0.03 and abs(values.var().item() - 1 / 12) < 0.01
    maps = RandomMap(seed=0).localize(image, spec).maps
    assert maps.shape == (8, 224, 224) and maps.dtype == torch.float32


def test_center_prior_map_and_constant_confidence():
    image, spec = batch(4)
    maps, confidence = CenterPrior(sigma=0.25).localize(image, spec)
    assert maps.shape == (4, 224, 224)
    assert torch.equal(maps[0], maps[3])
    assert torch.equal(maps[0], maps[0].flip(0)) and torch.equal(maps[0], maps[0].flip(1))
    assert torch.equal(maps[0], maps[0].t())
    centre = maps[0, 111:113, 111:113]
    assert torch.all(centre == maps[0].max())
    # pixel (row 99, col 149) of a 200-px map: centre offsets (-0.0025, 0.2475) of the side
    m = gaussian_center_map(200, 0.25)
    d2 = 0.0025**2 + 0.2475**2
    assert m[99, 149].item() == pytest.approx(math.exp(-d2 / (2 * 0.25**2)), rel=1e-6)
    for kind in ("max", "topk_mean"):
        assert torch.all(confidence[kind] == confidence[kind][0])
    assert CenterPrior().raw_maps(image, spec).shape == (4, 7, 7)
    with pytest.raises(ValueError, match="sigma"):
        CenterPrior(sigma=0)


def test_references_are_not_trainable():
    image, spec = batch(2)
    for method in (RandomMap(), CenterPrior()):
        assert method.trainable is False and method.trains_as is None
        with pytest.raises(TypeError, match="not trainable"):
            method(image, spec)


def test_confidence_scores_against_plain_computation():
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 10, 10, generator=g) * 5
    scores = confidence_scores(maps, (-10.0, 10.0))
    for i in range(3):
        values = sorted(maps[i].flatten().tolist(), reverse=True)
        assert scores["max"][i].item() == pytest.approx(values[0])
        top = values[: 100 // 4]
        assert scores["topk_mean"][i].item() == pytest.approx(sum((v + 10) / 20 for v in top) / len(top), rel=1e-6)
    with pytest.raises(ValueError, match="hi > lo"):
        confidence_scores(maps, (1.0, 1.0))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        confidence_scores(maps[0], (0.0, 1.0))


def test_registry_names_classes_and_errors():
    assert {"ezvsl", "ezvsl_ogl", "random", "center"} <= set(METHODS)
    ezvsl = method_class("ezvsl")
    assert (ezvsl.trainable, ezvsl.run_method(), ezvsl.checkpoints()) == (True, "ezvsl", ("best", "latest"))
    ogl = method_class("ezvsl_ogl")
    assert (ogl.trainable, ogl.run_method(), display_name("ezvsl_ogl")) == (False, "ezvsl", "EZ-VSL + OGL")
    assert method_class("center").run_method() is None and method_class("center").checkpoints() == ("none",)
    assert display_name("not_registered") == "not_registered"
    method = build_method("random", seed=4)
    assert isinstance(method, RandomMap) and method.seed == 4 and method.name == "random"
    assert build_method("ezvsl", backbone="small", dim=32).dim == 32
    known = "attention10k, center, coarsetofine, dmc, dsol, ezvsl, ezvsl_ogl"
    with pytest.raises(ValueError, match=f"unknown method 'lvs2'; known methods: {known}"):
        build_method("lvs2")
    with pytest.raises(ValueError, match="unknown method"):
        method_class("nope")
    with pytest.raises(ValueError, match="bad configuration for method 'center'.*sigma"):
        build_method("center", sigmaa=0.3)


def test_methods_build_from_a_profile_dict():
    params = {"seed": 7, "model": {"backbone": "small", "dim": 16},
              "methods": {"ezvsl": {"tau": 0.05}}, "references": {"center": {"sigma": 0.3}, "random": None}}
    assert arguments(params, "ezvsl") == {"backbone": "small", "dim": 16, "tau": 0.05}
    assert evaluation_model(params, "flickr", "random", None).seed == 7
    assert evaluation_model(params, "flickr", "center", None).sigma == 0.3
    with pytest.raises(ValueError, match="training-free"):
        evaluation_model(params, "flickr", "center", "best.pt")
    with pytest.raises(TypeError, match="not trained on its own"):
        training_model(params, "center")


def test_register_refuses_a_second_class_under_a_known_name():
    with pytest.raises(ValueError, match="already registered"):
        @register("center")
        class Impostor(LocalizationMethod):
            pass
    assert METHODS["center"] is CenterPrior
