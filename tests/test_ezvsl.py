"""EZ-VSL: loss, maps, confidences, official checkpoints (EZ-VSL + OGL: tests/test_ogl.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from vslrepro.data.errors import DataError
from vslrepro.methods.ezvsl import EZVSL, load_official_checkpoint, mil_contrastive_loss

from methodkit import randomize_batchnorm_, small_batch


def loop_loss(image_features: torch.Tensor, audio_features: torch.Tensor, tau: float) -> torch.Tensor:
    """The EZ-VSL loss written as plainly as possible: loops over pairs and cells."""
    b, d, h, w = image_features.shape
    logits = torch.empty(b, b, dtype=torch.float64)
    for n in range(b):
        for m in range(b):
            best = -float("inf")
            for y in range(h):
                for x in range(w):
                    s = sum(float(image_features[n, c, y, x]) * float(audio_features[m, c]) for c in range(d))
                    best = max(best, s / tau)
            logits[n, m] = best
    image_to_audio = sum(-torch.log_softmax(logits[n], 0)[n] for n in range(b)) / b
    audio_to_image = sum(-torch.log_softmax(logits[:, m], 0)[m] for m in range(b)) / b
    return image_to_audio + audio_to_image


def test_loss_equals_plain_loop():
    g = torch.Generator().manual_seed(1)
    v = F.normalize(torch.randn(4, 5, 3, 2, generator=g), dim=1)
    a = F.normalize(torch.randn(4, 5, generator=g), dim=1)
    loss, logits = mil_contrastive_loss(v, a, tau=0.1)
    assert logits.shape == (4, 4)
    assert loss.item() == pytest.approx(loop_loss(v, a, 0.1).item(), rel=1e-5)


def test_model_loss_uses_model_features():
    torch.manual_seed(0)
    model = EZVSL(backbone="small").eval()
    image, spec = small_batch(4)
    with torch.no_grad():
        v, a = model.image_features(image), model.audio_features(spec)
        assert v.shape == (4, 128, 7, 7) and a.shape == (4, 128)
        assert torch.allclose(v.norm(dim=1), torch.ones(4, 7, 7), atol=1e-5)
        expected = loop_loss(v, a, model.tau)
        assert model(image, spec).item() == pytest.approx(expected.item(), rel=1e-4)




def test_map_and_confidences_as_test_py_and_slavc():
    """Shapes and upsampling as every method's (tests/test_method_contract.py); here EZ-VSL's own:
    a 7×7 map S_nn, bilinear with align_corners=True, and SLAVC's top-25 % score of (S + 1/τ)/(2/τ)."""
    torch.manual_seed(0)
    model = EZVSL(backbone="small").eval()
    image, spec = small_batch(3)
    with torch.no_grad():
        raw = model.raw_maps(image, spec)
        maps, confidence = model.localize(image, spec)
    assert raw.shape == (3, 7, 7) and (model.upsample_mode, model.align_corners) == ("bilinear", True)
    assert torch.equal(confidence["max"], maps.flatten(1).max(1).values)
    tau = model.tau
    for i in range(3):  # top-25 % mean of (S + 1/tau) / (2/tau), SLAVC's score
        top = maps[i].flatten().sort(descending=True).values[: 224 * 224 // 4]
        assert confidence["topk_mean"][i].item() == pytest.approx(((top + 1 / tau) / (2 / tau)).mean().item(), rel=1e-5)
    # the map is S_nn: cosine / tau, so (within bounds) |S| <= 1/tau
    assert raw.abs().max() <= 1 / tau + 1e-3


class OfficialEZVSL(nn.Module):
    """The official module layout, built independently of vslrepro (model.py of stoneMo/EZ-VSL)."""

    def __init__(self, dim: int = 512) -> None:
        super().__init__()
        self.imgnet = resnet18()
        self.imgnet.avgpool = nn.Identity()
        self.imgnet.fc = nn.Identity()
        self.img_proj = nn.Conv2d(512, dim, kernel_size=(1, 1))
        self.audnet = resnet18()
        self.audnet.conv1 = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
        self.audnet.avgpool = nn.AdaptiveMaxPool2d((1, 1))
        self.audnet.fc = nn.Identity()
        self.aud_proj = nn.Linear(512, dim)

    def maps(self, image: torch.Tensor, spec: torch.Tensor, tau: float) -> torch.Tensor:
        img = self.imgnet(image).unflatten(1, (512, 7, 7))  # torchvision flattens after avgpool
        img = F.normalize(self.img_proj(img), dim=1)
        aud = F.normalize(self.aud_proj(self.audnet(spec)), dim=1)
        logits = torch.einsum("nchw,mc->nmhw", img, aud) / tau
        b = image.shape[0]
        return logits[torch.arange(b), torch.arange(b)]


def official_checkpoint(tmp_path):
    torch.manual_seed(5)
    official = OfficialEZVSL()
    randomize_batchnorm_(official)  # non-trivial BN statistics
    path = tmp_path / "best.pth"
    torch.save({"model": {f"module.{k}": v for k, v in official.state_dict().items()},
                "optimizer": {}, "epoch": 20, "best_cIoU": 0.5}, path)
    return official.eval(), path


def test_official_checkpoint_loads_and_gives_identical_maps(tmp_path):
    official, path = official_checkpoint(tmp_path)
    ours = load_official_checkpoint(EZVSL(backbone="resnet18"), path).eval()
    g = torch.Generator().manual_seed(0)
    image, spec = torch.randn(2, 3, 224, 224, generator=g), torch.randn(2, 1, 96, 80, generator=g)
    with torch.no_grad():
        assert torch.allclose(ours.raw_maps(image, spec), official.maps(image, spec, 0.03), atol=1e-4)


def test_official_checkpoint_errors_list_keys(tmp_path):
    _, path = official_checkpoint(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["model"]["module.aud_proj.bias"]
    checkpoint["model"]["module.extra.weight"] = torch.zeros(1)
    with pytest.raises(DataError, match=r"missing keys \['aud_proj.bias'\].*unexpected keys \['extra.weight'\]"):
        load_official_checkpoint(EZVSL(backbone="resnet18"), checkpoint)
    with pytest.raises(DataError, match=r"best\.pth does not fit EZVSL"):
        load_official_checkpoint(EZVSL(backbone="small"), path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_official_checkpoint(EZVSL(backbone="small"), tmp_path / "missing.pth")


def test_own_state_dict_round_trip():
    torch.manual_seed(0)
    a, b = EZVSL(backbone="small").eval(), EZVSL(backbone="small").eval()
    image, spec = small_batch(2)
    with torch.no_grad():
        assert not torch.allclose(a.raw_maps(image, spec), b.raw_maps(image, spec))
        load_official_checkpoint(b, {"model": a.state_dict()})
        assert torch.equal(a.raw_maps(image, spec), b.raw_maps(image, spec))
