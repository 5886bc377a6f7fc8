"""Checkpoint conversion: every layout users bring, strict completeness, and the result inside detectron2.

Independent oracles: the expected names and shapes are those of detectron2's own C4 ResNet (its backbone to res4
and the ROI head's res5 stage, built by detectron2 from a small config); the source checkpoints are torchvision's
own ResNet state dicts with every tensor randomised, put by hand into each codebase's container and names (MSRA's
Caffe2 blob names written out here); where each tensor must land is spelled out here from the two naming schemes.
"""

from __future__ import annotations

import functools
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch
import torchvision

from tests.conftest import REPO
from xfer import d2compat
from xfer.trial import convert, converted

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
# the container each codebase saves -> what auto-detection must call it
LAYOUTS = {
    "moco": "moco", "openselfsup": "openselfsup", "densecl_q": "openselfsup",
    "openselfsup_extracted": "torchvision", "torchvision": "torchvision", "wrapped": "torchvision",
    "vissl": "vissl", "detectron2": "detectron2", "msra": "msra",
}  # fmt: skip
PICKLED = ("msra", "detectron2")  # saved as plain pickles (.pkl), as those codebases do
OUT = "out.safetensors"  # converted weights as the trials read them (the conversion cache's format)
NARROW = convert.Widths(stem=64, res2_out=256, bottleneck=8)  # torchvision's resnet50(width_per_group=8)


def randomised(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The module's state dict with every float tensor random (BN too), so any tensor that lands in the wrong
    place shows; integer buffers (num_batches_tracked) as they are."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) if v.is_floating_point() else v for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def tv() -> dict[str, torch.Tensor]:
    """torchvision's ResNet-50 with narrow bottlenecks: stem 64, res2 out 256, bottleneck 8 (fc included)."""
    return randomised(torchvision.models.resnet50(weights=None, width_per_group=8), seed=1)


@functools.cache
def detectron2_resnet(depth: int, widths: convert.Widths) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor detectron2's C4 Faster R-CNN takes from a pretrained ResNet: the backbone
    (stem, res2-res4) and the ROI head's res5, as detectron2 itself builds them (FrozenBN: weight, bias,
    running mean and variance per norm)."""
    d2compat.ensure()
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone.resnet import BottleneckBlock, ResNet, build_resnet_backbone

    cfg = get_cfg()
    r = cfg.MODEL.RESNETS
    r.DEPTH, r.OUT_FEATURES, r.NORM = depth, ["res4"], "FrozenBN"
    r.STEM_OUT_CHANNELS, r.RES2_OUT_CHANNELS, r.WIDTH_PER_GROUP = widths.stem, widths.res2_out, widths.bottleneck
    backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3)).state_dict()
    assert not any(k.startswith("res5.") for k in backbone)  # C4: res5 is the ROI head's
    res5 = ResNet.make_stage(
        BottleneckBlock,
        3,
        stride_per_block=[2, 1, 1],
        in_channels=widths.res2_out * 4,
        bottleneck_channels=widths.bottleneck * 8,
        out_channels=widths.res2_out * 8,
        num_groups=1,
        norm="FrozenBN",
        stride_in_1x1=True,
    )  # as Res5ROIHeads builds it
    head = {f"res5.{k}": v for k, v in torch.nn.Sequential(*res5).state_dict().items()}
    return {k: tuple(v.shape) for k, v in {**backbone, **head}.items()}


def torchvision_name(d2: str) -> str:
    """Where a detectron2 ResNet tensor sits in torchvision's ResNet: stage resN is layer(N-1), block convK's
    norm is bnK, the shortcut is downsample.0 (conv) and downsample.1 (norm); the stem is conv1 / bn1."""
    if d2.startswith("stem.conv1."):
        return d2.replace("stem.conv1.norm.", "bn1.").replace("stem.conv1.", "conv1.")
    stage, block, layer, norm, tensor = re.fullmatch(r"res(\d)\.(\d+)\.(conv\d|shortcut)(\.norm)?\.(\w+)", d2).groups()
    if layer == "shortcut":
        part = "downsample.1" if norm else "downsample.0"
    else:
        part = f"bn{layer[-1]}" if norm else layer
    return f"layer{int(stage) - 1}.{block}.{part}.{tensor}"


def caffe2_name(d2: str) -> str:
    """MSRA's Caffe2 blob name of a detectron2 ResNet tensor (detectron2's R-50.pkl): resS_B_branch2a/2b/2c
    for conv1-3, branch1 for the shortcut, _bn_s / _bn_b for the norm's scale and bias, conv1_w / res_conv1_bn_*."""
    if d2.startswith("stem.conv1."):
        return {"stem.conv1.weight": "conv1_w", "stem.conv1.norm.weight": "res_conv1_bn_s",
                "stem.conv1.norm.bias": "res_conv1_bn_b"}[d2]  # fmt: skip
    stage, block, layer, norm, tensor = re.fullmatch(r"res(\d)\.(\d+)\.(conv\d|shortcut)(\.norm)?\.(\w+)", d2).groups()
    branch = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "shortcut": "branch1"}[layer]
    suffix = {"weight": "_bn_s", "bias": "_bn_b"}[tensor] if norm else "_w"
    return f"res{stage}_{block}_{branch}{suffix}"


def native(tv: dict[str, torch.Tensor], layout: str) -> object:
    """The ResNet as each codebase saves it, written by hand (heads, queues and key encoders included)."""
    backbone = {k: v for k, v in tv.items() if not k.startswith("fc.")}
    if layout == "moco":  # main_moco.py: {"epoch", "arch", "state_dict" of the DataParallel MoCo, "optimizer"}
        state = {f"module.encoder_q.{k}": v for k, v in tv.items()}
        state |= {f"module.encoder_k.{k}": v for k, v in tv.items()} | {"module.queue": torch.zeros(8, 4)}
        return {"epoch": 200, "arch": "resnet50", "state_dict": state, "optimizer": {}}
    if layout == "openselfsup":
        state = {f"backbone.{k}": v for k, v in backbone.items()} | {"neck.mlp.0.weight": torch.zeros(4, 4)}
        return {"meta": {"epoch": 200}, "state_dict": state}
    if layout == "densecl_q":  # DenseCL: encoder_q = Sequential(backbone, neck)
        state = {f"encoder_q.0.{k}": v for k, v in backbone.items()}
        state |= {f"encoder_k.0.{k}": v for k, v in backbone.items()}
        state |= {"encoder_q.1.mlp.0.weight": torch.zeros(4, 4), "queue": torch.zeros(4)}
        return {"meta": {}, "state_dict": state}
    if layout == "openselfsup_extracted":
        return {"state_dict": backbone}
    if layout == "torchvision":
        return dict(tv)
    if layout == "wrapped":  # a DataParallel torchvision model inside {"model": ...}
        return {"model": {f"module.{k}": v for k, v in tv.items()}, "epoch": 90}
    if layout == "vissl":
        trunk = {f"_feature_blocks.{k}": v for k, v in backbone.items()}
        return {"classy_state_dict": {"base_model": {"model": {"trunk": trunk, "heads": {"0.w": torch.zeros(1)}}}}}
    depth = {6: 50, 23: 101}[1 + max(int(k.split(".")[1]) for k in tv if k.startswith("layer3."))]
    widths = convert.Widths(tv["conv1.weight"].shape[0], tv["layer1.0.conv3.weight"].shape[0],
                            tv["layer1.0.conv1.weight"].shape[0])  # fmt: skip
    names = detectron2_resnet(depth, widths)
    if layout == "detectron2":  # a detectron2 model_final.pth: backbone.* and roi_heads.res5.*, heads beside
        model = {("roi_heads." if d2.startswith("res5.") else "backbone.") + d2: tv[torchvision_name(d2)].numpy()
                 for d2 in names}  # fmt: skip
        return {"model": model | {"proposal_generator.rpn_head.conv.weight": np.zeros(1)}, "__author__": "someone"}
    if layout == "msra":  # Caffe2 blobs: BN statistics folded into scale and bias, so there are none
        return {"blobs": {caffe2_name(d2): tv[torchvision_name(d2)].numpy() for d2 in names
                          if not d2.endswith(("running_mean", "running_var"))} | {"fc1000_w": np.zeros(2)}}  # fmt: skip
    raise ValueError(layout)


def saved(tmp_path: Path, tv, layout: str) -> Path:
    src = tmp_path / (f"{layout}.pkl" if layout in PICKLED else f"{layout}.pth")
    if layout in PICKLED:
        src.write_bytes(pickle.dumps(native(tv, layout)))
    else:
        torch.save(native(tv, layout), src)
    return src


def read_back(path) -> dict[str, np.ndarray]:
    """Converted weights read back by the format's own library: safetensors', or pickle for the detectron2
    pickle ``python -m xfer convert`` writes for a ``.pkl`` name."""
    if Path(path).suffix == ".safetensors":
        return safetensors.numpy.load_file(str(path))
    payload = pickle.loads(Path(path).read_bytes())
    assert payload["matching_heuristics"] is True and payload["__author__"].startswith("xfer")
    return payload["model"]


def assert_is_detectron2s_resnet(model: dict, tv: dict, depth: int, widths: convert.Widths, msra: bool) -> None:
    """Exactly detectron2's tensor names and shapes, each holding the torchvision tensor it stands for."""
    want = detectron2_resnet(depth, widths)
    assert set(model) == set(want), (sorted(set(want) - set(model))[:5], sorted(set(model) - set(want))[:5])
    assert {k: tuple(v.shape) for k, v in model.items()} == want
    for d2 in want:
        if msra and d2.endswith(("running_mean", "running_var")):  # folded: filled as mean 0, variance 1
            assert (model[d2] == float(d2.endswith("running_var"))).all(), d2
        else:
            np.testing.assert_array_equal(model[d2], tv[torchvision_name(d2)].numpy(), err_msg=d2)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_converts_to_detectron2s_own_resnet(tmp_path, tv, layout):
    report = converted.convert_file(saved(tmp_path, tv, layout), tmp_path / OUT)
    assert report.layout == LAYOUTS[layout] and report.depth == 50 and report.widths == NARROW
    model = read_back(tmp_path / OUT)
    assert report.converted == len(detectron2_resnet(50, NARROW)) == 265
    assert_is_detectron2s_resnet(model, tv, 50, NARROW, msra=layout == "msra")
    # spelled out: the first block's conv and its BN, the stem's BN, the shortcut, the last res5 conv
    np.testing.assert_array_equal(model["res2.0.conv1.weight"], tv["layer1.0.conv1.weight"].numpy())
    np.testing.assert_array_equal(model["res2.0.conv1.norm.weight"], tv["layer1.0.bn1.weight"].numpy())
    np.testing.assert_array_equal(model["stem.conv1.norm.bias"], tv["bn1.bias"].numpy())
    np.testing.assert_array_equal(model["res3.0.shortcut.weight"], tv["layer2.0.downsample.0.weight"].numpy())
    np.testing.assert_array_equal(model["res5.2.conv3.weight"], tv["layer4.2.conv3.weight"].numpy())


def test_detectron2_names_keep_the_input_convention_their_author_names(tmp_path, tv):
    """Weights already in detectron2's names do not say which input they were trained on; the file's ``__author__``
    can. xfer's own conversion of MSRA (Caffe2) weights, which are trained on BGR input, converted again (into a
    pickle or safetensors) is still known to need it; the outputs of detectron2's torchvision converter
    (``"torchvision"``) and MoCo's (``"MOCO"``), whose READMEs pair them with RGB input, are RGB; another author
    leaves it unknown (no check), as before."""
    first = converted.convert_file(saved(tmp_path, tv, "msra"), tmp_path / "first.pkl")  # another name: saved() wrote msra.pkl
    assert (first.layout, first.convention) == ("msra", "bgr_msra")
    for name in ("again.pkl", "again.safetensors"):
        again = converted.convert_file(tmp_path / "first.pkl", tmp_path / name)
        assert (again.layout, again.origin, again.convention) == ("detectron2", "msra", "bgr_msra"), again
        twice = converted.convert_file(tmp_path / name, tmp_path / f"twice.{name}")  # the author is kept
        assert (twice.origin, twice.convention) == ("msra", "bgr_msra") and "converted from msra" in twice.summary()
        assert read_back(tmp_path / f"twice.{name}").keys() == read_back(tmp_path / "first.pkl").keys()
    payload = native(tv, "detectron2")
    for author, origin, convention in (("torchvision", "torchvision", "rgb_torchvision"), ("MOCO", "moco", "rgb_torchvision"),
                                       ("someone", None, None), (None, None, None)):  # fmt: skip
        src = tmp_path / f"{author}.pkl"
        src.write_bytes(pickle.dumps({**payload, "__author__": author} if author else payload["model"]))
        report = converted.convert_file(src, tmp_path / f"{author}.safetensors")
        assert (report.layout, report.origin, report.convention) == ("detectron2", origin, convention), author
    # a cache entry of detectron2 names written before origins were recorded is converted again, not read as unknown
    entry, cached = converted.cached(tmp_path / "again.pkl", "auto", tmp_path / "cache")
    report_file = entry.with_suffix(".json")
    report_file.write_text(json.dumps({k: v for k, v in json.loads(report_file.read_text()).items() if k != "origin"}))
    assert converted.cache_damage(entry)[1].startswith(f"its report {report_file.name} is unreadable")
    assert converted.cached(tmp_path / "again.pkl", "auto", tmp_path / "cache") == (entry, cached)
    assert cached.origin == "msra"


def test_names_follow_the_seed_script():
    for tv_name, d2_name in SEED_NAMES.items():
        assert convert.rename(tv_name) == d2_name


def test_report_says_what_was_dropped(tmp_path, tv):
    report = converted.convert_file(saved(tmp_path, tv, "moco"), tmp_path / OUT)
    counted = [k for k in tv if not k.endswith("num_batches_tracked")]  # BN step counters are not weights
    assert report.dropped == {"fc": 2, "module.encoder_k": len(counted), "module.queue": 1} and len(counted) == 267
    assert report.convention == "rgb_torchvision" and "module.encoder_q." in report.summary()
    assert converted.read_report(tmp_path / OUT) == report


@pytest.fixture(scope="module")
def full_size():
    return {50: randomised(torchvision.models.resnet50(), 0), 101: randomised(torchvision.models.resnet101(), 0)}


@pytest.mark.parametrize("depth,layout", [(50, "torchvision"), (50, "detectron2"), (50, "msra"), (101, "moco"),
                                          (101, "msra")])  # fmt: skip
@pytest.mark.launch
def test_full_size_torchvision_resnets(tmp_path, full_size, depth, layout):
    tv = full_size[depth]
    report = converted.convert_file(saved(tmp_path, tv, layout), tmp_path / OUT)
    assert (report.depth, report.widths, report.layout) == (depth, convert.Widths(), LAYOUTS[layout])
    model = read_back(tmp_path / OUT)
    assert len(model) == {50: 265, 101: 520}[depth]
    assert_is_detectron2s_resnet(model, tv, depth, convert.Widths(), msra=layout == "msra")


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda tv: tv.pop("layer2.1.conv2.weight"), "1 missing: res3.1.conv2.weight"),
        (lambda tv: tv.__setitem__("layer4.0.bn1.weight", torch.zeros(7)), "mis-shaped: res5.0.conv1.norm.weight (7,)"),
        (lambda tv: tv.__setitem__("layer1.0.conv4.weight", torch.zeros(1)), "unconverted: res2.0.conv4.weight"),
        (lambda tv: tv.pop("layer3.5.conv1.weight"), "missing: res4.5.conv1.weight"),
    ],
)
def test_incomplete_checkpoints_fail_naming_the_tensor(tmp_path, tv, edit, message):
    tv = dict(tv)
    edit(tv)
    with pytest.raises(convert.ConversionError, match="incomplete weights") as e:
        converted.convert_file(saved(tmp_path, tv, "openselfsup"), tmp_path / OUT)
    assert message in str(e.value) and "read as openselfsup" in str(e.value)
    assert not (tmp_path / OUT).exists() and not (tmp_path / "out.json").exists()


def test_forced_format_that_does_not_fit_names_what_the_keys_look_like(tmp_path, tv):
    src = saved(tmp_path, tv, "openselfsup")
    with pytest.raises(
        convert.ConversionError, match=r"module\.encoder_q\..*read as moco; its keys look like openselfsup"
    ):
        converted.convert_file(src, tmp_path / "out.pkl", "moco")


def test_explicit_prefix_for_other_codebases(tmp_path, tv):
    src = tmp_path / "other.pth"
    torch.save({"net": {f"encoder.trunk.{k}": v for k, v in tv.items()}, "step": 3}, src)
    with pytest.raises(convert.ConversionError, match="cannot tell the layout"):
        converted.convert_file(src, tmp_path / "out.pkl")
    torch.save({"state_dict": {f"encoder.trunk.{k}": v for k, v in tv.items()}}, src)
    report = converted.convert_file(src, tmp_path / "out.pkl", prefix="encoder.trunk.")
    assert report.converted == 265 and report.prefix == "encoder.trunk."


def test_cache_converts_once_per_file_and_format(tmp_path, tv):
    src = saved(tmp_path, tv, "moco")
    path, report = converted.cached(src, "auto", tmp_path / "cache")
    stamp = path.stat().st_mtime_ns
    again, _ = converted.cached(src, "auto", tmp_path / "cache")
    assert again == path and path.stat().st_mtime_ns == stamp and report.layout == "moco"
    assert converted.cached(src, "moco", tmp_path / "cache")[0] != path  # another format: its own conversion


def test_converted_weights_land_in_a_real_detectron2_c4_model(tmp_path, tv):
    """Through the trial's loader (engine.Checkpointer, reading the cache's safetensors), and into exactly the
    model detectron2's own loader makes of the same conversion as a model-zoo ``.pkl`` (the format xfer's
    cache held before), every tensor of it, the heads' random init included (same seed)."""
    from tests.test_recipe import composed
    from xfer import d2compat
    from xfer.trial import engine, recipe

    d2compat.ensure()
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    src = saved(tmp_path, tv, "vissl")
    converted.convert_file(src, tmp_path / "w.safetensors")
    converted.convert_file(src, tmp_path / "w.pkl")
    widths = ("+d2.MODEL.RESNETS.STEM_OUT_CHANNELS=64", "+d2.MODEL.RESNETS.RES2_OUT_CHANNELS=256")  # NARROW
    cfg = recipe.build(composed("benchmark=smoke", "pretrain=custom", *widths), tmp_path / "w.safetensors", tmp_path,
                       "cpu")  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg)
    engine.Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    assert engine.verify_loaded(model, cfg.MODEL.WEIGHTS) == 265
    state = model.state_dict()
    torch.testing.assert_close(state["roi_heads.res5.2.conv3.weight"], tv["layer4.2.conv3.weight"], rtol=0, atol=0)
    torch.testing.assert_close(state["backbone.stem.conv1.weight"], tv["conv1.weight"], rtol=0, atol=0)
    torch.manual_seed(0)
    zoo = build_model(cfg)
    DetectionCheckpointer(zoo).load(str(tmp_path / "w.pkl"))
    assert state.keys() == zoo.state_dict().keys()
    for key, value in zoo.state_dict().items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    with torch.no_grad():
        model.roi_heads.res5[1].conv2.weight.add_(1.0)  # as if detectron2 had placed it wrongly
    with pytest.raises(engine.WeightsNotLoaded, match=r"1 pretrained tensors .*roi_heads\.res5\.1\.conv2\.weight"):
        engine.verify_loaded(model, cfg.MODEL.WEIGHTS)


def test_a_tensor_stored_transposed_converts_to_its_values(tmp_path, tv):
    """safetensors writes an array's memory as it lies: a tensor saved as a transposed view (not contiguous)
    must still come out with its values, not its memory order."""
    state = dict(tv)
    w = state["layer1.0.conv2.weight"]  # (8, 8, 3, 3): stored as a permuted view of another layout
    state["layer1.0.conv2.weight"] = w.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)
    assert not state["layer1.0.conv2.weight"].is_contiguous() and torch.equal(state["layer1.0.conv2.weight"], w)
    src = tmp_path / "transposed.pth"
    torch.save({"state_dict": state}, src)
    assert not torch.load(src, weights_only=True)["state_dict"]["layer1.0.conv2.weight"].is_contiguous()
    converted.convert_file(src, tmp_path / OUT)
    np.testing.assert_array_equal(read_back(tmp_path / OUT)["res2.0.conv2.weight"], w.numpy())


@pytest.mark.launch
def test_convert_command(tmp_path, tv):
    src = saved(tmp_path, tv, "moco")
    cmd = [sys.executable, "-m", "xfer", "convert", str(src), str(tmp_path / "o.pkl")]
    ok = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "layout moco" in ok.stdout and "265 tensors converted" in ok.stdout and "rgb_torchvision" in ok.stdout
    assert len(read_back(tmp_path / "o.pkl")) == 265  # a detectron2 model-zoo pickle, for detectron2 elsewhere
    made = {p: p.read_bytes() for p in (tmp_path / "o.pkl", tmp_path / "o.json", src)}
    bad = subprocess.run([*cmd, "--depth", "101"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "is a ResNet-50, not ResNet-101" in bad.stderr
    assert {p: p.read_bytes() for p in made} == made  # refused before writing: the earlier output kept, not deleted
    itself = subprocess.run([sys.executable, "-m", "xfer", "convert", str(src), str(src)], cwd=REPO,
                            capture_output=True, text=True)  # fmt: skip
    assert itself.returncode == 2 and "is the input checkpoint itself" in itself.stderr, itself.stderr
    assert src.read_bytes() == made[src]  # converted onto itself, the checkpoint was replaced by its conversion


def test_converted_weights_get_the_mode_of_any_file_written_here(tmp_path):
    """A converted cache entry is readable by whoever shares the outputs folder as any other output is: its mode is
    the one open() gives a new file under this process's umask (the oracle: such a file, made beside it), not
    safetensors' save_file's 0600. And it reads back, with safetensors' own reader, as written."""
    report = convert.Report("torchvision", "", 50, convert.Widths(16, 32, 8), 1, {})
    model = {"backbone.stem.conv1.weight": np.arange(6, dtype=np.float32).reshape(2, 3).T}  # not contiguous
    converted.write(model, report, tmp_path / "w.safetensors")
    (tmp_path / "plain").write_bytes(b"")
    assert (tmp_path / "w.safetensors").stat().st_mode == (tmp_path / "plain").stat().st_mode
    np.testing.assert_array_equal(safetensors.numpy.load_file(tmp_path / "w.safetensors")["backbone.stem.conv1.weight"],
                                  model["backbone.stem.conv1.weight"])  # fmt: skip
