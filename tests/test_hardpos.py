"""HardPos: mining, loss (against a plain loop), training signal, maps, LVS checkpoint layout."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vslrepro.factory import arguments
from vslrepro.methods import method_class
from vslrepro.methods.hardpos import HardPos, hardpos_logits, hardpos_loss, nearest_neighbours, pooled_image_embeddings
from vslrepro.methods.lvs import LVS, response_maps

from methodkit import randomize_batchnorm_, small_batch

# ---------------------------------------------------------------- the formula, written plainly

def loop_neighbours(embeddings: torch.Tensor, k: int) -> list[list[int]]:
    """The k most cosine-similar other samples of each sample, by sorting a Python list."""
    e = embeddings.double()
    out = []
    for i in range(e.shape[0]):
        scores = [(float(e[i] @ e[j]) / float(e[i].norm() * e[j].norm()), j)
                  for j in range(e.shape[0]) if j != i]
        out.append([j for _, j in sorted(scores, key=lambda t: -t[0])[:k]])
    return out


def loop_masked_mean(cells: list[float], epsilon: float, mask_tau: float) -> float:
    """⟨m, α⟩/|m| with m = σ((α − ε)/τ_m), one cell at a time."""
    weights = [1.0 / (1.0 + math.exp(-(x - epsilon) / mask_tau)) for x in cells]
    return sum(w * x for w, x in zip(weights, cells)) / sum(weights)


def loop_loss(responses: torch.Tensor, audio_nb: list[list[int]], visual_nb: list[list[int]],
              epsilon: float, mask_tau: float, tau: float, background: list[float] | None = None,
              easy_negatives: str = "foreground") -> float:
    """HardPos as stated in the module docstring: α[n, m] = image n with audio m;
    P_i = e^{P_b} + Σ_j e^{P_a} + Σ_k e^{P_v} + Σ_{j,k} e^{P_c}; N_i = Σ_{l ∉ {i} ∪ A ∪ V} e^{E_il},
    E_il the masked mean ("foreground") or the plain mean ("plain") of α_il."""
    b = responses.shape[0]
    cells = lambda n, m: [float(x) for x in responses[n, m].flatten()]  # noqa: E731
    fg = lambda n, m: loop_masked_mean(cells(n, m), epsilon, mask_tau)  # noqa: E731
    total = 0.0
    for i in range(b):
        positives = [fg(i, i)]
        positives += [fg(j, i) for j in audio_nb[i]]  # image of the audio neighbour, own audio
        positives += [fg(i, k) for k in visual_nb[i]]  # own image, audio of the visual neighbour
        positives += [fg(j, k) for j in audio_nb[i] for k in visual_nb[i]]
        excluded = {i, *audio_nb[i], *visual_nb[i]}
        easy = fg if easy_negatives == "foreground" else lambda n, m: sum(cells(n, m)) / len(cells(n, m))
        negatives = [easy(i, other) for other in range(b) if other not in excluded]
        if background is not None:
            negatives.append(background[i])
        p = sum(math.exp(x / tau) for x in positives)
        n = sum(math.exp(x / tau) for x in negatives)
        total += -math.log(p / (p + n))
    return total / b


def random_features(b: int = 5, c: int = 6, h: int = 3, w: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    v = F.normalize(torch.rand(b, c, h, w, generator=g), dim=1)  # non-negative, as after a ReLU
    a = F.normalize(torch.rand(b, c, generator=g), dim=1)
    return v, a


def test_nearest_neighbours_match_a_sorted_list():
    g = torch.Generator().manual_seed(0)
    e = F.normalize(torch.randn(7, 4, generator=g), dim=1)
    for k in (1, 3):
        assert nearest_neighbours(e, k).tolist() == loop_neighbours(e, k)
    assert nearest_neighbours(e, 10).shape == (7, 6)  # clamped to B - 1: never oneself
    assert nearest_neighbours(e[:1], 1).shape == (1, 0)


def test_pooled_image_embeddings_are_unit_mean_features():
    v, _ = random_features()
    pooled = pooled_image_embeddings(v)
    expected = v.mean(dim=(2, 3))
    assert torch.allclose(pooled, expected / expected.norm(dim=1, keepdim=True))


@pytest.mark.parametrize("easy_negatives", ["foreground", "plain"])
@pytest.mark.parametrize("k_audio,k_visual,with_background", [(1, 1, False), (2, 1, False), (1, 2, True),
                                                              (0, 0, False)])
def test_loss_equals_plain_loop(k_audio, k_visual, with_background, easy_negatives):
    v, a = random_features()
    responses = response_maps(v, a)
    audio_nb = nearest_neighbours(a, k_audio)
    visual_nb = nearest_neighbours(pooled_image_embeddings(v), k_visual)
    background = torch.rand(5, generator=torch.Generator().manual_seed(3)) if with_background else None
    ours = hardpos_loss(responses, audio_nb, visual_nb, 0.5, 0.1, 0.07, background, easy_negatives)
    expected = loop_loss(responses, audio_nb.tolist(), visual_nb.tolist(), 0.5, 0.1, 0.07,
                         None if background is None else background.tolist(), easy_negatives)
    assert ours.item() == pytest.approx(expected, rel=1e-5)


def test_hand_computed_loss_on_constant_maps():
    # constant maps: every masked mean and spatial mean is the constant itself
    c = torch.tensor([[0.9, 0.2, 0.1],
                      [0.3, 0.8, 0.4],
                      [0.5, 0.6, 0.7]], dtype=torch.float64)
    responses = c[:, :, None, None].expand(3, 3, 2, 2)
    audio_nb, visual_nb = torch.tensor([[1], [0], [0]]), torch.tensor([[2], [2], [1]])
    positives, negatives = hardpos_logits(responses, audio_nb, visual_nb, 0.65, 0.03, 1.0)
    # anchor 0: P_b = c00, P_a = c10 (image 1, audio 0), P_v = c02, P_c = c12; no negative left
    assert positives[0].tolist() == pytest.approx([0.9, 0.3, 0.1, 0.4])
    assert torch.isinf(negatives[0]).all()
    # anchor 2: neighbours 0 (audio) and 1 (visual): positives c22, c02, c21, c01
    assert positives[2].tolist() == pytest.approx([0.7, 0.1, 0.6, 0.2])
    loss = hardpos_loss(responses, torch.tensor([[1], [0], [1]]), torch.tensor([[1], [0], [1]]),
                        0.65, 0.03, 1.0)
    # now anchor 0: positives c00, c10, c01, c11; negative c02
    p0 = math.exp(0.9) + math.exp(0.3) + math.exp(0.2) + math.exp(0.8)
    p1 = math.exp(0.8) + math.exp(0.2) + math.exp(0.3) + math.exp(0.9)  # c11, c01, c10, c00
    p2 = math.exp(0.7) + math.exp(0.4) + math.exp(0.6) + math.exp(0.8)  # c22, c12, c21, c11
    expected = -(math.log(p0 / (p0 + math.exp(0.1))) + math.log(p1 / (p1 + math.exp(0.4)))
                 + math.log(p2 / (p2 + math.exp(0.5)))) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_model_loss_uses_its_own_detached_embeddings():
    torch.manual_seed(0)
    model = HardPos(backbone="small", k_audio=1, k_visual=2).eval()
    image, spec = small_batch(5)
    with torch.no_grad():
        v, a = model.image_features(image), model.audio_features(spec)
        assert v.shape == (5, 128, 14, 14) and a.shape == (5, 128)
        audio_nb = loop_neighbours(a, 1)
        visual_nb = loop_neighbours(v.mean(dim=(2, 3)), 2)
        expected = loop_loss(response_maps(v, a), audio_nb, visual_nb, model.epsilon_pos,
                             model.mask_tau, model.tau, easy_negatives=model.easy_negatives)
        assert model(image, spec).item() == pytest.approx(expected, rel=1e-4)
        a_nb, v_nb = model.hard_positives(v.requires_grad_(), a.requires_grad_())
    assert not a_nb.requires_grad and not v_nb.requires_grad


def test_background_negative_adds_lvs_hard_negative():
    torch.manual_seed(0)
    image, spec = small_batch(4)
    plain = HardPos(backbone="small").eval()
    with_bg = HardPos(backbone="small", background_negative=True).eval()
    with_bg.load_state_dict(plain.state_dict())
    with torch.no_grad():
        assert with_bg(image, spec).item() > plain(image, spec).item()  # one more negative


# ---------------------------------------------------------------- the model in training and testing

def test_shapes_dtypes_and_confidences():
    torch.manual_seed(0)
    model = HardPos(backbone="small").eval()
    image, spec = small_batch(3)
    with torch.no_grad():
        loss = model(image, spec)
        raw = model.raw_maps(image, spec)
        maps, confidence = model.localize(image, spec)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert raw.shape == (3, 14, 14) and (model.upsample_mode, model.align_corners) == ("bilinear", False)
    assert torch.equal(confidence["max"], maps.flatten(1).max(1).values)
    assert confidence["max"].unique().numel() == 3  # the confidence ranks samples
    assert raw.abs().max() <= 1 + 1e-5  # cosines






# ---------------------------------------------------------------- LVS's layout, config, errors

def test_lvs_checkpoint_loads_and_gives_identical_maps(tmp_path):
    """HardPos has no original code: its network is LVS's, so an LVS checkpoint (here in the
    original release's nesting, "model_state_dict" with "module.") must load strictly."""
    torch.manual_seed(5)
    lvs = LVS(backbone="resnet18")
    randomize_batchnorm_(lvs)  # non-trivial BN statistics
    path = tmp_path / "lvs.pth.tar"
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in lvs.state_dict().items()},
                "epoch": 3}, path)
    ours = HardPos(backbone="resnet18")
    assert ours.state_dict().keys() == lvs.state_dict().keys()
    ours.load_weights(path)
    g = torch.Generator().manual_seed(0)
    image, spec = torch.randn(2, 3, 224, 224, generator=g), torch.randn(2, 1, 96, 80, generator=g)
    with torch.no_grad():
        expected, got = lvs.eval().raw_maps(image, spec), ours.eval().raw_maps(image, spec)
    assert got.shape == (2, 14, 14)
    assert torch.allclose(got, expected, atol=1e-6), (got - expected).abs().max()


def test_registry_and_config():
    assert method_class("hardpos") is HardPos and HardPos.display_name == "HardPos"
    params = {"model": {"backbone": "small", "dim": 128},
              "methods": {"lvs": {"tau": 0.5}, "hardpos": {"k_audio": 2, "background_negative": True}}}
    assert arguments(params, "hardpos") == {"backbone": "small", "k_audio": 2, "background_negative": True}
    model = HardPos.build(**arguments(params, "hardpos"))
    assert (model.k_audio, model.k_visual, model.background_negative, model.tau) == (2, 1, True, 0.07)


@pytest.mark.parametrize("kwargs,match", [({"k_audio": -1}, "k_audio"), ({"k_visual": 1.5}, "k_visual"),
                                          ({"k_audio": True}, "k_audio"),
                                          ({"background_negative": "yes"}, "background_negative"),
                                          ({"easy_negatives": "mean"}, "easy_negatives"),
                                          ({"tau": 0.0}, "tau"), ({"epsilon_pos": 0.3}, "epsilon")])
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HardPos(backbone="small", **kwargs)
    with pytest.raises(ValueError, match="k must be"):
        nearest_neighbours(torch.eye(3), -1)
