"""CoarsetoFine: losses, stages, pseudo labels, maps, confidences, an exact resume in stage 2, and
parity with the original's layout and formulas (new/stage_one.py, new/stage_two.py, new/main.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torchvision.models import ResNet
from torchvision.models.resnet import BasicBlock

from vslrepro import metrics
from vslrepro.config import ProfileError
from vslrepro.factory import arguments, training_model
from vslrepro.methods import method_class
from vslrepro.methods.coarsetofine import (
    CoarsetoFine,
    alignment_loss,
    avc_loss,
    class_weights,
    classification_loss,
    from_original,
)
from vslrepro.profiles import load_profile

from methodkit import optimise, randomize_batchnorm_, small_batch
from test_train import assert_same_run

K = 7


# ---------------------------------------------------------------- the original, re-implemented plainly


class OriginalTrunk(ResNet):
    """new/base_model.py's ResNet-18: conv1 (RGB) and conv1_a (1 channel) stems, layer strides
    1/2/2/1, an unused fc; forward returns the layer4 map. Built on torchvision, not on vslrepro."""

    def __init__(self, modal: str) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2])
        self.modal = modal
        self.conv1_a = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.layer4[0].conv1.stride = (1, 1)
        self.layer4[0].downsample[0].stride = (1, 1)

    def forward(self, x):
        x = self.conv1_a(x) if self.modal == "audio" else self.conv1(x)
        x = self.maxpool(self.relu(self.bn1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class OriginalModel(nn.Module):
    """The modules of new/stage_two.py (`Align`, `Location`) under their names, with both forwards
    written out as the original computes them."""

    def __init__(self) -> None:
        super().__init__()
        self.vision, self.audio = OriginalTrunk("vision"), OriginalTrunk("audio")
        self.avc = nn.Sequential(nn.Linear(1024, 128), nn.ReLU(True), nn.Linear(128, 2))
        self.project_a = nn.Sequential(nn.Conv1d(512, 1024, 1, bias=False), nn.ReLU(True),
                                       nn.Conv1d(1024, 128, 1, bias=False))
        self.project_v = nn.Sequential(nn.Conv1d(512, 1024, 1, bias=False), nn.ReLU(True),
                                       nn.Conv1d(1024, 128, 1, bias=False))
        self.class_a = nn.Conv2d(512, K, 1, bias=False)
        self.class_v = nn.Conv2d(512, K, 1, bias=False)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))

    def _avc_and_classes(self, feat_a, feat_v):
        n = feat_a.shape[0]
        feat_a, feat_v = self.avgpool(feat_a), self.avgpool(feat_v)
        fusion = torch.cat([feat_a.unsqueeze(1).repeat([1, n, 1, 1, 1]),
                            feat_v.unsqueeze(0).repeat([n, 1, 1, 1, 1])], 2)
        avc = self.avc(torch.flatten(fusion, 2))
        return avc, self.class_a(feat_a).flatten(1), self.class_v(feat_v).flatten(1)

    @staticmethod
    def _fine(feat, cam):
        fine = feat.unsqueeze(2) * cam.unsqueeze(1)
        weight = torch.sum(cam.view(*cam.shape[:2], -1), -1)
        fine = torch.mean(fine.view(*fine.shape[:3], -1), -1)
        return fine / (weight.unsqueeze(1) + 1e-10)

    def align(self, spec, img):
        feat_a, feat_v = self.audio(spec), self.vision(img)
        cam_a, cam_v = F.relu(self.class_a(feat_a)).detach(), F.relu(self.class_v(feat_v)).detach()
        fine_a = F.normalize(self.project_a(self._fine(feat_a, cam_a)), p=2, dim=1)
        fine_v = F.normalize(self.project_v(self._fine(feat_v, cam_v)), p=2, dim=1)
        return (*self._avc_and_classes(feat_a, feat_v), fine_a, fine_v)

    def location(self, spec, img):
        feat_a, feat_v = self.audio(spec), self.vision(img)
        cam_a = F.relu(self.class_a(feat_a))
        fine_a = F.normalize(self.project_a(self._fine(feat_a, cam_a)), p=2, dim=1)
        fine_v = F.normalize(self.project_v(feat_v.view(*feat_v.shape[:2], -1)), p=2, dim=1)
        avc, cls_a, _ = self._avc_and_classes(feat_a, feat_v)
        return avc, cls_a, fine_a, fine_v, feat_v.shape[2:]


def original_avc_loss(avc):
    gt = torch.eye(avc.shape[0]).long().view(-1)
    per_pair = nn.CrossEntropyLoss(reduction="none")(avc.view(-1, 2), gt)
    return torch.mean(per_pair[gt == 1]) / 2 + torch.mean(per_pair[gt == 0]) / 2


def original_stage_two_loss(model, spec, img, labels):
    """main.py:train_stage_two's loss with filter_prob and contrastive written out."""
    avc, cls_a, cls_v, fine_a, fine_v = model.align(spec, img)
    bce = nn.BCELoss()
    aloss, vloss = bce(torch.sigmoid(cls_a), labels), bce(torch.sigmoid(cls_v), labels)
    eff = ((torch.sigmoid(cls_a).view(-1).unsqueeze(1) > 0.3)
           * (torch.sigmoid(cls_v).view(-1).unsqueeze(0) > 0.3)).float()
    a = fine_a.permute(0, 2, 1).contiguous().view(-1, 128)
    v = fine_v.permute(0, 2, 1).contiguous().view(-1, 128)
    distance = 2 - 2 * torch.mm(a, v.permute(1, 0))
    pos = torch.eye(distance.shape[0])
    neg = 1 - pos
    pos_dis = torch.sum(distance * eff * pos) / torch.sum(pos * eff + 1e-10)
    neg_dis = torch.sum(F.relu(1.4 - distance.sqrt()).pow(2) * eff * neg) / torch.sum(neg * eff + 1e-10)
    return aloss + vloss + original_avc_loss(avc) + pos_dis + neg_dis


def original_test_map(model, spec, img, size):
    """main.py:test + visualize for one sample (batch 1), with its double sigmoid, as numpy."""
    _, cls_a, fine_a, fine_v, (h, w) = model.location(spec, img)
    cls_a = torch.sigmoid(cls_a)
    similarity = F.relu(torch.einsum("bij,bik->bjk", fine_a, fine_v)).view(1, K, h, w)
    similarity = F.interpolate(similarity, (size, size), mode="bilinear")
    prob = torch.sigmoid(cls_a)[0].numpy()
    eff = prob > 0.3
    eff[np.argmax(prob)] = 1
    location = F.relu(similarity).numpy()[0]
    location = np.sum(location[eff] * prob.reshape(K, 1, 1)[eff], 0) / np.sum(prob[eff])
    return location / np.max(location)


@pytest.fixture(scope="module")
def original():
    torch.manual_seed(5)
    model = OriginalModel()
    randomize_batchnorm_(model)  # non-trivial BN statistics
    return model.eval()


@pytest.fixture(scope="module")
def big_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 3, 224, 224, generator=g), torch.randn(3, 1, 128, 96, generator=g)


# ---------------------------------------------------------------- parity with the original


def test_original_state_dict_loads_and_gives_the_original_test_maps(tmp_path, original, big_batch):
    path = tmp_path / "stage_2_19.pth"
    torch.save(original.state_dict(), path)  # main.py saves a bare state_dict
    ours = CoarsetoFine(backbone="resnet18", layer4_stride=1).load_weights(path).eval()
    assert not bool(ours.centres_fitted)
    assert torch.equal(ours.labeller_audnet.conv1.weight, original.audio.conv1_a.weight)
    image, spec = big_batch
    with torch.no_grad():
        result = ours.localize(image, spec)
        expected = np.stack([original_test_map(original, spec[i:i + 1], image[i:i + 1], 224)
                             for i in range(3)])
    difference = np.abs(result.maps.numpy() - expected).max()
    print(f"max |map - original map| {difference:.2e}")
    assert difference < 1e-5
    assert torch.equal(result.confidence["max"], torch.ones(3))


def test_stage_losses_equal_the_original_formulas(original, big_batch):
    ours = CoarsetoFine(backbone="resnet18", layer4_stride=1).load_weights(original.state_dict()).eval()
    image, spec = big_batch
    labels = torch.tensor([[1, 0, 0, 1, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 1]]).float()
    with torch.no_grad():
        stage_one = ours.stage_one_loss(image, spec)
        expected_one = original_avc_loss(original.align(spec, image)[0])
        stage_two, expected_two = ours.stage_two_loss(image, spec, labels), original_stage_two_loss(
            original, spec, image, labels)
    print(f"stage 1: {stage_one.item():.6f} vs {expected_one.item():.6f}; "
          f"stage 2: {stage_two.item():.6f} vs {expected_two.item():.6f}")
    assert stage_one.item() == pytest.approx(expected_one.item(), rel=1e-5)
    assert stage_two.item() == pytest.approx(expected_two.item(), rel=1e-5)


def test_loss_functions_equal_the_original_on_hand_made_inputs():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 4, 2, generator=g)
    assert avc_loss(logits).item() == pytest.approx(original_avc_loss(logits).item(), rel=1e-6)
    cls, labels = torch.randn(4, K, generator=g), (torch.rand(4, K, generator=g) > 0.5).float()
    assert classification_loss(cls, labels).item() == pytest.approx(
        nn.BCELoss()(torch.sigmoid(cls), labels).item(), rel=1e-6)
    # alignment: a pair only counts when both probabilities pass 0.3; no valid pair gives 0
    fine_a = F.normalize(torch.randn(2, 8, 3, generator=g), dim=1)
    fine_v = F.normalize(torch.randn(2, 8, 3, generator=g), dim=1)
    never = torch.full((2, 3), -5.0)  # σ = 0.007 < 0.3
    assert alignment_loss(fine_a, fine_v, never, never).item() == 0.0
    # identical embeddings, only one class valid per sample: the positives are at D = 0, the
    # negatives (other sample, same class) at D = 2 − 2cos
    cls_a = torch.tensor([[5.0, -5, -5], [5.0, -5, -5]])
    d = 2 - 2 * (fine_a[0, :, 0] @ fine_a[1, :, 0])
    expected = F.relu(1.4 - d.sqrt()) ** 2
    assert alignment_loss(fine_a, fine_a, cls_a, cls_a).item() == pytest.approx(expected.item(), abs=1e-6)


# ---------------------------------------------------------------- the model


class FakeTrainingData:
    """What the trainer hands `begin_epoch`: `batches()` over a fixed set (counts its passes)."""

    def __init__(self, images, specs, batch_size=4):
        self.images, self.specs, self.batch_size, self.passes = images, specs, batch_size, 0

    def batches(self):
        self.passes += 1
        for start in range(0, len(self.images), self.batch_size):
            end = start + self.batch_size
            yield self.images[start:end], self.specs[start:end], torch.arange(start, end)


def staged_model(stage, b=8, seed=0):
    torch.manual_seed(seed)
    model = CoarsetoFine(backbone="small", stage_one_epochs=1)
    model.begin_epoch(stage - 1, FakeTrainingData(*small_batch(16, seed + 100)))  # the "training set"
    image, spec = small_batch(b, seed)
    return model, image, spec


def test_shapes_maps_and_confidences():
    model, image, spec = staged_model(2, b=4)
    loss = model(image, spec)
    assert loss.dim() == 0 and torch.isfinite(loss)
    model.eval()
    with torch.no_grad():
        feat_a, feat_v = model.feature_maps(image, spec)
        similarity, cls_a, match = model.class_maps(image, spec)
        raw = model.raw_maps(image, spec)
        maps, confidence = model.localize(image, spec)
    assert feat_v.shape == (4, 128, 14, 14) and feat_a.shape == (4, 128, 9, 8)  # layer4_stride 1
    assert model.avc_logits(feat_a.mean((2, 3)), feat_v.mean((2, 3))).shape == (4, 4, 2)
    assert similarity.shape == (4, K, 14, 14) and cls_a.shape == (4, K) and match.shape == (4,)
    assert model.class_embeddings(feat_a, model.class_a, model.project_a).shape == (4, 128, K)
    assert raw.shape == (4, 14, 14) and ((raw >= 0) & (raw <= 1)).all()
    assert maps.shape == (4, 224, 224) and maps.dtype == torch.float32
    up = F.interpolate(raw[:, None], size=(224, 224), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(maps, up / up.flatten(1).amax(1)[:, None, None], atol=1e-6)
    assert set(confidence) == {"max", "topk_mean", "fused_max", "avc"}
    assert all(c.shape == (4,) and c.dtype == torch.float32 for c in confidence.values())
    assert torch.allclose(confidence["fused_max"], up.flatten(1).amax(1))
    top = maps.flatten(1).sort(dim=1, descending=True).values[:, : 224 * 224 // 4]
    assert torch.allclose(confidence["topk_mean"], top.mean(1), atol=1e-6)


def test_confidence_max_is_constant_and_gives_official_ap_zero():
    model, image, spec = staged_model(2, b=6)
    with torch.no_grad():
        confidence = model.eval().localize(image, spec).confidence
    assert torch.equal(confidence["max"], torch.ones(6))  # x / x is exactly 1
    assert confidence["fused_max"].std() > 1e-4 and confidence["avc"].std() > 1e-5  # these can rank
    # a constant score under both evaluator modes: 3 hits among 4 positives, 4 negatives
    ciou = np.array([0.9, 0.7, 0.6, 0.1, 0, 0, 0, 0])
    positive = np.array([True] * 4 + [False] * 4)
    constant = np.ones(8)
    official = metrics.summarize(ciou, constant, positive, mode="official")
    exact = metrics.summarize(ciou, constant, positive, mode="exact")
    assert official["ap"] == 0.0
    assert exact["ap"] == pytest.approx(0.75 * 4 / 8)  # LocAcc · n_pos / N
    assert exact["max_f1"] == pytest.approx(2 * (3 / 8) / (3 / 8 + 1))  # everything detected


def test_an_all_zero_map_stays_zero_instead_of_nan():
    model, image, spec = staged_model(2, b=2)
    with torch.no_grad():
        model.project_v[2].weight.zero_()  # every visual cell embedding 0: every cosine 0
        maps, confidence = model.eval().localize(image, spec)
    assert torch.equal(maps, torch.zeros_like(maps)) and torch.equal(confidence["max"], torch.zeros(2))


def test_double_sigmoid_keeps_every_class():
    model = CoarsetoFine(backbone="small")
    logits = torch.tensor([[8.0, -8.0, 0.0, 3.0, -3.0, 1.0, -1.0]])
    p = model.class_probability(logits)
    assert ((p > 0.5) & (p < 1 / (1 + np.exp(-1)))).all()  # σ(σ(x)) ∈ (0.5, 0.731)
    assert (class_weights(p) == p).all()  # every class passes the 0.3 cut
    single = CoarsetoFine(backbone="small", double_sigmoid=False)
    q = single.class_probability(logits)
    assert torch.allclose(q, torch.sigmoid(logits))
    kept = torch.tensor([[True, False, True, True, False, True, False]])  # σ(−1) = 0.27 < 0.3
    assert torch.equal(class_weights(q) > 0, kept)
    # argmax always kept, even below the cut
    assert torch.equal(class_weights(torch.tensor([[0.1, 0.2]])), torch.tensor([[0.0, 0.2]]))


def test_gradients_reach_both_encoders_in_each_stage():
    for stage, trained in ((1, ("imgnet.", "audnet.", "avc.")),
                           (2, ("imgnet.", "audnet.", "avc.", "class_a.", "class_v.", "project_a.",
                                "project_v."))):
        model, image, spec = staged_model(stage)
        model.train()
        model(image, spec).backward()
        grads = dict(model.named_parameters())
        for prefix in trained:
            assert any(p.grad is not None and p.grad.abs().sum() > 0
                       for n, p in grads.items() if n.startswith(prefix)), (stage, prefix)
        assert all(p.grad is None for n, p in grads.items() if n.startswith("labeller_")), stage
        if stage == 1:  # in the graph (DDP) with a gradient of exactly zero
            idle = [p.grad for n, p in grads.items() if n.startswith(("class_", "project_"))]
            assert idle and all(g is not None and not g.any() for g in idle)


@pytest.mark.parametrize("stage", [1, 2])
def test_each_stage_loss_falls_on_a_fixed_batch(stage):
    model, image, spec = staged_model(stage)
    model.train()
    losses = optimise(model, lambda: model(image, spec))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses  # stage 1 starts at ln 2


def test_begin_epoch_fits_once_at_the_boundary_and_never_on_a_resume():
    torch.manual_seed(0)
    model = CoarsetoFine(backbone="small", stage_one_epochs=2, classes=3)
    image, spec = small_batch(8)
    data = FakeTrainingData(image, spec)
    model.begin_epoch(0, data)
    model.begin_epoch(1, data)
    assert model.stage == 1 and data.passes == 0 and not bool(model.centres_fitted)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.pseudo_labels(image, spec)
    model.begin_epoch(2, data)
    assert model.stage == 2 and data.passes == 1 and bool(model.centres_fitted)
    labels = model.pseudo_labels(image, spec)
    assert labels.shape == (8, 3) and torch.equal(labels.sum(1), torch.ones(8))
    # the labeller is the encoders at the boundary; training them afterwards leaves it (and the labels) alone
    with torch.no_grad():
        for p in model.imgnet.parameters():
            p.add_(1.0)
    model.begin_epoch(3, data)
    assert data.passes == 1 and torch.equal(model.pseudo_labels(image, spec), labels)
    # a model restored from a stage-2 checkpoint keeps the saved centres: begin_epoch does not refit
    restored = CoarsetoFine(backbone="small", stage_one_epochs=2, classes=3)
    restored.load_state_dict(model.state_dict())
    untouched = FakeTrainingData(image[:0], spec[:0])
    restored.begin_epoch(3, untouched)
    assert untouched.passes == 0 and torch.equal(restored.pseudo_labels(image, spec), labels)
    with pytest.raises(ValueError, match="needs the training data"):
        CoarsetoFine(backbone="small", stage_one_epochs=0).begin_epoch(0, None)


def test_the_labeller_stays_in_eval_mode():
    model = CoarsetoFine(backbone="small").train()
    assert model.imgnet.training and not model.labeller_imgnet.training and not model.labeller_audnet.training




def test_constructor_config_and_converter():
    for bad, match in ((dict(classes=0), "classes"), (dict(stage_one_epochs=-1), "stage_one_epochs"),
                       (dict(margin=0), "margin"), (dict(threshold=1.0), "threshold"),
                       (dict(double_sigmoid=1), "double_sigmoid"), (dict(seed=-1), "seed"),
                       (dict(layer4_stride=3), "layer4_stride"), (dict(backbone="vgg"), "unknown backbone")):
        with pytest.raises(ValueError, match=match):
            CoarsetoFine(**bad)
    assert method_class("coarsetofine") is CoarsetoFine and CoarsetoFine.display_name == "CoarsetoFine"
    params = {"seed": 0, "model": {"backbone": "small", "dim": 64}, "methods": {"coarsetofine": {"classes": 4}}}
    assert arguments(params, "coarsetofine") == {"backbone": "small", "seed": 0, "classes": 4}
    model = CoarsetoFine.build(**arguments(params, "coarsetofine"))
    assert {k.split(".")[0] for k in model.state_dict()} == {
        "imgnet", "audnet", "avc", "class_a", "class_v", "project_a", "project_v", "labeller_imgnet",
        "labeller_audnet", "centres", "centres_fitted"}
    assert from_original(model.state_dict()).keys() == model.state_dict().keys()  # ours: unchanged


def test_a_schedule_without_stage_two_is_refused(smoke_params, tmp_path):
    everything = {"stage_one_epochs": smoke_params["train"]["epochs"]}
    params = {**smoke_params, "methods": {"coarsetofine": everything}}
    with pytest.raises(ValueError, match="stage 2 never runs"):
        training_model(params, "coarsetofine")
    profile = tmp_path / "c2f.yaml"  # refused when the profile loads, before any stage runs
    profile.write_text(yaml.safe_dump({**params, "profile": "c2f-schedule"}))
    with pytest.raises(ProfileError, match=r"methods\.coarsetofine: stage_one_epochs \(4\) must be smaller than "
                                           r"train\.epochs \(4\)"):
        load_profile(profile)


# ---------------------------------------------------------------- an exact resume inside stage 2


def _train_cmd(profile, out):
    return [sys.executable, "-m", "vslrepro", "train", "--profile", str(profile), "--dataset", "flickr",
            "--method", "coarsetofine", "--out", str(out), "--no-progress"]


def test_sigkill_in_stage_two_then_resume_gives_the_same_results(tmp_path, smoke_params):
    methods = {**smoke_params["methods"], "coarsetofine": {**smoke_params["methods"]["coarsetofine"],
                                                           "stage_one_epochs": 1}}
    params = {**smoke_params, "profile": "smoke-c2f-test", "methods": methods,
              "train": {**smoke_params["train"], "epochs": 3}}
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(params))
    subprocess.run(_train_cmd(profile, tmp_path / "straight"), check=True, capture_output=True)

    killed = tmp_path / "killed"
    env = {**os.environ, "VSLREPRO_BATCH_DELAY": "0.1"}  # slow batches so the kill lands mid-epoch
    process = subprocess.Popen(_train_cmd(profile, killed), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and not ((killed / "history.csv").is_file()
                                          and len(pd.read_csv(killed / "history.csv")) >= 2):
        time.sleep(0.05)
    time.sleep(0.25)  # a few batches into epoch 3, the second epoch of stage 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    interrupted = pd.read_csv(killed / "history.csv")
    assert len(interrupted) == 2, "the kill did not land in epoch 3"
    saved = torch.load(killed / "latest.pt", weights_only=False)["model"]
    assert bool(saved["centres_fitted"])  # the boundary's centres are in the checkpoint

    subprocess.run(_train_cmd(profile, killed), check=True, capture_output=True)
    assert_same_run(profile, tmp_path / "straight", killed, tmp_path)
