"""SLAVC: loss, momentum encoders, maps, confidences, released checkpoints (stoneMo/SLAVC model.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_checkpoints import save_like_numpy1  # the released files' numpy-1.x pickles
from torch import nn
from torchvision.models import resnet18

from vslrepro.factory import arguments
from vslrepro.methods import method_class
from vslrepro.methods.slavc import SLAVC, mixture_logits, slavc_loss

from methodkit import optimise, randomize_batchnorm_, small_batch

TAU = 0.03


def paper_batch(b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 224, 224, generator=g), torch.randn(b, 1, 96, 80, generator=g)


# ---------------------------------------------------------------------- the loss, written plainly

def loop_logits(v1, v2, a1, a2, tau):
    """ℓ_nm = log Σ_k softmax_m(S¹)·softmax_k(S²), with loops and explicit exponentials (float64)."""
    n_img, _, h, w = v1.shape
    n_aud = a1.shape[0]
    s1 = [[[float((v1[n, :, k // w, k % w] * a1[m]).sum()) / tau for k in range(h * w)]
           for m in range(n_aud)] for n in range(n_img)]
    s2 = [[[float((v2[n, :, k // w, k % w] * a2[m]).sum()) / tau for k in range(h * w)]
           for m in range(n_aud)] for n in range(n_img)]
    logits = torch.empty(n_img, n_aud, dtype=torch.float64)
    for n in range(n_img):
        for m in range(n_aud):
            total = 0.0
            for k in range(h * w):
                p1 = np.exp(s1[n][m][k]) / sum(np.exp(s1[n][j][k]) for j in range(n_aud))
                p2 = np.exp(s2[n][m][k]) / sum(np.exp(s2[n][m][j]) for j in range(h * w))
                total += p1 * p2
            logits[n, m] = np.log(total)
    return logits


def test_mixture_logits_equal_plain_loops():
    g = torch.Generator().manual_seed(1)
    v1, v2 = (F.normalize(torch.randn(3, 5, 2, 3, generator=g, dtype=torch.float64), dim=1) for _ in range(2))
    a1, a2 = (F.normalize(torch.randn(4, 5, generator=g, dtype=torch.float64), dim=1) for _ in range(2))
    ours = mixture_logits((v1, v2), (a1, a2), tau=0.1)
    assert ours.shape == (3, 4)
    assert torch.allclose(ours, loop_logits(v1, v2, a1, a2, 0.1), rtol=1e-10, atol=1e-10)


def test_loss_pairs_online_images_with_momentum_audio_and_vice_versa():
    g = torch.Generator().manual_seed(2)
    feats = [F.normalize(torch.randn(4, 6, 2, 2, generator=g, dtype=torch.float64), dim=1) for _ in range(4)]
    auds = [F.normalize(torch.randn(4, 6, generator=g, dtype=torch.float64), dim=1) for _ in range(4)]
    v, mv, a, ma = (feats[0], feats[1]), (feats[2], feats[3]), (auds[0], auds[1]), (auds[2], auds[3])
    labels = torch.arange(4)
    expected = (F.cross_entropy(loop_logits(*mv, *a, 0.2), labels)      # "a2i": momentum images
                + F.cross_entropy(loop_logits(*v, *ma, 0.2), labels))   # "i2a": momentum audio
    assert slavc_loss(v, a, mv, ma, 0.2).item() == pytest.approx(expected.item(), rel=1e-10)


# ---------------------------------------------------------------------- the model on the small backbone

def test_shapes_dtypes_and_parameters():
    torch.manual_seed(0)
    model = SLAVC(backbone="small")
    image, spec = small_batch(3)
    loss = model(image, spec)
    assert loss.dim() == 0 and torch.isfinite(loss)
    model.eval()
    with torch.no_grad():
        raw = model.raw_maps(image, spec)
        maps, confidence = model.localize(image, spec)
    assert raw.shape == (3, 7, 7)
    assert maps.shape == (3, 224, 224) and maps.dtype == torch.float32
    assert set(confidence) >= {"max", "topk_mean"}
    assert all(c.shape == (3,) and c.dtype == torch.float32 for c in confidence.values())
    names = dict(model.named_parameters())
    momentum = [n for n in names if n.startswith("momentum_")]
    assert {n.split(".")[0] for n in momentum} == {
        "momentum_imgnet", "momentum_img_proj1", "momentum_img_proj2",
        "momentum_audnet", "momentum_aud_proj1", "momentum_aud_proj2"}
    assert all(not names[n].requires_grad for n in momentum)
    assert all(names[n].requires_grad for n in names if not n.startswith("momentum_"))
    assert model.img_dropout.p == 0.9 and model.aud_dropout.p == 0.0


def test_gradients_reach_both_online_encoders_and_never_the_momentum_ones():
    torch.manual_seed(0)
    model = SLAVC(backbone="small")
    model(*small_batch(4)).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("imgnet."))
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("audnet."))
    assert all(g is None for n, g in grads.items() if n.startswith("momentum_"))


def test_momentum_update_averages_parameters_only_in_train_mode():
    torch.manual_seed(0)
    model = SLAVC(backbone="small", momentum_img=0.9, momentum_aud=0.5)
    with torch.no_grad():
        for p in model.imgnet.parameters():
            p.add_(1.0)
        for p in model.aud_proj2.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image, spec = small_batch(4)
    model.eval()
    with torch.no_grad():
        model(image, spec)  # eval mode: no EMA step
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.train()
    model(image, spec)
    after = model.state_dict()
    for name in ("imgnet", "img_proj1", "img_proj2", "audnet", "aud_proj1", "aud_proj2"):
        m = 0.9 if name.startswith("im") else 0.5
        for key, _ in getattr(model, name).named_parameters():
            target = f"momentum_{name}.{key}"
            expected = before[target] * m + before[f"{name}.{key}"] * (1 - m)
            assert torch.allclose(after[target], expected, atol=1e-6), target
    # BN statistics of the momentum copies evolve by their own train-mode forward, not by the EMA
    key = "momentum_imgnet.stages.0.bn.running_mean"
    online = before["imgnet.stages.0.bn.running_mean"]
    assert not torch.equal(after[key], before[key])
    assert not torch.allclose(after[key], before[key] * 0.9 + online * 0.1)


def test_momentum_branch_goes_through_the_same_dropout():
    torch.manual_seed(0)
    model = SLAVC(backbone="small", momentum_img=1.0, momentum_aud=1.0).train()
    image, spec = small_batch(2)
    with torch.no_grad():
        a = model.image_features(image, momentum=True)[0]
        b = model.image_features(image, momentum=True)[0]
    assert not torch.allclose(a, b)  # dropout active on the momentum branch (independent masks)
    model.img_dropout.p = 0.0
    with torch.no_grad():
        assert torch.equal(model.image_features(image, momentum=True)[0], model.image_features(image)[0])


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    image, spec = small_batch(8)
    for dropout, ratio in ((0.0, 0.3), (0.9, 1.0)):  # dropout 0.9: noisy steps (ratios 0.84-0.93 seen)
        model = SLAVC(backbone="small", dropout_img=dropout)
        losses = optimise(model, lambda: model(image, spec))
        assert np.mean(losses[-5:]) < ratio * np.mean(losses[:5]), (dropout, losses)


def test_localize_as_slavc_test_py():
    torch.manual_seed(0)
    model = SLAVC(backbone="small").eval()
    image, spec = small_batch(4)
    with torch.no_grad():
        model(*small_batch(4, seed=3))  # eval: no EMA step; make the maps less uniform below
        raw = model.raw_maps(image, spec)
        maps, confidence = model.localize(image, spec)
    assert torch.isfinite(maps).all()
    expected = F.interpolate(raw[:, None], size=(224, 224), mode="bicubic", align_corners=True)[:, 0]
    assert torch.allclose(maps, expected)
    assert torch.equal(confidence["max"], maps.flatten(1).max(1).values)
    for i in range(4):  # test.py: scores = (S + 1/tau)/(2/tau); conf = mean of the top n//4 (numpy)
        scores = (maps[i].numpy() - (-1 / TAU)) / (1 / TAU - (-1 / TAU))
        n = scores.size
        assert confidence["topk_mean"][i].item() == pytest.approx(np.sort(scores.flatten())[-n // 4:].mean(), rel=1e-5)
    assert confidence["max"].std() > 0 and confidence["topk_mean"].std() > 0
    assert raw.abs().max() <= 1 / TAU + 1e-3


def test_use_momentum_eval_switches_the_map_encoders():
    torch.manual_seed(0)
    model = SLAVC(backbone="small")
    with torch.no_grad():
        for p in model.momentum_aud_proj1.parameters():
            p.mul_(-1.0)
    model.eval()
    image, spec = small_batch(2)
    with torch.no_grad():
        online = model.raw_maps(image, spec)
        model.use_momentum_eval = True
        momentum = model.raw_maps(image, spec)
        v1, v2 = model.image_features(image, momentum=True)
        a1, a2 = model.audio_features(spec, momentum=True)
    assert not torch.allclose(online, momentum)
    expected = (torch.einsum("bdhw,bd->bhw", v1, a1) + torch.einsum("bdhw,bd->bhw", v2, a2)) / TAU / 2
    assert torch.allclose(momentum, expected, atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"tau": 0.0}, "tau must be positive"),
    ({"dropout_img": 1.0}, r"dropout_img must be in \[0, 1\)"),
    ({"dropout_aud": -0.1}, r"dropout_aud must be in \[0, 1\)"),
    ({"momentum_img": 1.5}, r"momentum_img must be in \[0, 1\]"),
    ({"momentum_aud": -1}, r"momentum_aud must be in \[0, 1\]"),
    ({"use_momentum_eval": "yes"}, "use_momentum_eval must be true or false"),
    ({"backbone": "vgg"}, "unknown backbone"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SLAVC(**kwargs)


def test_registry_and_profile_config():
    cls = method_class("slavc")
    assert cls is SLAVC and cls.display_name == "SLAVC" and cls.trainable and cls.checkpoints() == ("best", "latest")
    params = {"model": {"backbone": "small", "dim": 16}, "methods": {"slavc": {"momentum_img": 0.99}}}
    assert arguments(params, "slavc") == {"backbone": "small", "dim": 16, "momentum_img": 0.99}


def test_state_dict_round_trip_restores_momentum_state():
    torch.manual_seed(0)
    a = SLAVC(backbone="small")
    for seed in range(2):  # two train steps move the EMA and the momentum BN statistics
        a(*small_batch(4, seed))
    b = SLAVC(backbone="small")
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    torch.manual_seed(1)
    loss_a = a(*small_batch(4, 5))
    torch.manual_seed(1)
    loss_b = b(*small_batch(4, 5))
    assert torch.equal(loss_a, loss_b)


# ---------------------------------------------------------------------- the original's module layout

class OfficialSLAVC(nn.Module):
    """stoneMo/SLAVC model.py:SLAVC, written independently of vslrepro (no ImageNet download)."""

    def __init__(self, tau=TAU, dim=512, dropout_img=0.9, dropout_aud=0.0, momentum_img=0.999,
                 momentum_aud=0.999, use_mom_eval=False):
        super().__init__()
        self.tau, self.m_img, self.m_aud, self.use_mom_eval = tau, momentum_img, momentum_aud, use_mom_eval
        self.imgnet = self.build_imgnet()
        self.img_dropout = nn.Dropout(p=dropout_img)
        self.img_proj1 = nn.Conv2d(512, dim, kernel_size=(1, 1))
        self.img_proj2 = nn.Conv2d(512, dim, kernel_size=(1, 1))
        self.audnet = self.build_audnet()
        self.aud_proj1 = nn.Linear(512, dim)
        self.aud_proj2 = nn.Linear(512, dim)
        self.aud_dropout = nn.Dropout(p=dropout_aud)
        self.momentum_imgnet = self.build_imgnet()
        self.momentum_img_proj1 = nn.Conv2d(512, dim, kernel_size=(1, 1))
        self.momentum_img_proj2 = nn.Conv2d(512, dim, kernel_size=(1, 1))
        self.momentum_audnet = self.build_audnet()
        self.momentum_aud_proj1 = nn.Linear(512, dim)
        self.momentum_aud_proj2 = nn.Linear(512, dim)
        for name in ("imgnet", "img_proj1", "img_proj2", "audnet", "aud_proj1", "aud_proj2"):
            for pb, pm in zip(getattr(self, name).parameters(), getattr(self, "momentum_" + name).parameters()):
                pm.data.copy_(pb.data)
                pm.requires_grad = False

    @staticmethod
    def build_imgnet():
        net = resnet18()
        net.avgpool, net.fc = nn.Identity(), nn.Identity()
        return net

    @staticmethod
    def build_audnet():
        net = resnet18()
        net.conv1 = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
        net.avgpool, net.fc = nn.AdaptiveMaxPool2d((1, 1)), nn.Identity()
        return net

    @torch.no_grad()
    def ema(self, m, base, momentum):
        for pb, pm in zip(base.parameters(), momentum.parameters()):
            pm.data = pm.data * m + pb.data * (1. - m)

    def img_features(self, imgnet, proj1, proj2, image):
        img = self.img_dropout(imgnet(image).unflatten(1, (512, 7, 7)))
        return F.normalize(proj1(img), dim=1), F.normalize(proj2(img), dim=1)

    def aud_features(self, audnet, proj1, proj2, audio):
        aud = self.aud_dropout(audnet(audio))
        return F.normalize(proj1(aud), dim=1), F.normalize(proj2(aud), dim=1)

    def forward(self, image, audio, mode="train"):
        img1, img2 = self.img_features(self.imgnet, self.img_proj1, self.img_proj2, image)
        aud1, aud2 = self.aud_features(self.audnet, self.aud_proj1, self.aud_proj2, audio)
        with torch.no_grad():
            if mode == "train":
                for name in ("imgnet", "img_proj1", "img_proj2"):
                    self.ema(self.m_img, getattr(self, name), getattr(self, "momentum_" + name))
                for name in ("audnet", "aud_proj1", "aud_proj2"):
                    self.ema(self.m_aud, getattr(self, name), getattr(self, "momentum_" + name))
            img1_trg, img2_trg = self.img_features(self.momentum_imgnet, self.momentum_img_proj1,
                                                   self.momentum_img_proj2, image)
            aud1_trg, aud2_trg = self.aud_features(self.momentum_audnet, self.momentum_aud_proj1,
                                                   self.momentum_aud_proj2, audio)
        i2a_1 = F.softmax(torch.einsum("nchw,mc->nmhw", img1, aud1_trg).flatten(-2, -1) / self.tau, dim=1)
        i2a_2 = F.softmax(torch.einsum("nchw,mc->nmhw", img2, aud2_trg).flatten(-2, -1) / self.tau, dim=2)
        i2a = torch.log((i2a_1 * i2a_2).sum(2))
        a2i_1 = F.softmax(torch.einsum("nchw,mc->nmhw", img1_trg, aud1).flatten(-2, -1) / self.tau, dim=1)
        a2i_2 = F.softmax(torch.einsum("nchw,mc->nmhw", img2_trg, aud2).flatten(-2, -1) / self.tau, dim=2)
        a2i = torch.log((a2i_1 * a2i_2).sum(2))
        labels = torch.arange(img1.shape[0])
        loss = F.cross_entropy(a2i, labels) + F.cross_entropy(i2a, labels)
        with torch.no_grad():
            if self.use_mom_eval:
                s1 = torch.einsum("nchw,nc->nhw", img1_trg, aud1_trg) / self.tau
                s2 = torch.einsum("nchw,nc->nhw", img2_trg, aud2_trg) / self.tau
            else:
                s1 = torch.einsum("nchw,nc->nhw", img1, aud1) / self.tau
                s2 = torch.einsum("nchw,nc->nhw", img2, aud2) / self.tau
        return loss, (s1 + s2) / 2


def released_checkpoint(tmp_path):
    """An OfficialSLAVC whose momentum copies differ from the online encoders, saved as train.py does
    (a DDP model under "model", numpy scalars beside it, pickled the way numpy 1.x writes them)."""
    torch.manual_seed(5)
    official = OfficialSLAVC()
    with torch.no_grad():
        for name, p in official.named_parameters():
            if name.startswith("momentum_"):
                p.add_(0.01 * torch.randn_like(p))
        randomize_batchnorm_(official)  # non-trivial BN statistics
    path = tmp_path / "latest.pth"
    # released files were pickled under numpy 1.x: their best_* metrics are numpy scalars
    save_like_numpy1({"model": {f"module.{k}": v for k, v in official.state_dict().items()}, "optimizer": {},
                      "epoch": 20, "best_Precision": np.float64(0.8), "best_AP": np.float64(0.5),
                      "best_F1": np.float64(0.6)}, path)
    return official, path


def test_released_checkpoint_loads_and_gives_the_same_maps_and_loss(tmp_path):
    official, path = released_checkpoint(tmp_path)
    ours = SLAVC(backbone="resnet18").load_weights(path)
    assert set(ours.state_dict()) == set(official.state_dict())
    image, spec = paper_batch(2)
    with torch.no_grad():
        for use_mom_eval in (False, True):  # test.py (online) and train.py:validate (momentum)
            official.use_mom_eval = ours.use_momentum_eval = use_mom_eval
            expected = official.eval()(image, spec, mode="test")[1]
            got = ours.eval().raw_maps(image, spec)
            print(f"use_mom_eval={use_mom_eval}: max |map difference| at 224 px = "
                  f"{(got - expected).abs().max().item():.2e}")
            assert torch.allclose(got, expected, atol=1e-4)
            upsampled = F.interpolate(expected[:, None], size=(224, 224), mode="bicubic", align_corners=True)[:, 0]
            assert torch.allclose(ours.localize(image, spec).maps, upsampled, atol=1e-4)

        # one training forward (train mode: BN batch statistics, EMA step, identical dropout masks)
        official.train(), ours.train()
        torch.manual_seed(11)
        loss_official, _ = official(image, spec)
        torch.manual_seed(11)
        loss_ours = ours(image, spec)
    print(f"loss: official {loss_official.item():.6f}, ours {loss_ours.item():.6f}")
    assert loss_ours.item() == pytest.approx(loss_official.item(), abs=1e-4)
    after = ours.state_dict()
    for key, value in official.state_dict().items():  # EMA parameters and momentum BN statistics
        assert torch.allclose(after[key], value, atol=1e-6), key
