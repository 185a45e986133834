"""The method plug-in contract (vslrepro.methods._base), checked on every registered method at once.

What holds for any method is tested here, parametrized over the registry: the maps and confidences
`localize` returns (shapes, dtypes, finite values), the upsampling the class declares, gradients
reaching both encoders, a loss that falls on a fixed batch, a state_dict round trip that resumes the
same model (maps and next loss), our checkpoint format (with DDP's "module." prefix) loading
strictly, a checkpoint of another method refused naming the file, and the profile arguments the
factory passes. What is particular to a method — its loss written out as the original computes it,
its released checkpoints' layout, its stage schedule — stays in `tests/test_<method>.py`.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from vslrepro import factory
from vslrepro.data.errors import DataError
from vslrepro.methods import METHODS, LocalizationMethod, upsample_maps
from vslrepro.methods._backbones import SmallImageEncoder

from methodkit import optimise, small_batch

# The package's own methods (test files register toys of their own).
PACKAGE_METHODS = sorted(name for name, cls in METHODS.items() if cls.__module__.startswith("vslrepro.methods."))
TRAINABLE = [name for name in PACKAGE_METHODS if METHODS[name].trainable]
PROFILE = {"seed": 0, "model": {"backbone": "small", "dim": 128}, "methods": {}, "references": {}}


def build(name: str, seed: int = 0) -> LocalizationMethod:
    """`name` as the factory builds it from a small-backbone profile (random weights; OGL's object
    backbone a random small encoder), calibrated on a batch when it asks, in eval mode."""
    torch.manual_seed(seed)
    arguments = factory.arguments(PROFILE, name)
    if "object_weights" in METHODS[name].parameters_accepted():
        arguments["object_weights"] = SmallImageEncoder().state_dict()
    model = METHODS[name].build(**arguments)
    if model.calibration_frames():
        model.calibrate(small_batch(8, seed=9)[0])
    return model.eval()


def test_every_package_method_is_covered():
    assert {"attention10k", "coarsetofine", "dmc", "dsol", "ezvsl", "lvs", "hardpos", "slavc", "ezvsl_ogl",
            "ezvsl_ogl_slavc", "random", "center"} <= set(PACKAGE_METHODS)


@pytest.mark.parametrize("name", PACKAGE_METHODS)
def test_localize_gives_maps_and_confidences(name):
    model = build(name)
    image, spec = small_batch(4)
    with torch.no_grad():
        maps, confidence = model.localize(image, spec)
        raw = model.raw_maps(image, spec)
    assert maps.shape == (4, 224, 224) and maps.dtype == torch.float32 and torch.isfinite(maps).all()
    assert raw.dim() == 3 and raw.shape[0] == 4 and torch.isfinite(raw).all()
    assert {"max", "topk_mean"} <= set(confidence)
    for kind, values in confidence.items():
        assert values.shape == (4,) and values.dtype == torch.float32 and torch.isfinite(values).all(), kind
    lo, hi = model.map_bounds
    assert hi > lo


@pytest.mark.parametrize("name", [n for n in PACKAGE_METHODS
                                  if METHODS[n].maps_at is LocalizationMethod.maps_at
                                  and METHODS[n].localize is LocalizationMethod.localize])
def test_maps_are_the_raw_maps_upsampled_as_declared(name):
    model = build(name)
    image, spec = small_batch(3)
    with torch.no_grad():
        maps = model.localize(image, spec).maps
        expected = upsample_maps(model.raw_maps(image, spec), 224, model.upsample_mode, model.align_corners)
    assert torch.allclose(maps, expected)


@pytest.mark.parametrize("name", TRAINABLE)
def test_gradients_reach_both_encoders(name):
    model = build(name).train()
    torch.manual_seed(0)
    loss = model(*small_batch(6))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for encoder in ("imgnet", "audnet"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(f"{encoder}.")]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), encoder


@pytest.mark.parametrize("name", TRAINABLE)
def test_the_loss_falls_on_a_fixed_batch(name):
    model = build(name).train()
    image, spec = small_batch(8)

    def loss():
        torch.manual_seed(0)  # the same in-model draws (dropout, negatives) at every step
        return model(image, spec)

    losses = optimise(model, loss)
    assert sum(losses[-5:]) < sum(losses[:5]), losses


@pytest.mark.parametrize("name", TRAINABLE)
def test_a_state_dict_round_trip_resumes_the_same_model(name):
    """What a resume restores: a fresh model of another seed, loaded strictly with a trained one's
    state, gives the same maps and the same next loss (buffers such as momentum encoders, cluster
    centres or the stage included)."""
    trained = build(name).train()
    image, spec = small_batch(6)
    optimise(trained, lambda: trained(image, spec), steps=3)
    resumed = build(name, seed=1).train()
    resumed.load_state_dict(trained.state_dict())
    torch.manual_seed(3)
    expected = trained(image, spec)
    torch.manual_seed(3)
    assert torch.equal(resumed(image, spec), expected)
    with torch.no_grad():
        assert torch.equal(resumed.eval().localize(image, spec).maps, trained.eval().localize(image, spec).maps)


@pytest.mark.parametrize("name", TRAINABLE)
def test_our_checkpoint_loads_strictly_and_another_methods_is_refused(name, tmp_path):
    trained = build(name)
    path = tmp_path / "latest.pt"
    torch.save({"model": {f"module.{k}": v for k, v in trained.state_dict().items()}, "epoch": 2}, path)
    loaded = build(name, seed=1).load_weights(path).eval()
    image, spec = small_batch(2)
    with torch.no_grad():
        assert torch.equal(loaded.localize(image, spec).maps, trained.localize(image, spec).maps)
    other = next(n for n in TRAINABLE if set(build(n).state_dict()) != set(trained.state_dict()))
    foreign = tmp_path / f"{other}.pt"
    torch.save({"model": build(other).state_dict()}, foreign)
    with pytest.raises(DataError, match=f"{foreign.name}"):
        build(name).load_weights(foreign)


@pytest.mark.parametrize("name", PACKAGE_METHODS)
def test_the_factory_fills_the_profile_arguments_the_method_asks_for(name):
    accepted = METHODS[name].parameters_accepted()
    arguments = factory.arguments({**PROFILE, "seed": 5}, name)
    for key, value in (("backbone", "small"), ("dim", 128), ("seed", 5)):
        assert (arguments.get(key) == value) == (key in accepted), key
    assert not {"image_weights", "object_weights"} & set(arguments)  # weights: training/evaluation only
    assert inspect.signature(METHODS[name].__init__).bind(None, **arguments)
