"""The COCO recipes (conf/benchmark/coco_*.yaml but the smoke ones) are their upstream YAML chains, key by key.

Oracles: the upstream files, written out below by hand from the repository and commit cited above each dict,
plus the detectron2 defaults each chain relies on (written out by hand too, so that a change of detectron2's
defaults shows here); the published numbers copied by hand from their sources. Every key of the built config
that differs from detectron2's defaults must be one of the pinned keys, so a recipe can neither lose an
upstream key nor gain one that no upstream file sets.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import REPO, launch
from tests.test_recipe import composed
from xfer.benchmarks import coco
from xfer.report import collect
from xfer.trial import checks, recipe
from xfer.trial import runner as runner

C4_FEATURES, FPN_FEATURES = ["res4"], ["res2", "res3", "res4", "res5"]
MIN_SIZE_TRAIN = [640, 672, 704, 736, 768, 800]

# detectron2 defaults both model families rely on: the MSRA (BGR) input of the non-_moco configs, the input
# sizes and masks, the solver and test keys no upstream file sets.
MSRA_AND_SCHEDULE_DEFAULTS = {
    "MODEL.PIXEL_MEAN": [103.530, 116.280, 123.675],
    "MODEL.PIXEL_STD": [1.0, 1.0, 1.0],
    "INPUT.FORMAT": "BGR",
    "INPUT.MIN_SIZE_TRAIN_SAMPLING": "choice",
    "INPUT.MAX_SIZE_TRAIN": 1333,
    "INPUT.MAX_SIZE_TEST": 1333,
    "INPUT.MASK_FORMAT": "polygon",
    "SOLVER.WARMUP_ITERS": 1000,
    "SOLVER.WARMUP_FACTOR": 0.001,
    "SOLVER.MOMENTUM": 0.9,
    "SOLVER.WEIGHT_DECAY": 0.0001,
    "SOLVER.GAMMA": 0.1,
    "SOLVER.REFERENCE_WORLD_SIZE": 0,
    "TEST.PRECISE_BN.NUM_ITER": 200,
    "TEST.EVAL_PERIOD": 0,
    "TEST.DETECTIONS_PER_IMAGE": 100,
    "DATALOADER.FILTER_EMPTY_ANNOTATIONS": True,
}
# Annbless/RegionCL@61bbcab benchmarks/detection/configs/Base-RCNN-C4-BN.yaml (the seed's; = MoCo's before d00ef73)
# -> coco_R_50_C4_2x.yaml (= facebookresearch/moco@132aea9 detection/configs/coco_R_50_C4_2x.yaml), the MSRA (BGR)
# variant, plus the detectron2 defaults the chain relies on (C4: res4 everywhere, the res5 box head).
C4_2X_MSRA = {
    # Base-RCNN-C4-BN.yaml
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 6000,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 1000,
    "MODEL.ROI_HEADS.NAME": "Res5ROIHeadsExtraNorm",
    "MODEL.BACKBONE.FREEZE_AT": 0,
    "MODEL.RESNETS.NORM": "SyncBN",
    "TEST.PRECISE_BN.ENABLED": True,
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.BASE_LR": 0.02,
    # coco_R_50_C4_2x.yaml (MODEL.WEIGHTS is the pretrain's)
    "MODEL.MASK_ON": True,
    "INPUT.MIN_SIZE_TRAIN": MIN_SIZE_TRAIN,
    "INPUT.MIN_SIZE_TEST": 800,
    "DATASETS.TRAIN": ["coco_2017_train"],
    "DATASETS.TEST": ["coco_2017_val"],
    "SOLVER.STEPS": [120000, 160000],
    "SOLVER.MAX_ITER": 180000,
    # detectron2 defaults the chain relies on
    "MODEL.BACKBONE.NAME": "build_resnet_backbone",
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.OUT_FEATURES": C4_FEATURES,
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 256,
    "MODEL.RESNETS.WIDTH_PER_GROUP": 64,
    "MODEL.FPN.IN_FEATURES": [],
    "MODEL.FPN.NORM": "",
    "MODEL.ANCHOR_GENERATOR.SIZES": [[32, 64, 128, 256, 512]],
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [[0.5, 1.0, 2.0]],
    "MODEL.RPN.IN_FEATURES": C4_FEATURES,
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": 12000,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": 2000,
    "MODEL.ROI_HEADS.IN_FEATURES": C4_FEATURES,
    "MODEL.ROI_HEADS.NUM_CLASSES": 80,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 512,
    "MODEL.ROI_BOX_HEAD.NAME": "",
    "MODEL.ROI_BOX_HEAD.NUM_CONV": 0,
    "MODEL.ROI_BOX_HEAD.NUM_FC": 0,
    "MODEL.ROI_BOX_HEAD.NORM": "",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": "ROIAlignV2",
    "MODEL.ROI_MASK_HEAD.NAME": "MaskRCNNConvUpsampleHead",
    "MODEL.ROI_MASK_HEAD.NUM_CONV": 0,
    "MODEL.ROI_MASK_HEAD.NORM": "",
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": 14,
    **MSRA_AND_SCHEDULE_DEFAULTS,
}
# Annbless/RegionCL@61bbcab benchmarks/detection/configs/coco_R_50_C4_2x_moco.yaml: the torchvision-input variant.
C4_MOCO = {
    "MODEL.PIXEL_MEAN": [123.675, 116.280, 103.530],
    "MODEL.PIXEL_STD": [58.395, 57.120, 57.375],
    "MODEL.RESNETS.STRIDE_IN_1X1": False,
    "INPUT.MAX_SIZE_TRAIN": 1200,
    "INPUT.FORMAT": "RGB",
}
# Annbless/RegionCL@61bbcab benchmarks/detection/configs/coco_R_50_C4_1x.yaml and coco_R_50_C4_1x_moco.yaml.
C4_1X = {"SOLVER.STEPS": [60000, 80000], "SOLVER.MAX_ITER": 90000}

# Annbless/RegionCL@61bbcab benchmarks/detection/configs/Base-RCNN-FPN.yaml (byte for byte WXinlong/DenseCL@b64bbb6
# benchmarks/detection/configs/Base-RCNN-FPN.yaml but a trailing newline), VERSION: 2 aside.
BASE_RCNN_FPN = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone",
    "MODEL.RESNETS.OUT_FEATURES": FPN_FEATURES,
    "MODEL.FPN.IN_FEATURES": FPN_FEATURES,
    "MODEL.ANCHOR_GENERATOR.SIZES": [[32], [64], [128], [256], [512]],
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [[0.5, 1.0, 2.0]],
    "MODEL.RPN.IN_FEATURES": ["p2", "p3", "p4", "p5", "p6"],
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": 2000,
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 1000,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": 1000,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 1000,
    "MODEL.ROI_HEADS.NAME": "StandardROIHeads",
    "MODEL.ROI_HEADS.IN_FEATURES": ["p2", "p3", "p4", "p5"],
    "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",
    "MODEL.ROI_BOX_HEAD.NUM_FC": 2,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 7,
    "MODEL.ROI_MASK_HEAD.NAME": "MaskRCNNConvUpsampleHead",
    "MODEL.ROI_MASK_HEAD.NUM_CONV": 4,
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": 14,
    "DATASETS.TRAIN": ["coco_2017_train"],
    "DATASETS.TEST": ["coco_2017_val"],
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.BASE_LR": 0.02,
    "SOLVER.STEPS": [60000, 80000],
    "SOLVER.MAX_ITER": 90000,
    "INPUT.MIN_SIZE_TRAIN": MIN_SIZE_TRAIN,
}
# Annbless/RegionCL@61bbcab benchmarks/detection/configs/coco_R_50_FPN_1x.yaml on that base (MODEL.WEIGHTS is the
# pretrain's), the MSRA (BGR) variant, plus the detectron2 defaults the chain relies on.
FPN_1X_MSRA = {
    **BASE_RCNN_FPN,
    # coco_R_50_FPN_1x.yaml
    "MODEL.MASK_ON": True,
    "MODEL.BACKBONE.FREEZE_AT": 0,
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.NORM": "SyncBN",
    "MODEL.FPN.NORM": "SyncBN",
    "TEST.PRECISE_BN.ENABLED": True,
    "SOLVER.STEPS": [60000, 80000],
    "SOLVER.MAX_ITER": 90000,
    # detectron2 defaults the chain relies on
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 256,
    "MODEL.RESNETS.WIDTH_PER_GROUP": 64,
    "MODEL.FPN.OUT_CHANNELS": 256,
    "MODEL.FPN.FUSE_TYPE": "sum",
    "MODEL.ROI_HEADS.NUM_CLASSES": 80,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 512,
    "MODEL.ROI_BOX_HEAD.NUM_CONV": 0,  # "2fc": no convs, no norm
    "MODEL.ROI_BOX_HEAD.NORM": "",
    "MODEL.ROI_BOX_HEAD.FC_DIM": 1024,
    "MODEL.ROI_BOX_HEAD.CONV_DIM": 256,
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": "ROIAlignV2",
    "MODEL.ROI_MASK_HEAD.NORM": "",
    "MODEL.ROI_MASK_HEAD.CONV_DIM": 256,
    "INPUT.MIN_SIZE_TEST": 800,
    **MSRA_AND_SCHEDULE_DEFAULTS,
}
# Annbless/RegionCL@61bbcab coco_R_50_FPN_1x_moco.yaml (= WXinlong/DenseCL@b64bbb6 R_50_FPN_1x_infomin.yaml): the
# torchvision-input variant. Unlike the C4 one it keeps MAX_SIZE_TRAIN 1333.
FPN_MOCO = {
    "MODEL.PIXEL_MEAN": [123.675, 116.280, 103.530],
    "MODEL.PIXEL_STD": [58.395, 57.120, 57.375],
    "MODEL.RESNETS.STRIDE_IN_1X1": False,
    "INPUT.FORMAT": "RGB",
}
# Annbless/RegionCL@61bbcab coco_R_50_FPN_2x.yaml and coco_R_50_FPN_2x_moco.yaml.
FPN_2X = {"SOLVER.STEPS": [120000, 160000], "SOLVER.MAX_ITER": 180000}
# WXinlong/DenseCL@b64bbb6 benchmarks/detection/configs/R_50_FPN_1x.yaml (= HobbitLong/PyContrast@84f94ea
# pycontrast/detection/configs/R_50_FPN_1x.yaml): on the same Base-RCNN-FPN.yaml, every line of RegionCL's
# coco_R_50_FPN_1x.yaml plus these (the "4conv1fc" box head, SyncBN in both heads).
DENSECL_HEADS = {
    "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",
    "MODEL.ROI_BOX_HEAD.NUM_CONV": 4,
    "MODEL.ROI_BOX_HEAD.NUM_FC": 1,
    "MODEL.ROI_BOX_HEAD.NORM": "SyncBN",
    "MODEL.ROI_MASK_HEAD.NORM": "SyncBN",
}
# WXinlong/DenseCL@b64bbb6 benchmarks/detection/train_net.py registers coco_2017_train_0.1; no config uses it.
TEN_PCT = {"DATASETS.TRAIN": ["coco_2017_train_0.1"]}

EXPECTED = {  # recipe -> (its MSRA/BGR chain, what the torchvision-input *_moco / *_infomin file changes)
    "coco_c4_2x": (C4_2X_MSRA, C4_MOCO),
    "coco_c4_1x": ({**C4_2X_MSRA, **C4_1X}, C4_MOCO),
    "coco_fpn_1x": (FPN_1X_MSRA, FPN_MOCO),
    "coco_fpn_2x": ({**FPN_1X_MSRA, **FPN_2X}, FPN_MOCO),
    "coco_fpn_1x_densecl": ({**FPN_1X_MSRA, **DENSECL_HEADS}, FPN_MOCO),
    "coco_fpn_1x_densecl_10pct": ({**FPN_1X_MSRA, **DENSECL_HEADS, **TEN_PCT}, FPN_MOCO),
}
RECIPES = sorted(EXPECTED)
PRETRAINS = {"densecl": "rgb_torchvision", "supervised": "bgr_msra"}  # one pretrain per input convention
NOT_RECIPE = {"MODEL.WEIGHTS", "MODEL.DEVICE", "OUTPUT_DIR", "SEED"}  # what xfer.trial.recipe.build sets per trial


def plain(value):
    """Tuples (detectron2's defaults) and lists (merged YAML) alike, nested: lists."""
    return [plain(v) for v in value] if isinstance(value, tuple | list) else value


def flat(node, prefix: str = "") -> dict:
    """A detectron2 CfgNode as {"MODEL.RESNETS.DEPTH": 50, ...}, leaves only."""
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = plain(v)
    return out


def built(*overrides: str) -> dict:
    return flat(recipe.build(composed(*overrides), Path("w.pkl"), Path("out"), "cpu"))


@pytest.fixture(scope="module")
def defaults() -> dict:
    from xfer import d2compat

    d2compat.ensure()
    from detectron2.config import get_cfg

    return flat(get_cfg())


def expected(name: str, pretrain: str) -> dict:
    msra, moco = EXPECTED[name]
    return {**msra, **moco} if PRETRAINS[pretrain] == "rgb_torchvision" else dict(msra)


def test_every_coco_recipe_is_pinned_here():
    smokes = {"coco_smoke_c4", "coco_smoke_fpn", "coco_smoke_fast"}
    confs = {p.stem for p in (REPO / "conf" / "benchmark").glob("coco_*.yaml")} - smokes
    assert confs == set(EXPECTED)


@pytest.mark.parametrize("pretrain", sorted(PRETRAINS))
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_is_its_upstream_chain_key_by_key(name, pretrain, defaults):
    cfg = built(f"benchmark={name}", f"pretrain={pretrain}", "seed=2")
    want = expected(name, pretrain)
    mismatches = {k: (cfg.get(k, "<no such key>"), v) for k, v in want.items() if cfg.get(k, "<no such key>") != v}
    assert not mismatches, mismatches  # key: (built, upstream)
    unpinned = {k: v for k, v in cfg.items() if v != defaults[k] and k not in want and k not in NOT_RECIPE}
    assert not unpinned, unpinned  # keys the recipe changes that no upstream file sets
    assert cfg["SOLVER.IMS_PER_BATCH"] == 16  # the global batch, whatever the GPU count


@pytest.mark.parametrize("pretrain", sorted(PRETRAINS))
@pytest.mark.parametrize("name", RECIPES)
def test_r101_changes_the_depth_only(name, pretrain):
    r50, r101 = built(f"benchmark={name}", f"pretrain={pretrain}"), built(f"benchmark={name}", f"pretrain={pretrain}",
                                                                         "backbone=r101")  # fmt: skip
    assert {k: (r50[k], r101[k]) for k in r50 if r50[k] != r101[k]} == {"MODEL.RESNETS.DEPTH": (50, 101)}


@pytest.mark.launch
def test_the_recipe_files_carry_what_the_launcher_and_plan_read():
    for name in RECIPES:
        b = composed(f"benchmark={name}").benchmark
        assert (b.name, b.format, b.requires_gpu, b.generate, b.trials, b.published_std) == \
            (name, "coco", True, False, 5, None)  # fmt: skip
        assert b.datasets_root == "datasets" and b.weights_dir == "weights"  # ${paths.*}, unless the env says
    # device-seconds per iteration at the global batch: RegionCL's logs (8 x A100-40GB), 0.2844 (C4) and 0.2060 s/it
    # (FPN) x 8 GPUs; R101 1.5x R50, assumed
    pace = {n: dict(composed(f"benchmark={n}").benchmark.device_s_per_iter) for n in RECIPES}
    assert pace == {"coco_c4_1x": {"r50": 2.3, "r101": 3.45}, "coco_c4_2x": {"r50": 2.3, "r101": 3.45},
                    **{n: {"r50": 1.65, "r101": 2.5} for n in RECIPES if "fpn" in n}}  # fmt: skip


# ---- the input-dependent key: benchmark.by_input.<input name> ----


@pytest.mark.launch
def test_by_input_merges_after_the_input_convention_and_before_the_users_d2():
    assert recipe.MERGE_ORDER == ("benchmark.d2", "backbone.d2", "pretrain.input.d2", "benchmark.by_input.{input}", "d2")
    c4 = ("benchmark=coco_c4_1x", "pretrain=densecl")
    assert built(*c4)["INPUT.MAX_SIZE_TRAIN"] == 1200
    assert built(*c4, "input@pretrain.input=bgr_msra")["INPUT.MAX_SIZE_TRAIN"] == 1333  # another convention: none
    assert built(*c4, "+d2.INPUT.MAX_SIZE_TRAIN=1000")["INPUT.MAX_SIZE_TRAIN"] == 1000  # the user's d2 is last
    later = built(*c4, "+benchmark.by_input.rgb_torchvision.INPUT.FORMAT=BGR")  # by_input after the input's d2
    assert later["INPUT.FORMAT"] == "BGR" and later["MODEL.RESNETS.STRIDE_IN_1X1"] is False
    assert built("benchmark=voc0712_c4_24k", "pretrain=densecl")["INPUT.MAX_SIZE_TRAIN"] == 1333  # no by_input there
    parts = recipe.d2_parts(composed(*c4))
    assert len(parts) == 5 and parts[3] == {"INPUT": {"MAX_SIZE_TRAIN": 1200}}
    assert len(recipe.d2_parts(composed("benchmark=coco_c4_1x", "pretrain=supervised"))) == 4


def test_the_override_the_c4_header_names_gives_moco_heads_recipe():
    moco_head = built("benchmark=coco_c4_2x", "pretrain=densecl", "benchmark.d2.MODEL.RESNETS.NORM=naiveSyncBN",
                      "~benchmark.by_input")  # fmt: skip
    assert moco_head == {**built("benchmark=coco_c4_2x", "pretrain=densecl"), "MODEL.RESNETS.NORM": "naiveSyncBN",
                         "INPUT.MAX_SIZE_TRAIN": 1333}  # fmt: skip


@pytest.mark.parametrize(("override", "named"), [
    ("benchmark.by_input.rgb_torchvision.INPUT.MAX_SIZE_TRAIN=1333", "INPUT.MAX_SIZE_TRAIN=1333"),
    ("~benchmark.by_input", "INPUT.MAX_SIZE_TRAIN=1333"),  # detectron2's default then
    ("+benchmark.by_input.bgr_msra.INPUT.MAX_SIZE_TRAIN=1200", ""),  # another input's entry: densecl runs the same
    ("input@pretrain.input=bgr_msra", "input=bgr_msra"),
])  # fmt: skip
def test_changing_by_input_is_a_setting_of_its_own_when_it_changes_what_runs(tmp_path, override, named):
    from hydra import compose as hydra_compose

    from xfer.launch import identify

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        compose = lambda o: hydra_compose(config_name="config", overrides=o, return_hydra_config=True)  # noqa: E731
        cfg = compose(["benchmark=coco_c4_1x", "pretrain=densecl", override, "seed=1"])
        ids = identify.Identifier(compose, tmp_path)
        assert ids.extras(cfg, identify.choices_of(cfg)) == named


def test_the_width_check_sees_by_input_too():
    cfg = composed("benchmark=coco_c4_1x", "pretrain=densecl", "+benchmark.by_input.rgb_torchvision.MODEL.RESNETS.WIDTH_PER_GROUP=8")
    assert checks.recipe_resnets(cfg)["WIDTH_PER_GROUP"] == 8
    assert checks.recipe_resnets(composed("benchmark=coco_c4_1x", "pretrain=densecl"))["WIDTH_PER_GROUP"] == 64


# ---- published numbers ----


def published(pretrain: str, benchmark: str, backbone: str = "r50") -> dict:
    return OmegaConf.to_container(composed(f"pretrain={pretrain}").pretrain.published[benchmark][backbone])


def numbers(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k not in ("source", "caveat")}


@pytest.mark.launch
def test_published_coco_numbers_are_the_sources():
    assert numbers(published("regioncl_d", "coco_c4_1x")) == {"box_AP": 40.3, "mask_AP": 35.2}
    assert numbers(published("regioncl", "coco_c4_2x")) == {"box_AP": 41.8, "mask_AP": 36.4}
    assert numbers(published("regioncl_d", "coco_fpn_1x")) == {"box_AP": 40.4, "mask_AP": 36.7}
    assert numbers(published("regioncl_d", "coco_fpn_2x")) == {"box_AP": 42.1, "mask_AP": 38.0}
    assert numbers(published("regioncl_m", "coco_c4_1x")) == {"box_AP": 39.7896, "box_AP50": 59.7938,
                                                              "box_AP75": 42.9901, "mask_AP": 34.8428,
                                                              "mask_AP50": 56.3862, "mask_AP75": 36.9497}  # fmt: skip
    assert numbers(published("regioncl_m", "coco_fpn_2x"))["mask_AP75"] == 40.3655
    assert numbers(published("regioncl_m", "coco_c4_2x"))["box_AP50"] == 61.4234
    assert numbers(published("regioncl_m", "coco_fpn_1x"))["mask_AP"] == 36.3394
    assert numbers(published("supervised", "coco_fpn_1x_densecl")) == {"box_AP": 39.7, "mask_AP": 35.9}
    assert numbers(published("supervised", "coco_c4_1x")) == {"box_AP": 38.2, "mask_AP": 33.3}
    assert numbers(published("supervised", "coco_c4_2x")) == {"box_AP": 40.0, "mask_AP": 34.7}
    assert numbers(published("moco_v1", "coco_fpn_1x_densecl")) == {"box_AP": 39.4, "mask_AP": 35.6}
    assert numbers(published("scratch", "coco_fpn_1x_densecl")) == {"box_AP": 32.8, "mask_AP": 29.9}
    assert "coco_c4_1x" not in composed("pretrain=moco_v1").pretrain.published  # PyContrast's C4 MoCo: MAX 1333
    assert "STRIDE_IN_1X1 True" in published("scratch", "coco_fpn_1x_densecl")["source"]  # its caveat


@pytest.mark.launch
def test_every_published_coco_entry_names_its_source_and_only_known_metrics():
    seen = 0
    for path in sorted((REPO / "conf" / "pretrain").glob("*.yaml")):
        pretrain = composed(f"pretrain={path.stem}").pretrain
        if pretrain.name != path.stem:  # an alias (regioncl -> regioncl_d): counted under its own name
            continue
        for bench, per_backbone in (pretrain.published or {}).items():
            if not bench.startswith("coco"):
                continue
            assert composed(f"benchmark={bench}").benchmark.format == "coco", (path.name, bench)
            for backbone, entry in per_backbone.items():
                where = (path.name, bench, backbone)
                assert backbone in ("r50", "r101") and isinstance(entry.get("source"), str) and entry.source.strip(), where
                metrics = numbers(OmegaConf.to_container(entry))
                assert metrics and set(metrics) <= set(coco.METRIC_NAMES), where
                assert all(0 < v < 100 for v in metrics.values()), where
                for task in ("box", "mask"):  # AP < AP50, AP75 < AP50 where the source gives them
                    ap, ap50, ap75 = (metrics.get(f"{task}_{s}") for s in ("AP", "AP50", "AP75"))
                    assert ap50 is None or (ap is None or ap < ap50) and (ap75 is None or ap75 < ap50), where
                seen += 1
    assert seen == 13  # regioncl_d 4, regioncl_m 4, supervised 3, moco_v1 1, scratch 1


@pytest.mark.launch
def test_a_source_and_missing_metrics_pass_through_the_trial_record_and_every_format(tmp_path, monkeypatch):
    """The published record a real composed trial writes (regioncl_d on coco_c4_1x: box and mask AP and a
    source) through collect: "—" for the metrics it lacks, and every file written."""
    monkeypatch.chdir(tmp_path)
    cfg = composed("benchmark=coco_c4_1x", "pretrain=regioncl_d")
    record = runner.published(cfg)
    caveat = record.pop("caveat")
    assert record == {"box_AP": 40.3, "mask_AP": 35.2,
                      "source": "Annbless/RegionCL@61bbcab README.md (RegionCL-D row; box and mask AP only, no log)"}
    assert caveat.startswith("no log; RegionCL-M's logs")
    record["caveat"] = caveat
    values = dict(zip(coco.METRIC_NAMES, (41.0, 61.0, 44.0, 36.0, 57.0, 38.0), strict=True))
    for seed in (0, 1):
        folder = Path("sweep") / "coco_c4_1x" / "r50_regioncl_d" / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({
            "setting": {"benchmark": "coco_c4_1x", "backbone": "r50", "pretrain": "regioncl_d", "overrides": "",
                        "label": cfg.pretrain.label},
            "seed": seed, "trials_expected": 5, "published": record, "metric_names": list(coco.METRIC_NAMES),
            "metrics": {m: v + seed for m, v in values.items()}, "run": {"wall_time_s": 10.0, "max_iter": 90000}}))  # fmt: skip
    report = collect.collect([Path("sweep")], out_dir=Path("out"), plots=True)
    (row,) = [line for line in report.markdown.splitlines() if line.startswith("| coco_c4_1x/r50_regioncl_d |")]
    assert "| 40.30/—/—/35.20/—/— | +1.20 / — / — / +1.30 / — / — |" in row, row
    assert "Not tested (the published numbers state no std): coco_c4_1x/r50_regioncl_d." in report.markdown
    assert f"- coco_c4_1x/r50_regioncl_d: {caveat}" in report.markdown
    written = {p.name for p in Path("out").iterdir()}
    assert {"table.md", "trials.csv", "results.json", "table.tex", "table.html", "ap.png"} <= written, written
    (setting,) = json.loads((Path("out") / "results.json").read_text())["settings"]
    assert {m: setting["metrics"][m]["published"] for m in coco.METRIC_NAMES} == \
        {"box_AP": 40.3, "box_AP50": None, "box_AP75": None, "mask_AP": 35.2, "mask_AP50": None, "mask_AP75": None}
    (first, _) = csv.DictReader(io.StringIO((Path("out") / "trials.csv").read_text()))
    assert (first["published_box_AP"], first["published_box_AP50"], first["published_mask_AP"]) == ("40.3", "", "35.2")


# ---- the launch's checks ----


@pytest.mark.launch
def test_plan_of_a_coco_recipe_without_its_data_names_each_missing_dataset_once(tmp_path):
    run = launch("-m", "benchmark=coco_c4_1x", "pretrain=scratch", "seed=0,1", "plan=true", "trial.evaluator=detectron2",
                 "trial.device=cpu", f"paths.datasets={tmp_path}/nodata", f"output_root={tmp_path}/out")  # fmt: skip
    assert run.returncode == 2, run.output[-3000:]
    # 2 trials x 90000 iterations x 2.3 device-s / 3600 = 115 device-hours (device: cpu here)
    assert "estimate: 115.00 cpu-hours" in run.stdout and "r50: 2.300 cpu-s/iter, the benchmark's device_s_per_iter" \
        in run.stdout, run.stdout  # fmt: skip
    problems = [line for line in run.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 2, run.stderr
    for split, json_file in (("coco_2017_train", "instances_train2017.json"), ("coco_2017_val", "instances_val2017.json")):
        (msg,) = [p for p in problems if p.startswith(f"  - dataset {split}: missing ")]
        assert f"{tmp_path}/nodata/coco/annotations/{json_file}" in msg and "DETECTRON2_DATASETS" in msg


def test_the_10pct_recipe_asks_for_densecls_json(tmp_path):
    cfg = composed("benchmark=coco_fpn_1x_densecl_10pct", "pretrain=scratch", "trial.evaluator=detectron2",
                   f"paths.datasets={tmp_path}", f"paths.cache={tmp_path}/cache")  # fmt: skip
    found = checks.problems(cfg, here=False)
    assert [m.split(":")[0] for m in found] == ["dataset coco_2017_train_0.1", "dataset coco_2017_val"], found
    assert f"{tmp_path}/coco/annotations/instances_train2017_0.1.json" in found[0]


# ---- what the keys build ----


@pytest.mark.launch
def test_the_keys_build_the_papers_models():
    """detectron2 builds each family from the recipe as the upstream papers describe it (on CPU, no forward):
    C4 with the extra SyncBN after res5 and the stride in the 3x3 conv for torchvision weights; FPN with the
    2fc box head and plain mask convs (RegionCL); FPN with 4 SyncBN convs + 1 fc and SyncBN mask convs (DenseCL)."""
    import torch.nn as nn

    from xfer import d2compat
    from xfer.trial import roi_heads  # registers Res5ROIHeadsExtraNorm

    d2compat.ensure()
    from detectron2.modeling import build_model

    def model(name: str):
        return build_model(recipe.build(composed(f"benchmark={name}", "pretrain=densecl"), None, Path("out"), "cpu"))

    c4 = model("coco_c4_1x")
    assert type(c4.roi_heads) is roi_heads.Res5ROIHeadsExtraNorm
    assert isinstance(c4.roi_heads.res5.norm, nn.SyncBatchNorm) and c4.roi_heads.res5.norm.num_features == 2048
    assert isinstance(c4.backbone.stem.conv1.norm, nn.SyncBatchNorm)
    block = c4.backbone.res3[0]
    assert (block.conv1.stride, block.conv2.stride) == ((1, 1), (2, 2))  # STRIDE_IN_1X1 False
    assert [n for n, _ in c4.roi_heads.mask_head.named_children()] == ["deconv", "deconv_relu", "predictor"]  # NUM_CONV 0
    assert c4.roi_heads.box_predictor.cls_score.out_features == 81  # 80 classes + background

    fpn = model("coco_fpn_1x")
    assert [n for n, _ in fpn.roi_heads.box_head.named_children()] == ["flatten", "fc1", "fc_relu1", "fc2", "fc_relu2"]
    assert isinstance(fpn.backbone.fpn_lateral2.norm, nn.SyncBatchNorm)
    assert [getattr(fpn.roi_heads.mask_head, f"mask_fcn{i}").norm for i in range(1, 5)] == [None] * 4

    dense = model("coco_fpn_1x_densecl")
    head = dense.roi_heads.box_head
    assert [n for n, _ in head.named_children()] == ["conv1", "conv2", "conv3", "conv4", "flatten", "fc1", "fc_relu1"]
    assert [type(getattr(head, f"conv{i}").norm) for i in range(1, 5)] == [nn.SyncBatchNorm] * 4
    assert [type(getattr(dense.roi_heads.mask_head, f"mask_fcn{i}").norm) for i in range(1, 5)] == [nn.SyncBatchNorm] * 4


@pytest.mark.launch  # composes eleven configs: seconds
def test_rows_trained_by_another_optimizer_say_so_in_conf_and_below_the_table():
    """RegionCL's COCO rows came from detectron2 0.5 (tests/test_optimizer_groups.py works out how its groups
    differ): each carries a caveat naming the version and the opt-in, and collect prints it below the table; the
    rows of PyContrast and MoCo (detectron2 up to 0.3, the groups of 0.6 and later) carry none."""
    from xfer.report import formats, results

    for pretrain in ("regioncl_m", "regioncl_d"):
        for bench in ("coco_c4_1x", "coco_c4_2x", "coco_fpn_1x", "coco_fpn_2x"):
            caveat = published(pretrain, bench).get("caveat", "")
            assert "detectron2 0.5" in caveat and "+d2.SOLVER.WEIGHT_DECAY_BIAS=0.0001" in caveat, (pretrain, bench)
    for pretrain in ("moco_v1", "supervised", "scratch"):
        entries = composed(f"pretrain={pretrain}").pretrain.published
        assert not any("caveat" in e for b in entries.values() for e in b.values()), pretrain
    row = results.Row(results.Setting("coco_c4_1x", "r50", "regioncl_m"), "RegionCL-M", 5, [], [], {},
                      published("regioncl_m", "coco_c4_1x"), metric_names=coco.METRIC_NAMES)  # fmt: skip
    table = formats.markdown([row], [])
    assert "Published numbers trained otherwise than this recipe:" in table
    assert f"- coco_c4_1x/r50_regioncl_m: {published('regioncl_m', 'coco_c4_1x')['caveat']}" in table
