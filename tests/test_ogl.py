"""EZ-VSL + OGL, both official variants: each equals a plain re-implementation of its script.

The references below follow the official scripts step by step — `F.interpolate` on (B, 1, 7, 7)
maps, then numpy per sample in float32 — EZ-VSL `test.py` (min–max per part, fused, min–max again;
`normalize_img` leaves constant maps unchanged) and SLAVC `test.py` (fixed bounds, top-⌊n/4⌋ mean
confidence). Run with `pytest -s` to see the max abs differences.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vslrepro import factory
from vslrepro.data.formats.images import normalize_images
from vslrepro.data.splits import validation_split
from vslrepro.factory import training_model
from vslrepro.methods import build_method, method_class
from vslrepro.methods._backbones import SmallImageEncoder
from vslrepro.methods.ezvsl import EZVSL
from vslrepro.methods.ogl import (
    EZVSLOGL,
    EZVSLOGLSLAVC,
    IMAGENET_OBJ_BOUNDS,
    ObjectGuidedLocalization,
    object_map_quantile,
)

TAU = 0.03
SIZE = 224


# ---------------------------------------------------------------- the official formulas, plainly

def normalize_img(value: np.ndarray) -> np.ndarray:
    """EZ-VSL / SLAVC `utils.normalize_img`: min–max, a constant map returned unchanged."""
    vmin, vmax = value.min(), value.max()
    if not (vmax - vmin) == 0:
        value = (value - vmin) / (vmax - vmin)
    return value


def heatmaps(s: torch.Tensor, features: torch.Tensor, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Both scripts: S (B, h, w) and the object features (B, C, h, w) -> (B, 1, 224, 224) numpy."""
    heatmap_av = F.interpolate(s.unsqueeze(1), size=(SIZE, SIZE), mode=mode,
                               align_corners=True)  # (B, h, w) -> (B, 1, h, w) -> (B, 1, 224, 224)
    img_feat = features.abs().mean(1).unsqueeze(1)  # NormReducer(dim=1) then Unsqueeze(1): (B, 1, h, w)
    heatmap_obj = F.interpolate(img_feat, size=(SIZE, SIZE), mode=mode, align_corners=True)
    return heatmap_av.numpy(), heatmap_obj.numpy()


def official_ezvsl_ogl(s: torch.Tensor, features: torch.Tensor, alpha: float) -> np.ndarray:
    """EZ-VSL test.py: pred_av_obj = normalize_img(pred_av·α + pred_obj·(1 − α)), bilinear."""
    heatmap_av, heatmap_obj = heatmaps(s, features, "bilinear")
    out = []
    for i in range(s.shape[0]):
        pred_av = normalize_img(heatmap_av[i, 0])
        pred_obj = normalize_img(heatmap_obj[i, 0])
        out.append(normalize_img(pred_av * alpha + pred_obj * (1 - alpha)))
    return np.stack(out)


def official_ezvsl_confidence(s: torch.Tensor, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """The AV part's scores: max of the upsampled S; SLAVC's top-⌊n/4⌋ mean of (S + 1/τ)/(2/τ)."""
    heatmap_av = F.interpolate(s.unsqueeze(1), size=(SIZE, SIZE), mode="bilinear",
                               align_corners=True).numpy()  # (B, h, w) -> (B, 1, h, w) -> (B, 1, 224, 224)
    maxima, topk = [], []
    for i in range(s.shape[0]):
        n = heatmap_av[i, 0].size
        scores_av = (heatmap_av[i, 0] - (-1.0 / tau)) / (1.0 / tau - (-1.0 / tau))
        maxima.append(heatmap_av[i, 0].max())
        topk.append(np.sort(scores_av.flatten())[-n // 4:].mean())  # (224, 224) -> (224²,)
    return np.array(maxima), np.array(topk)


def official_slavc_ogl(s: torch.Tensor, features: torch.Tensor, alpha: float, tau: float,
                       obj_min: float = 0.0, obj_max: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """SLAVC test.py: scores_av·α + scores_obj·(1 − α) with fixed bounds, bicubic; conf_av_obj."""
    heatmap_av, heatmap_obj = heatmaps(s, features, "bicubic")
    av_min, av_max = -1.0 / tau, 1.0 / tau
    min_max_norm = lambda x, xmin, xmax: (x - xmin) / (xmax - xmin)  # noqa: E731
    maps, conf = [], []
    for i in range(s.shape[0]):
        n = heatmap_av[i, 0].size
        scores_av = min_max_norm(heatmap_av[i, 0], av_min, av_max)
        scores_obj = min_max_norm(heatmap_obj[i, 0], obj_min, obj_max)
        scores_av_obj = scores_av * alpha + scores_obj * (1 - alpha)
        maps.append(scores_av_obj)
        conf.append(np.sort(scores_av_obj.flatten())[-n // 4:].mean())  # (224, 224) -> (224²,)
    return np.stack(maps), np.array(conf)


def max_abs(ours: torch.Tensor, reference: np.ndarray) -> float:
    return float(np.abs(ours.detach().cpu().numpy().astype(np.float64) - reference.astype(np.float64)).max())


# ---------------------------------------------------------------- stubs and tiny models

class FixedAV(nn.Module):
    """Stands in for EZVSL: returns given S maps (B, h, w) in units of cos/τ."""

    def __init__(self, maps: torch.Tensor, tau: float = TAU) -> None:
        super().__init__()
        self.maps, self.tau, self.backbone = maps, tau, "small"
        self.map_bounds = (-1.0 / tau, 1.0 / tau)

    def raw_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        return self.maps


class FixedFeatures(nn.Module):
    """Stands in for the object backbone: returns given features (B, C, h, w)."""

    def __init__(self, features: torch.Tensor) -> None:
        super().__init__()
        self.features = features

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.features


def random_parts(b: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random S within ±1/τ and random object features; sample 0 has constant (zero) S and features,
    sample 1 a constant S only."""
    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(b, 7, 7, generator=g) * 2 - 1) / TAU * 0.8
    features = torch.randn(b, 16, 7, 7, generator=g) * 1.5
    s[0], features[0], s[1] = 0.0, 0.0, 0.0
    return s, features


def small_batch(b: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 56, 56, generator=g), torch.randn(b, 1, 65, 64, generator=g)


def tiny_models(seed: int = 0) -> tuple[EZVSL, nn.Module]:
    torch.manual_seed(seed)
    av = EZVSL(backbone="small").eval()
    prior = SmallImageEncoder().eval()
    return av, prior


# ---------------------------------------------------------------- equality with the official formulas

def test_ezvsl_ogl_equals_ezvsl_test_py_on_random_maps():
    s, features = random_parts()
    ogl = EZVSLOGL(FixedAV(s), FixedFeatures(features), alpha=0.4)
    with torch.no_grad():
        maps, confidence = ogl.localize(torch.zeros(5, 3, 56, 56), torch.zeros(5, 1, 65, 64))
    reference = official_ezvsl_ogl(s, features, 0.4)
    diff = max_abs(maps, reference)
    ref_max, ref_topk = official_ezvsl_confidence(s, TAU)
    diff_max, diff_topk = max_abs(confidence["max"], ref_max), max_abs(confidence["topk_mean"], ref_topk)
    print(f"\n[ezvsl_ogl, random maps] max |ours - EZ-VSL test.py| = {diff:.3g} (map), "
          f"{diff_max:.3g} (confidence max), {diff_topk:.3g} (confidence topk_mean)")
    assert maps.shape == (5, SIZE, SIZE) and maps.dtype == torch.float32
    assert diff <= 1e-6 and diff_max <= 1e-6 and diff_topk <= 1e-6
    assert torch.equal(maps[0], torch.zeros(SIZE, SIZE))  # all constant: left unchanged, as normalize_img


def test_ezvsl_ogl_equals_ezvsl_test_py_on_tiny_models():
    av, prior = tiny_models()
    image, spec = small_batch(4)
    ogl = EZVSLOGL(av, prior, alpha=0.4).eval()
    with torch.no_grad():
        maps, confidence = ogl.localize(image, spec)
        s, features = av.raw_maps(image, spec), prior(image)
        own = av.localize(image, spec).confidence
    diff = max_abs(maps, official_ezvsl_ogl(s, features, 0.4))
    print(f"\n[ezvsl_ogl, tiny models] max |ours - EZ-VSL test.py| = {diff:.3g}")
    assert diff <= 1e-6
    for kind in ("max", "topk_mean"):  # the confidence is exactly EZ-VSL's own
        assert torch.equal(confidence[kind], own[kind])


def test_ezvsl_ogl_slavc_equals_slavc_test_py_on_random_maps():
    s, features = random_parts(seed=1)
    for alpha, bounds in ((0.9, IMAGENET_OBJ_BOUNDS), (0.4, (0.0, 1.7))):
        ogl = EZVSLOGLSLAVC(FixedAV(s), FixedFeatures(features), alpha=alpha, obj_bounds=bounds)
        with torch.no_grad():
            maps, confidence = ogl.localize(torch.zeros(5, 3, 56, 56), torch.zeros(5, 1, 65, 64))
        reference, conf = official_slavc_ogl(s, features, alpha, TAU, *bounds)
        diff, diff_conf = max_abs(maps, reference), max_abs(confidence["topk_mean"], conf)
        diff_max = max_abs(confidence["max"], reference.reshape(5, -1).max(1))  # (5, 224, 224) -> (5, 224²)
        print(f"\n[ezvsl_ogl_slavc, random maps, alpha={alpha}, obj_bounds={bounds}] max |ours - SLAVC "
              f"test.py| = {diff:.3g} (map), {diff_conf:.3g} (confidence topk_mean), {diff_max:.3g} (max)")
        assert maps.shape == (5, SIZE, SIZE) and maps.dtype == torch.float32
        assert diff <= 1e-6 and diff_conf <= 1e-6 and diff_max <= 1e-6


def test_ezvsl_ogl_slavc_equals_slavc_test_py_on_tiny_models():
    av, prior = tiny_models(seed=3)
    image, spec = small_batch(4, seed=2)
    ogl = EZVSLOGLSLAVC(av, prior, alpha=0.9, obj_bounds=(0.0, 0.8)).eval()
    with torch.no_grad():
        maps, confidence = ogl.localize(image, spec)
        reference, conf = official_slavc_ogl(av.raw_maps(image, spec), prior(image), 0.9, av.tau, 0.0, 0.8)
    diff, diff_conf = max_abs(maps, reference), max_abs(confidence["topk_mean"], conf)
    print(f"\n[ezvsl_ogl_slavc, tiny models] max |ours - SLAVC test.py| = {diff:.3g} (map), "
          f"{diff_conf:.3g} (confidence topk_mean)")
    assert diff <= 1e-6 and diff_conf <= 1e-6


def test_slavc_variant_does_not_clamp():
    s, features = random_parts(seed=2)
    features = features * 10  # objectness far above the bound: scores above 1, as SLAVC (no clamp)
    ogl = EZVSLOGLSLAVC(FixedAV(s), FixedFeatures(features), alpha=0.0, obj_bounds=(0.0, 1.0))
    with torch.no_grad():
        maps = ogl.localize(torch.zeros(5, 3, 56, 56), torch.zeros(5, 1, 65, 64)).maps
    assert maps.max() > 1.5


# ---------------------------------------------------------------- shapes, confidences, registry

def test_shapes_and_confidences_vary_across_samples():
    av, prior = tiny_models(seed=4)
    image, spec = small_batch(6, seed=4)
    for cls in (EZVSLOGL, EZVSLOGLSLAVC):
        ogl = cls(av, prior).eval()
        ogl.calibrate(image)  # the SLAVC variant's objectness bound on the small backbone (a no-op for the other)
        with torch.no_grad():
            maps, confidence = ogl.localize(image, spec)
            raw = ogl.raw_maps(image, spec)
        assert maps.shape == (6, SIZE, SIZE) and maps.dtype == torch.float32
        assert raw.shape == (6, 7, 7)
        assert set(confidence) >= {"max", "topk_mean"}
        for kind, values in confidence.items():
            assert values.shape == (6,) and values.dtype == torch.float32
            assert len(torch.unique(values)) == 6, (cls.name, kind, values)
    with torch.no_grad():  # why ezvsl_ogl takes the AV part's confidence: its fused maximum is always 1
        fused = EZVSLOGL(av, prior).localize(image, spec).maps
    assert torch.allclose(fused.flatten(1).max(1).values, torch.ones(6))  # (6, 224, 224) -> (6, 224²)


def test_registry_names_and_attributes():
    expected = {"ezvsl_ogl": (EZVSLOGL, "EZ-VSL + OGL", "bilinear", 0.4),
                "ezvsl_ogl_slavc": (EZVSLOGLSLAVC, "EZ-VSL + OGL (SLAVC)", "bicubic", 0.9)}
    for name, (cls, display, mode, alpha) in expected.items():
        assert method_class(name) is cls and cls.name == name and issubclass(cls, ObjectGuidedLocalization)
        assert (cls.display_name, cls.trainable, cls.trains_as) == (display, False, "ezvsl")
        assert (cls.upsample_mode, cls.align_corners, cls.map_bounds) == (mode, True, (0.0, 1.0))
        assert cls.run_method() == "ezvsl" and cls.checkpoints() == ("best", "latest")
        assert cls(*tiny_models()).alpha == alpha
        with pytest.raises(TypeError, match="not trained on its own.*ezvsl"):
            training_model({"model": {"backbone": "small", "dim": 128}}, name)


def test_object_backbone_is_frozen_and_stays_in_eval(tmp_path):
    prior = SmallImageEncoder()
    path = tmp_path / "prior.pt"
    torch.save(prior.state_dict(), path)
    image, spec = small_batch(3)
    for name in ("ezvsl_ogl", "ezvsl_ogl_slavc"):
        ogl = build_method(name, backbone="small", object_weights=path)
        ogl.calibrate(image)
        ogl.train()
        assert ogl.av_model.training and not ogl.object_backbone.training
        assert not any(p.requires_grad for p in ogl.object_backbone.parameters())
        buffers = {k: v.clone() for k, v in ogl.object_backbone.state_dict().items()}
        with torch.no_grad():
            ogl.localize(image, spec)  # in train mode: BN statistics of the object backbone untouched
            assert torch.equal(ogl.object_map(image), prior.eval()(image).abs().mean(1))
        assert all(torch.equal(v, ogl.object_backbone.state_dict()[k]) for k, v in buffers.items())
        with pytest.raises(TypeError, match="not trainable"):
            ogl(image, spec)


def test_configuration_errors():
    av, prior = tiny_models()
    with pytest.raises(ValueError, match="object_weights"):
        EZVSLOGL(backbone="small")
    with pytest.raises(ValueError, match="object_weights"):
        EZVSLOGLSLAVC(backbone="small")
    with pytest.raises(ValueError, match="alpha"):
        EZVSLOGL(av, prior, alpha=1.5)
    with pytest.raises(ValueError, match="obj_bounds"):
        EZVSLOGLSLAVC(av, prior, obj_bounds=(1.0, 1.0))
    with pytest.raises(ValueError, match="bad configuration.*obj_bounds"):
        build_method("ezvsl_ogl", obj_bounds=(0.0, 1.0))  # only the SLAVC variant has bounds


def test_object_map_quantile():
    _, prior = tiny_models(seed=7)
    image, _ = small_batch(5)
    with torch.no_grad():
        values = prior(image).abs().mean(1).flatten()  # (5, 7, 7) -> (245,)
    assert object_map_quantile(prior, image, q=0.99, batch_size=2) == pytest.approx(
        torch.quantile(values, 0.99).item(), rel=1e-5)
    assert object_map_quantile(prior, image, q=1.0) == pytest.approx(values.max().item(), rel=1e-6)
    with pytest.raises(ValueError, match="q must be"):
        object_map_quantile(prior, image, q=0.0)


# ---------------------------------------------------------------- building from a profile

SMALL_PROFILE = {"profile": "unit", "model": {"backbone": "small", "dim": 128},
                 "methods": {"ezvsl": {"tau": 0.05}, "ezvsl_ogl": {"alpha": 0.3},
                             "ezvsl_ogl_slavc": {"alpha": 0.8}}}


class FakeCache:
    def __init__(self, images: np.ndarray) -> None:
        self.images = images


def test_evaluation_model_on_a_small_profile(tmp_path, monkeypatch):
    _, prior = tiny_models(seed=5)
    av = EZVSL(backbone="small", tau=0.05).eval()
    weights, prior_path = tmp_path / "best.pt", tmp_path / "prior.pt"
    torch.save({"model": av.state_dict(), "epoch": 3}, weights)
    torch.save(prior.state_dict(), prior_path)
    frames = np.random.default_rng(0).integers(0, 256, size=(600, 3, 56, 56), dtype=np.uint8)
    calls = []

    def fake_split(params, dataset):
        calls.append(dataset)
        return None, FakeCache(frames)

    monkeypatch.setattr(factory, "image_weights", lambda params: prior_path)
    monkeypatch.setattr(factory, "validation_split", fake_split)
    monkeypatch.setattr(factory, "run_dataset", lambda params, dataset: dataset)
    image, spec = small_batch(2)

    plain = factory.evaluation_model(SMALL_PROFILE, "flickr", "ezvsl_ogl", weights)
    assert calls == []  # per-sample min–max: no bounds to calibrate
    slavc = factory.evaluation_model(SMALL_PROFILE, "vggss", "ezvsl_ogl_slavc", weights)
    assert calls == ["vggss"]
    expected = object_map_quantile(prior, normalize_images(torch.from_numpy(frames[:512])), q=0.99)
    assert slavc.obj_bounds == (0.0, pytest.approx(expected, rel=1e-6))  # first 512 of 600 frames
    for ogl, alpha in ((plain, 0.3), (slavc, 0.8)):
        assert not ogl.training and not ogl.object_backbone.training and ogl.alpha == alpha
        assert ogl.av_model.tau == 0.05 and ogl.av_model.dim == 128  # EZ-VSL's tau, the profile's dim
        with torch.no_grad():
            assert torch.equal(ogl.av_map(image, spec), av.raw_maps(image, spec))
            assert torch.equal(ogl.object_map(image), prior(image).abs().mean(1))
            assert ogl.localize(image, spec).maps.shape == (2, SIZE, SIZE)
    with pytest.raises(ValueError, match="needs a checkpoint"):
        factory.evaluation_model(SMALL_PROFILE, "flickr", "ezvsl_ogl", None)
    # bounds given by the profile are used as they are
    fixed = {**SMALL_PROFILE, "methods": {**SMALL_PROFILE["methods"],
                                          "ezvsl_ogl_slavc": {"alpha": 0.9, "obj_bounds": [0.0, 3.0]}}}
    assert factory.evaluation_model(fixed, "flickr", "ezvsl_ogl_slavc", weights).obj_bounds == (0.0, 3.0)
    assert calls == ["vggss"]


def test_imagenet_bounds_for_resnet18_and_calibration_otherwise():
    av = EZVSL(backbone="resnet18", dim=16)
    slavc = EZVSLOGLSLAVC(av, nn.Identity())
    assert slavc.obj_bounds == (0.0, 2.5) and slavc.calibration_frames() == 0
    assert EZVSLOGL(av, nn.Identity()).calibration_frames() == 0
    small, prior = tiny_models()
    uncalibrated = EZVSLOGLSLAVC(small, prior)
    assert uncalibrated.obj_bounds is None and uncalibrated.calibration_frames() == 512
    image, spec = small_batch(2)
    with pytest.raises(RuntimeError, match="no objectness bounds.*calibrate"):
        uncalibrated.localize(image, spec)
    uncalibrated.calibrate(image)
    assert uncalibrated.obj_bounds[0] == 0.0 and uncalibrated.calibration_frames() == 0


def test_evaluation_model_on_the_smoke_profile(tmp_path, smoke_params):
    """The real wiring: the smoke profile's object prior and validation frames."""
    torch.manual_seed(0)
    av = EZVSL(**factory.arguments(smoke_params, "ezvsl")).eval()
    weights = tmp_path / "latest.pt"
    torch.save({"model": av.state_dict()}, weights)
    _, cache = validation_split(smoke_params, "flickr")
    frames = normalize_images(torch.from_numpy(cache.images[:8].copy()))  # (8, 3, 56, 56)
    specs = torch.from_numpy(cache.specs[:8].copy())                      # (8, 1, F, T)
    for name in ("ezvsl_ogl", "ezvsl_ogl_slavc"):
        ogl = factory.evaluation_model(smoke_params, "flickr", name, weights)
        with torch.no_grad():
            maps, confidence = ogl.localize(frames, specs)
        assert maps.shape == (8, SIZE, SIZE) and torch.isfinite(maps).all()
        assert len(torch.unique(confidence["topk_mean"])) > 1
        if name == "ezvsl_ogl_slavc":
            lo, hi = ogl.obj_bounds
            assert lo == 0.0 and 0.0 < hi < float("inf")
