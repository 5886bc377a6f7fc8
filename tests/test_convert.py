"""Checkpoint conversion on real files in each smoke layout, and on a full-size torchvision ResNet-50."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torchvision

from xfer import convert, smoke

# The seed's convert-pretrain-to-detectron2.py, applied by hand to representative names.
SEED_NAMES = {
    "conv1.weight": "stem.conv1.weight",
    "bn1.running_var": "stem.conv1.norm.running_var",
    "layer1.0.conv1.weight": "res2.0.conv1.weight",
    "layer1.0.bn2.bias": "res2.0.conv2.norm.bias",
    "layer1.0.downsample.0.weight": "res2.0.shortcut.weight",
    "layer1.0.downsample.1.running_mean": "res2.0.shortcut.norm.running_mean",
    "layer3.5.bn3.weight": "res4.5.conv3.norm.weight",
    "layer4.2.conv3.weight": "res5.2.conv3.weight",
}


@pytest.fixture(scope="module")
def tiny():
    return smoke.torchvision_resnet(50, stem=16, res2_out=32, width=8, seed=1)


def backbone(tv):
    return {k: v for k, v in tv.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}


def converted(path):
    with open(path, "rb") as f:
        payload = pickle.load(f)
    assert payload["matching_heuristics"] is True
    return payload["model"]


@pytest.mark.parametrize(
    "layout,detected",
    [("moco", "moco"), ("openselfsup", "openselfsup"), ("openselfsup_extracted", "openselfsup"),
     ("torchvision", "torchvision")],
)  # fmt: skip
def test_each_layout_converts_every_backbone_tensor_unchanged(tmp_path, tiny, layout, detected):
    src = tmp_path / "ckpt.pth"
    torch.save(smoke.wrap(tiny, layout), src)
    done = convert.convert_file(src, tmp_path / "out.pkl")
    assert done.layout == detected
    model = converted(done.path)
    expected = backbone(tiny)
    assert set(model) == {convert.rename(k) for k in expected}
    assert done.converted == len(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(model[convert.rename(key)], value.numpy())


def test_names_follow_the_seed_script():
    for tv_name, d2_name in SEED_NAMES.items():
        assert convert.rename(tv_name) == d2_name


def test_full_size_torchvision_resnet50(tmp_path):
    tv = torchvision.models.resnet50(weights=None).state_dict()
    src = tmp_path / "r50.pth"
    torch.save(tv, src)
    model = converted(convert.convert_file(src, tmp_path / "r50.pkl").path)
    assert len(model) == len(backbone(tv)) == 53 * 5  # 53 convs, each with weight + 4 norm tensors
    assert model["res5.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert model["stem.conv1.norm.weight"].shape == (64,)


def test_cache_converts_once_and_checks_the_declared_format(tmp_path, tiny):
    src = tmp_path / "moco.pth.tar"
    torch.save(smoke.wrap(tiny, "moco"), src)
    first = convert.cached(src, "moco", tmp_path / "cache")
    stamp = first.path.stat().st_mtime_ns
    again = convert.cached(src, "auto", tmp_path / "cache")
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp and again.layout == "moco"
    with pytest.raises(convert.ConversionError, match="format=openselfsup, but its keys look like moco"):
        convert.cached(src, "openselfsup", tmp_path / "cache")


def test_msra_pickles_are_passed_to_detectron2_as_they_are(tmp_path, tiny):
    src = tmp_path / "R-50.pkl"
    src.write_bytes(pickle.dumps(smoke.msra_blobs(tiny)))
    blobs = pickle.loads(src.read_bytes())["blobs"]
    assert "res2_0_branch2a_w" in blobs and "res_conv1_bn_s" in blobs and "res2_0_branch1_bn_b" in blobs
    assert convert.cached(src, "msra", tmp_path / "cache").path == src


@pytest.mark.parametrize("content", [b"", b"not a checkpoint\n", b"PK\x03\x04 truncated zip"])
def test_files_that_are_not_checkpoints_get_a_clear_error(tmp_path, content):
    src = tmp_path / "bad.pth"
    src.write_bytes(content)
    with pytest.raises(convert.ConversionError, match="not a readable PyTorch checkpoint"):
        convert.convert_file(src, tmp_path / "out.pkl")
    assert not (tmp_path / "out.pkl").exists()
