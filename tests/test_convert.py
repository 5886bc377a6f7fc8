"""Checkpoint conversion: every layout users bring, strict completeness, and the result inside detectron2."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from tests.conftest import REPO
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
# smoke layout -> what auto-detection must call it
LAYOUTS = {
    "moco": "moco", "openselfsup": "openselfsup", "densecl_q": "openselfsup",
    "openselfsup_extracted": "torchvision", "torchvision": "torchvision", "wrapped": "torchvision",
    "vissl": "vissl", "detectron2": "detectron2", "msra": "msra",
}  # fmt: skip
TINY = {"STEM_OUT_CHANNELS": 16, "RES2_OUT_CHANNELS": 32, "WIDTH_PER_GROUP": 8}


@pytest.fixture(scope="module")
def tiny():
    return smoke.torchvision_resnet(50, stem=16, res2_out=32, width=8, seed=1)


def backbone(tv):
    return {k: v for k, v in tv.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}


def saved(tmp_path: Path, tv, layout: str) -> Path:
    src = tmp_path / (f"{layout}.pkl" if layout in smoke.PICKLED else f"{layout}.pth")
    if layout in smoke.PICKLED:
        src.write_bytes(pickle.dumps(smoke.wrap(tv, layout)))
    else:
        torch.save(smoke.wrap(tv, layout), src)
    return src


def converted(path):
    payload = pickle.loads(Path(path).read_bytes())
    assert payload["matching_heuristics"] is True and payload["__author__"].startswith("xfer")
    return payload["model"]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_converts_every_backbone_tensor_unchanged(tmp_path, tiny, layout):
    report = convert.convert_file(saved(tmp_path, tiny, layout), tmp_path / "out.pkl")
    assert report.layout == LAYOUTS[layout] and report.depth == 50
    assert report.widths == convert.Widths(16, 32, 8) and report.converted == 265
    model = converted(tmp_path / "out.pkl")
    assert set(model) == set(convert.expected_shapes(50, report.widths))
    for key, value in backbone(tiny).items():
        np.testing.assert_array_equal(model[convert.rename(key)], value.numpy(), err_msg=key)
    if layout == "msra":  # statistics are folded into the affine there: filled as mean 0, variance 1
        assert not model["res3.0.conv2.norm.running_mean"].any() and (model["stem.conv1.norm.running_var"] == 1).all()


def test_names_follow_the_seed_script():
    for tv_name, d2_name in SEED_NAMES.items():
        assert convert.rename(tv_name) == d2_name


def test_report_says_what_was_dropped(tmp_path, tiny):
    report = convert.convert_file(saved(tmp_path, tiny, "moco"), tmp_path / "out.pkl")
    assert report.dropped == {"fc": 2, "module.encoder_k": 267, "module.queue": 1}
    assert report.convention == "rgb_torchvision" and "module.encoder_q." in report.summary()
    assert convert.read_report(tmp_path / "out.pkl") == report


@pytest.fixture(scope="module")
def full_size():
    torch.manual_seed(0)
    return {50: torchvision.models.resnet50().state_dict(), 101: torchvision.models.resnet101().state_dict()}


@pytest.mark.parametrize("depth,layout", [(50, layout) for layout in sorted(LAYOUTS)] + [(101, "moco"), (101, "msra")])
def test_full_size_torchvision_resnets(tmp_path, full_size, depth, layout):
    tv = full_size[depth]
    report = convert.convert_file(saved(tmp_path, tv, layout), tmp_path / "out.pkl")
    assert (report.depth, report.widths, report.layout) == (depth, convert.Widths(), LAYOUTS[layout])
    model = converted(tmp_path / "out.pkl")
    assert len(model) == len(backbone(tv)) == {50: 265, 101: 520}[depth]
    assert model["res5.2.conv3.weight"].shape == (2048, 512, 1, 1)
    last = "layer3.22.conv2.weight" if depth == 101 else "layer3.5.conv2.weight"
    np.testing.assert_array_equal(model[convert.rename(last)], tv[last].numpy())


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda tv: tv.pop("layer2.1.conv2.weight"), "1 missing: res3.1.conv2.weight"),
        (lambda tv: tv.__setitem__("layer4.0.bn1.weight", torch.zeros(7)), "mis-shaped: res5.0.conv1.norm.weight (7,)"),
        (lambda tv: tv.__setitem__("layer1.0.conv4.weight", torch.zeros(1)), "unconverted: res2.0.conv4.weight"),
        (lambda tv: tv.pop("layer3.5.conv1.weight"), "missing: res4.5.conv1.weight"),
    ],
)
def test_incomplete_checkpoints_fail_naming_the_tensor(tmp_path, tiny, edit, message):
    tv = dict(tiny)
    edit(tv)
    with pytest.raises(convert.ConversionError, match="incomplete weights") as e:
        convert.convert_file(saved(tmp_path, tv, "openselfsup"), tmp_path / "out.pkl")
    assert message in str(e.value) and "read as openselfsup" in str(e.value)
    assert not (tmp_path / "out.pkl").exists()


def test_forced_format_that_does_not_fit_names_what_the_keys_look_like(tmp_path, tiny):
    src = saved(tmp_path, tiny, "openselfsup")
    with pytest.raises(
        convert.ConversionError, match=r"module\.encoder_q\..*read as moco; its keys look like openselfsup"
    ):
        convert.convert_file(src, tmp_path / "out.pkl", "moco")


def test_explicit_prefix_for_other_codebases(tmp_path, tiny):
    src = tmp_path / "other.pth"
    torch.save({"net": {f"encoder.trunk.{k}": v for k, v in tiny.items()}, "step": 3}, src)
    with pytest.raises(convert.ConversionError, match="cannot tell the layout"):
        convert.convert_file(src, tmp_path / "out.pkl")
    torch.save({"state_dict": {f"encoder.trunk.{k}": v for k, v in tiny.items()}}, src)
    report = convert.convert_file(src, tmp_path / "out.pkl", prefix="encoder.trunk.")
    assert report.converted == 265 and report.prefix == "encoder.trunk."


def test_cache_converts_once_per_file_and_format(tmp_path, tiny):
    src = saved(tmp_path, tiny, "moco")
    path, report = convert.cached(src, "auto", tmp_path / "cache")
    stamp = path.stat().st_mtime_ns
    again, _ = convert.cached(src, "auto", tmp_path / "cache")
    assert again == path and path.stat().st_mtime_ns == stamp and report.layout == "moco"
    assert convert.cached(src, "moco", tmp_path / "cache")[0] != path  # another format: its own conversion


def test_converted_weights_land_in_a_real_detectron2_c4_model(tmp_path, tiny):
    from tests.test_recipe import composed
    from xfer import d2compat, engine, recipe

    d2compat.ensure()
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    convert.convert_file(saved(tmp_path, tiny, "vissl"), tmp_path / "w.pkl")
    cfg = recipe.build(composed("benchmark=smoke", "pretrain=custom"), tmp_path / "w.pkl", tmp_path, "cpu")
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(tmp_path / "w.pkl"))
    assert engine.verify_loaded(model, str(tmp_path / "w.pkl")) == 265
    state = model.state_dict()
    torch.testing.assert_close(state["roi_heads.res5.2.conv3.weight"], tiny["layer4.2.conv3.weight"], rtol=0, atol=0)
    torch.testing.assert_close(state["backbone.stem.conv1.weight"], tiny["conv1.weight"], rtol=0, atol=0)
    with torch.no_grad():
        model.roi_heads.res5[1].conv2.weight.add_(1.0)  # as if detectron2 had placed it wrongly
    with pytest.raises(engine.WeightsNotLoaded, match=r"1 pretrained tensors .*roi_heads\.res5\.1\.conv2\.weight"):
        engine.verify_loaded(model, str(tmp_path / "w.pkl"))


def test_convert_command(tmp_path, tiny):
    src = saved(tmp_path, tiny, "moco")
    cmd = [sys.executable, "-m", "xfer", "convert", str(src), str(tmp_path / "o.pkl")]
    ok = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "layout moco" in ok.stdout and "265 tensors converted" in ok.stdout and "rgb_torchvision" in ok.stdout
    bad = subprocess.run([*cmd, "--depth", "101"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "is a ResNet-50, not ResNet-101" in bad.stderr
    assert not (tmp_path / "o.pkl").exists()
