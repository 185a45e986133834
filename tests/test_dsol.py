"""DSOL: object features, k-means, the stage schedule, both stages' losses, maps, confidences, parity
with the original layout (location_model.py) and an exact resume after a SIGKILL in stage 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from vslrepro.factory import arguments
from vslrepro.methods import load_state_dict_file, method_class
from vslrepro.methods.dsol import (
    DSOL,
    dilate_mask,
    kl_element_mean,
    negative_mosaics,
    object_features,
    original_layout_state_dict,
    other_clips,
)

from methodkit import batch_organize, optimise, randomize_batchnorm_, small_batch
from test_train import _profile, assert_same_run

# ---------------------------------------------------------------- plain re-implementations


def location_dilation(location_map: np.ndarray) -> np.ndarray:
    """training_stage_one.py `location_dilation`, on one (1, h, w) uint8 mask, loops as written there."""
    dilated = np.uint8(np.zeros_like(location_map))
    for i in range(location_map.shape[1]):
        for j in range(location_map.shape[2]):
            if location_map[0, i, j] == 1:
                dilated[0, i, j] = 1
                if 0 < i < location_map.shape[1] - 1 and 0 < j < location_map.shape[2] - 1:
                    dilated[0, i + 1, j] = dilated[0, i - 1, j] = 1
                    dilated[0, i, j - 1] = dilated[0, i, j + 1] = 1
    return dilated


def extract_object_feature(location_map: np.ndarray, v_fea: np.ndarray, mask: float = 0.05) -> np.ndarray:
    """extract_feature's per-sample lines: (1, h, w) map, (C, h, w) features -> (C,)."""
    obj_mask = location_dilation(np.uint8(location_map > mask))
    return np.mean(v_fea * obj_mask, (1, 2))


class OriginalResNet(nn.Module):
    """`base_model2.ResNet` of the original, written from torchvision's blocks: layer strides 1/2/2/1,
    both first convs (`conv1` 3-channel, `conv1_a` 1-channel) and an unused `fc`; `modal` picks one."""

    def __init__(self, modal: str) -> None:
        super().__init__()
        net = resnet18()
        net.layer4[0].conv1.stride = (1, 1)
        net.layer4[0].downsample[0].stride = (1, 1)
        self.modal = modal
        self.conv1_a = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.fc = nn.Linear(512, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1_a(x) if self.modal == "audio" else self.conv1(x)
        x = self.maxpool(self.relu(self.bn1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class OriginalStageOne(nn.Module):
    """Location_Net_stage_one (location_model.py), its forward written out; K classes."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.visual_net, self.audio_net = OriginalResNet("vision"), OriginalResNet("audio")
        self.conv_v_1, self.conv_v_2 = nn.Conv2d(512, 128, 1), nn.Conv2d(128, 128, 1)
        self.fc_a_1, self.fc_a_2 = nn.Linear(512, 128), nn.Linear(128, 128)
        self.conv_av = nn.Conv2d(1, 1, kernel_size=1, bias=False)
        self.v_class_layer, self.a_class_layer = nn.Linear(512, classes), nn.Linear(512, classes)

    def pathways(self, v_input, a_input):
        v_fea = self.visual_net(v_input)
        v = self.conv_v_2(torch.relu(self.conv_v_1(v_fea)))
        a_fea = torch.flatten(F.adaptive_max_pool2d(self.audio_net(a_input), 1), 1)
        a = self.fc_a_2(torch.relu(self.fc_a_1(a_fea)))
        a = F.normalize(a[..., None, None], dim=1)
        v = F.normalize(v, dim=1)
        av_map = torch.sigmoid(self.conv_av(torch.sum(v * a, 1, keepdim=True)))
        return v_fea, a_fea, av_map

    def forward(self, v_input, a_input):
        v_fea, a_fea, av_map = self.pathways(v_input, a_input)
        av_output = torch.squeeze(F.adaptive_max_pool2d(av_map, 1))
        v_logits = self.v_class_layer(torch.flatten(F.adaptive_avg_pool2d(v_fea, 1), 1))
        return av_output, av_map, v_fea, a_fea, v_logits, self.a_class_layer(a_fea)


class OriginalStageTwo(OriginalStageOne):
    """Location_Net_stage_two: + `obj_conv` (Conv3d 1×1), the class-aware maps, the 2×2 negative pool."""

    def __init__(self, classes: int) -> None:
        super().__init__(classes)
        self.obj_conv = nn.Conv3d(1, 1, kernel_size=1)

    def forward(self, v_input, a_input, obj_rep, minimize=False):
        v_fea, a_fea, av_map = self.pathways(v_input, a_input)
        posi_output = torch.squeeze(F.adaptive_max_pool2d(av_map[::2].contiguous(), 1))
        nega_output = F.adaptive_max_pool2d(av_map[1::2].contiguous(), 2)
        nega_output = nega_output.view(nega_output.shape[0], 4).view(-1)
        av_map_ = av_map.repeat(1, obj_rep.shape[0], 1, 1)
        obj_mask = torch.matmul(v_fea.permute(0, 2, 3, 1), obj_rep.permute(1, 0)).permute(0, 3, 1, 2)
        obj_mask = torch.squeeze(self.obj_conv(obj_mask.unsqueeze(1)), 1)
        if minimize:
            obj_mask = obj_mask * av_map_
        sounding_objects = torch.flatten(F.adaptive_avg_pool2d(obj_mask, 1), 1)
        return [posi_output, nega_output], av_map, self.a_class_layer(a_fea), sounding_objects, obj_mask


def kl_div_loss(log_q, p):
    """nn.KLDivLoss(reduce=True) as training_stage_two.py builds it (the legacy default: element mean)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nn.KLDivLoss(reduce=True)(log_q, p)


# ---------------------------------------------------------------- pure functions


def test_dilation_and_object_features_equal_the_original_loops():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(5, 7, 7, generator=g) ** 3  # sparse above 0.05 in places, border cells included
    features = torch.rand(5, 6, 7, 7, generator=g)
    dilated = dilate_mask(maps > 0.3)
    for i in range(5):
        expected = location_dilation(np.uint8(maps[i:i + 1].numpy() > 0.3))[0]
        assert np.array_equal(dilated[i].numpy(), expected.astype(bool))
        assert np.allclose(object_features(features, maps, 0.3)[i].numpy(),
                           extract_object_feature(maps[i:i + 1].numpy(), features[i].numpy(), 0.3), atol=1e-6)
    corner = torch.zeros(1, 5, 5, dtype=torch.bool)
    corner[0, 0, 0] = True  # a border cell spreads nothing (the original's quirk)
    assert torch.equal(dilate_mask(corner), corner)
    row = torch.zeros(1, 5, 5, dtype=torch.bool).index_fill_(1, torch.tensor([2]), True)
    assert int(dilate_mask(row).sum()) == 5 + 6




def test_kl_element_mean_equals_kldivloss_and_mosaics_tile_other_frames():
    g = torch.Generator().manual_seed(2)
    p = torch.softmax(torch.randn(4, 5, generator=g), 1)
    p[0] = torch.tensor([1.0, 0, 0, 0, 0])  # 0·log 0 = 0
    log_q = torch.log_softmax(torch.randn(4, 5, generator=g), 1)
    assert kl_element_mean(log_q, p).item() == pytest.approx(kl_div_loss(log_q, p).item(), rel=1e-6)
    images = torch.randn(3, 3, 8, 8, generator=g)
    quadrants = torch.tensor([[1, 2, 1, 2], [0, 2, 2, 0], [1, 0, 0, 1]])
    mosaics = negative_mosaics(images, quadrants)
    for i in range(3):
        for q, (r, c) in enumerate(((0, 0), (0, 4), (4, 0), (4, 4))):
            j = int(quadrants[i, q])
            for y in range(4):
                for x in range(4):
                    block = images[j, :, 2 * y:2 * y + 2, 2 * x:2 * x + 2].mean(dim=(1, 2))
                    assert torch.allclose(mosaics[i, :, r + y, c + x], block, atol=1e-6)
    with pytest.raises(ValueError, match="even size"):
        negative_mosaics(images[..., :7, :7], quadrants)
    torch.manual_seed(0)
    drawn = other_clips(5, 4)
    assert drawn.shape == (5, 4) and not (drawn == torch.arange(5)[:, None]).any()


# ---------------------------------------------------------------- the model and its schedule


class Batches:
    """A stand-in for vslrepro.train.TrainingData: a fixed pass of three small batches."""

    def batches(self):
        for seed in range(3):
            images, specs = small_batch(8, seed=10 + seed)
            yield images, specs, torch.arange(8) + 8 * seed


def stage_model(stage: int, **cfg) -> DSOL:
    """A small DSOL in stage 1 before any round (0), with pseudo labels (1), or in stage 2 (2)."""
    torch.manual_seed(0)
    cfg = {"layer4_stride": 2, **cfg}  # 7x7 maps: fast
    model = DSOL(backbone="small", clusters=3, stage_one_epochs=2, init_epochs=1, **cfg)
    for epoch in range({0: 0, 1: 2, 2: 3}[stage]):
        model.begin_epoch(epoch, Batches())
    return model


def test_shapes_maps_and_confidences():
    model = stage_model(0, layer4_stride=1).eval()
    image, spec = small_batch(4)
    with torch.no_grad():
        raw = model.raw_maps(image, spec)
        maps, confidence = model.localize(image, spec)
    assert raw.shape == (4, 14, 14) and ((raw > 0) & (raw < 1)).all()
    assert maps.shape == (4, 224, 224) and maps.dtype == torch.float32
    expected = F.interpolate(raw[:, None], size=(224, 224), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(maps, expected)
    # "max" = s = max_k m(k) on the 14x14 grid (the original's av_output), not of the upsampled map
    assert torch.equal(confidence["max"], raw.flatten(1).amax(1))
    upsampled = maps.flatten(1).amax(1)  # lower at an interior peak; equal at a border one (edge clamp)
    assert (confidence["max"] >= upsampled).all() and (confidence["max"] > upsampled).any()
    top = maps.flatten(1).sort(dim=1, descending=True).values[:, : 224 * 224 // 4]
    assert torch.allclose(confidence["topk_mean"], top.mean(1), atol=1e-6)
    assert confidence["max"].std() > 1e-3 and confidence["topk_mean"].std() > 1e-3
    assert stage_model(0, layer4_stride=2).raw_maps(image, spec).shape == (4, 7, 7)


def test_the_schedule_rounds_and_the_stage_switch():
    model = stage_model(0)
    model.begin_epoch(0, None)  # location only: nothing to compute
    assert int(model.stage) == 1 and int(model.clustered_epoch) == -1 and not model.classifying
    before = model.v_class_layer.weight.clone()
    model.begin_epoch(1, Batches())  # the round
    assert model.classifying and int(model.clustered_epoch) == 1
    assert not torch.equal(before, model.v_class_layer.weight)
    assert model.v_class_layer.weight.std().item() == pytest.approx(0.01, rel=0.3)
    assert not model.v_class_layer.bias.any()
    assert (model.dictionary.norm(dim=1) > 0).all()
    assert torch.allclose(model.centroids.norm(dim=1), torch.ones(3), atol=0.2)
    model.begin_epoch(1, None)  # this epoch's round is in the buffers: not recomputed (no data needed)
    with pytest.raises(ValueError, match="needs the training data"):
        stage_model(0).begin_epoch(1, None)
    # a round is a function of the weights and (seed, epoch): the same on a second model
    twin = stage_model(1)
    assert torch.equal(twin.dictionary, model.dictionary) and torch.equal(twin.v_class_layer.weight,
                                                                           model.v_class_layer.weight)
    # the switch: the teacher is the audio branch at the end of stage 1, frozen, snapshotted once
    model.begin_epoch(2, None)
    assert int(model.stage) == 2 and not model.classifying
    audio = {k: v.clone() for k, v in model.audnet.state_dict().items()}
    assert all(torch.equal(model.teacher_audnet.state_dict()[k], v) for k, v in audio.items())
    with torch.no_grad():
        next(model.audnet.parameters()).add_(1.0)  # as if stage 2 had trained the audio encoder
    model.begin_epoch(3, None)
    assert not all(torch.equal(model.teacher_audnet.state_dict()[k], v)
                   for k, v in model.audnet.state_dict().items())  # not re-snapshotted
    assert not any(p.requires_grad for p in model.teacher_audnet.parameters())
    image, spec = small_batch(4)
    with torch.no_grad():  # stage 2 evaluates the class-aware map of the category heard; s stays max m
        heard = model.audio_classes(spec).argmax(1)
        expected = model.class_maps(image, spec)[torch.arange(4), heard]
        assert torch.equal(model.raw_maps(image, spec), expected)
        assert torch.equal(model.localize(image, spec).confidence["max"],
                           model.location_map(image, spec).flatten(1).amax(1))
    model.train()
    assert not model.teacher_audnet.training  # its BatchNorm statistics stay frozen


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_gradients_reach_both_encoders_in_each_stage(stage):
    model = stage_model(stage)
    model(*small_batch(6)).backward()
    used = {name.split(".")[0] for name, p in model.named_parameters()
            if p.grad is not None and p.grad.abs().sum() > 0}
    heads = {"imgnet", "audnet", "conv_v_1", "conv_v_2", "fc_a_1", "fc_a_2", "conv_av"}
    expected = heads | {0: set(), 1: {"v_class_layer", "a_class_layer"}, 2: {"obj_conv"}}[stage]
    assert used == expected
    assert all(p.grad is None for p in model.teacher_audnet.parameters())


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_each_stage_loss_falls_on_a_fixed_batch(stage):
    model = stage_model(stage)
    image, spec = small_batch(8)

    def loss():
        torch.manual_seed(0)  # the same mismatched frames / mosaics at every step
        return model(image, spec)

    losses = optimise(model, loss)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses


def test_constructor_and_config_validation():
    for bad, match in ((dict(clusters=0), "clusters"), (dict(init_epochs=3, stage_one_epochs=3), "init_epochs"),
                       (dict(mask_threshold=1.0), "mask_threshold"), (dict(class_sharpness=0), "class_sharpness"),
                       (dict(layer4_stride=3), "layer4_stride"), (dict(backbone="vgg"), "unknown backbone")):
        with pytest.raises(ValueError, match=match):
            DSOL(**bad)
    assert method_class("dsol") is DSOL and DSOL.display_name == "DSOL"
    params = {"seed": 7, "model": {"backbone": "small", "dim": 64}, "methods": {"dsol": {"clusters": 5}}}
    assert arguments(params, "dsol") == {"backbone": "small", "seed": 7, "clusters": 5}
    assert DSOL.build(**arguments(params, "dsol")).v_class_layer.out_features == 5


# ---------------------------------------------------------------- parity with the original layout


def original_models(classes: int = 3):
    """The original's stage-one model (the teacher) and stage-two model with random weights and BN
    statistics, their state_dicts saved as the training scripts save them, and a dictionary."""
    torch.manual_seed(5)
    one, two = OriginalStageOne(classes), OriginalStageTwo(classes)
    for model in (one, two):
        model.conv_av.weight.data.fill_(5.0)
        randomize_batchnorm_(model)  # non-trivial BN statistics
        model.eval()
    dictionary = torch.rand(classes, 512) * 0.05
    return one, two, dictionary


def ours_from(original: dict, teacher: dict | None, dictionary, tmp_path) -> DSOL:
    path = tmp_path / "original.pth"
    torch.save(original, path)
    ours = DSOL(backbone="resnet18", clusters=3, layer4_stride=1)
    load_state_dict_file(ours, path, convert=lambda s: original_layout_state_dict(s, teacher=teacher,
                                                                                 dictionary=dictionary))
    return ours.eval()


def inputs(batch: int = 3):
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, 112, 112, generator=g), torch.randn(batch, 1, 96, 64, generator=g)


def test_stage_one_parity_maps_and_losses(tmp_path):
    teacher, _, _ = original_models()
    ours = ours_from(teacher.state_dict(), None, None, tmp_path)
    assert int(ours.stage) == 1 and not ours.classifying
    image, spec = inputs()
    with torch.no_grad():
        _, ref_map, v_fea, a_fea, v_logits, a_logits = teacher(image, spec)
        raw = ours.raw_maps(image, spec)
        print(f"stage 1: max |map diff| {(raw - ref_map[:, 0]).abs().max():.2e}")
        assert raw.shape == (3, 7, 7) and torch.allclose(raw, ref_map[:, 0], atol=1e-5)
        assert torch.equal(ours.localize(image, spec).confidence["max"], raw.flatten(1).amax(1))
        # location loss: batch_organize with the frames our forward draws, BCELoss on av_output
        torch.manual_seed(3)
        other = other_clips(3)[:, 0]
        audio2, image2, labels = batch_organize(spec, image, image[other])
        expected = nn.BCELoss()(teacher(image2, audio2)[0], labels)
        torch.manual_seed(3)
        loss = ours(image, spec)
        print(f"stage 1 location loss {loss.item():.6f} vs original {expected.item():.6f}")
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        # after a round: + CE on the pseudo labels (the cluster of each sample's object feature)
        features = torch.stack([torch.from_numpy(extract_object_feature(ref_map[i].numpy(), v_fea[i].numpy()))
                                for i in range(3)])
        ours.centroids.copy_(F.normalize(features[[2, 0, 1]], dim=1))  # three clusters, one sample each
        ours.clustered_epoch.fill_(0)
        labels = torch.tensor([1, 2, 0])
        expected = expected + nn.CrossEntropyLoss()(v_logits, labels) + nn.CrossEntropyLoss()(a_logits, labels)
        torch.manual_seed(3)
        loss = ours(image, spec)
        print(f"stage 1 location + class loss {loss.item():.6f} vs original {expected.item():.6f}")
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_stage_two_parity_maps_class_maps_and_loss(tmp_path):
    teacher, student, dictionary = original_models()
    with torch.no_grad():
        student.obj_conv.weight.fill_(0.7)
        student.obj_conv.bias.fill_(-0.2)
    ours = ours_from(student.state_dict(), teacher.state_dict(), dictionary, tmp_path)
    assert int(ours.stage) == 2
    image, spec = inputs()
    with torch.no_grad():
        torch.manual_seed(4)
        quadrants = other_clips(3, 4)
        mosaics = negative_mosaics(image, quadrants)
        audio2, image2, labels = batch_organize(spec, image, mosaics)
        (posi, nega), av_map, _, sounding, obj_mask = student(image2, audio2, dictionary, minimize=True)
        m = ours.location_map(image, spec)
        class_maps = ours.class_maps(image, spec)
        reference = torch.softmax(obj_mask * 3, 1)[::2]  # test_stage_two.py
        print(f"stage 2: max |map diff| {(m - av_map[::2, 0]).abs().max():.2e}, "
              f"max |class map diff| {(class_maps - reference).abs().max():.2e}")
        assert torch.allclose(m, av_map[::2, 0], atol=1e-5) and torch.allclose(class_maps, reference, atol=1e-5)
        # the map evaluated in stage 2: the class map of the category the frozen stage-1 model hears
        heard = teacher(image2, audio2)[5][::2].argmax(1)
        maps, confidence = ours.localize(image, spec, size=112)
        assert torch.allclose(ours.raw_maps(image, spec), reference[torch.arange(3), heard], atol=1e-5)
        assert torch.allclose(maps, F.interpolate(reference[torch.arange(3), heard][:, None], size=112,
                                                  mode="bilinear", align_corners=False)[:, 0], atol=1e-5)
        assert torch.allclose(confidence["max"], posi, atol=1e-6)  # s of the stage-2 model's own map m
        # training_stage_two.py: the location loss, the KL to the frozen model's audio classes
        nega_labels = labels[1::2].contiguous().view(-1, 1).repeat([1, 4]).view(-1)
        location = 0.5 * (nn.BCELoss()(posi, labels[::2]) + nn.BCELoss()(nega, nega_labels))
        audio_class = torch.softmax(teacher(image2, audio2)[5][::2] / 1.0, dim=1)
        category = kl_div_loss(torch.log_softmax(sounding[::2], dim=1), audio_class)
        expected = category + 0.5 * location
        torch.manual_seed(4)
        loss = ours(image, spec)
        print(f"stage 2 loss {loss.item():.6f} vs original {expected.item():.6f} "
              f"(category {category.item():.6f}, location {location.item():.6f})")
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_load_weights_recognizes_an_original_checkpoint(tmp_path):
    teacher, _, _ = original_models()
    torch.save(teacher.state_dict(), tmp_path / "location_cluster_net_iter_010_av_class.pth")
    ours = DSOL(backbone="resnet18", clusters=3).load_weights(tmp_path / "location_cluster_net_iter_010_av_class.pth")
    image, spec = inputs(2)
    with torch.no_grad():
        assert torch.allclose(ours.eval().raw_maps(image, spec), teacher(image, spec)[1][:, 0], atol=1e-5)


# ---------------------------------------------------------------- an exact resume in stage 2


def _train_dsol(profile, out):
    return [sys.executable, "-m", "vslrepro", "train", "--profile", str(profile), "--dataset", "flickr",
            "--method", "dsol", "--out", str(out), "--no-progress"]


def test_sigkill_in_stage_two_then_resume_gives_the_same_results(tmp_path, smoke_params):
    """5 smoke epochs: stage 1 = epochs 1-3 (rounds at 2, 3), stage 2 = epochs 4-5. Killed in epoch 5,
    the run resumes with the teacher and dictionary of its checkpoint (not rebuilt from epoch 4's weights)."""
    assert smoke_params["methods"]["dsol"]["stage_one_epochs"] == 3
    profile = _profile(tmp_path, smoke_params, epochs=5, method="dsol")
    subprocess.run(_train_dsol(profile, tmp_path / "straight"), check=True, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(_train_dsol(profile, killed), env={**os.environ, "VSLREPRO_BATCH_DELAY": "0.2"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not ((killed / "history.csv").is_file()
                                          and len(pd.read_csv(killed / "history.csv")) >= 4):
        time.sleep(0.05)
    time.sleep(0.5)  # a few batches into epoch 5
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoint = torch.load(killed / "latest.pt", weights_only=False)
    assert checkpoint["epoch"] == 4 and int(checkpoint["model"]["stage"]) == 2, "not killed in stage 2's 2nd epoch"

    subprocess.run(_train_dsol(profile, killed), check=True, capture_output=True)
    assert_same_run(profile, tmp_path / "straight", killed, tmp_path)
