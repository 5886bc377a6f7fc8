"""The composed configs: every combination composes, and the VOC recipe is the seed's, field by field."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tests import test_trial_identity as trial_identity
from tests.conftest import REPO, launch
from xfer.launch import trials
from xfer.store import identity
from xfer.trial import checks, recipe

GROUPS = {g: sorted(p.stem for p in (REPO / "conf" / g).glob("*.yaml")) for g in ("benchmark", "backbone", "pretrain")}

# The seed's configs/pascal_voc_R_50_C4_24k_moco.yaml -> pascal_voc_R_50_C4_24k.yaml -> Base-RCNN-C4-BN.yaml,
# written out by hand from the seed, plus detectron2 defaults the chain relies on (C4: res4 features).
SEED_R50_MOCO = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.MASK_ON": False,
    "MODEL.BACKBONE.NAME": "build_resnet_backbone",
    "MODEL.BACKBONE.FREEZE_AT": 0,
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.NORM": "SyncBN",
    "MODEL.RESNETS.OUT_FEATURES": ["res4"],
    "MODEL.RESNETS.STRIDE_IN_1X1": False,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 256,
    "MODEL.RESNETS.WIDTH_PER_GROUP": 64,
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 6000,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 1000,
    "MODEL.ROI_HEADS.NAME": "Res5ROIHeadsExtraNorm",
    "MODEL.ROI_HEADS.NUM_CLASSES": 20,
    "MODEL.ROI_HEADS.IN_FEATURES": ["res4"],
    "MODEL.PIXEL_MEAN": [123.675, 116.280, 103.530],
    "MODEL.PIXEL_STD": [58.395, 57.120, 57.375],
    "INPUT.FORMAT": "RGB",
    "INPUT.MIN_SIZE_TRAIN": [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800],
    "INPUT.MIN_SIZE_TEST": 800,
    "INPUT.MAX_SIZE_TRAIN": 1333,
    "INPUT.MAX_SIZE_TEST": 1333,
    "DATASETS.TRAIN": ["voc_2007_trainval", "voc_2012_trainval"],
    "DATASETS.TEST": ["voc_2007_test"],
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.BASE_LR": 0.02,
    "SOLVER.STEPS": [18000, 22000],
    "SOLVER.MAX_ITER": 24000,
    "SOLVER.WARMUP_ITERS": 100,
    "TEST.PRECISE_BN.ENABLED": True,
}


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def d2(*overrides: str, device: str = "cpu"):
    return recipe.build(composed(*overrides), Path("w.pkl"), Path("out"), device)


def field(cfg, dotted: str):
    value = cfg
    for part in dotted.split("."):
        value = value[part]
    return list(value) if isinstance(value, tuple | list) else value


@pytest.mark.parametrize("backbone,depth", [("r50", 50), ("r101", 101)])
def test_voc_recipe_is_the_seeds_field_by_field(backbone, depth):
    cfg = d2("benchmark=voc0712_c4_24k", f"backbone={backbone}", "pretrain=moco_v2_200ep", "seed=3")
    expected = {**SEED_R50_MOCO, "MODEL.RESNETS.DEPTH": depth}
    mismatches = {k: (field(cfg, k), v) for k, v in expected.items() if field(cfg, k) != v}
    assert not mismatches, mismatches
    assert cfg.SEED == 3 and cfg.MODEL.WEIGHTS == "w.pkl" and cfg.OUTPUT_DIR == "out"


def test_supervised_msra_weights_keep_detectron2_bgr_defaults():
    cfg = d2("pretrain=supervised")
    assert cfg.INPUT.FORMAT == "BGR" and cfg.MODEL.RESNETS.STRIDE_IN_1X1 is True
    assert list(cfg.MODEL.PIXEL_MEAN) == [103.530, 116.280, 123.675] and list(cfg.MODEL.PIXEL_STD) == [1.0] * 3
    assert cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeadsExtraNorm"


@pytest.mark.slow
def test_global_batch_and_schedule_do_not_follow_the_process_count(tmp_path):
    """The same smoke trial on 1 and on 2 local gloo processes trains the very same detectron2 config (the file
    each trial wrote and trained from), with the global batch shared out: 2 images per process, then 1 each."""
    import json

    import yaml

    trained = {}
    for world in (1, 2):
        run = launch("benchmark=smoke_fast", "seed=0", "+d2.SOLVER.MAX_ITER=2", f"cluster.devices={world}",
                     f"cluster.gpus_per_trial={world}", f"paths.cache={tmp_path / 'cache'}",
                     f"output_root={tmp_path / str(world)}")  # fmt: skip
        assert run.returncode == 0, run.output[-3000:]
        (trial,) = (tmp_path / str(world)).glob("smoke_fast/*/w-*/seed0")
        result = json.loads((trial / "result.json").read_text())
        cfg = yaml.safe_load((trial / "d2_config.yaml").read_text())
        assert cfg.pop("OUTPUT_DIR") == str(trial)
        trained[world] = cfg, result["run"]
    (cfg1, run1), (cfg2, run2) = trained[1], trained[2]
    assert cfg1 == cfg2  # batch, learning rate, schedule, everything but where it writes
    assert cfg1["SOLVER"]["IMS_PER_BATCH"] == 2 and cfg1["SOLVER"]["MAX_ITER"] == 2  # the smoke recipe's batch
    assert (run1["world_size"], run1["global_batch"], run1["batch_per_process"]) == (1, 2, 2)
    assert (run2["world_size"], run2["global_batch"], run2["batch_per_process"]) == (2, 2, 1)


def covering() -> list[tuple[str, str, str]]:
    """Combinations that cover what the groups share (the full product, 11 x 2 x 11, took 30 s of the fast tier):
    every benchmark with every backbone and with each input convention (by_input and DEPTH depend on those),
    every pretrain with every backbone on the default benchmark, and every pretrain once more on another
    benchmark, rotated through them."""
    benchmarks, backbones, pretrains = GROUPS["benchmark"], GROUPS["backbone"], GROUPS["pretrain"]
    found = {(b, k, p) for b in benchmarks for k in backbones for p in ("densecl", "supervised")}
    found |= {("voc0712_c4_24k", k, p) for k in backbones for p in pretrains}
    found |= {(benchmarks[i % len(benchmarks)], "r50", p) for i, p in enumerate(pretrains)}
    return sorted(found)


@pytest.mark.parametrize("benchmark,backbone,pretrain", covering())
def test_every_combination_composes_into_a_detectron2_config(benchmark, backbone, pretrain):
    cfg = composed(f"benchmark={benchmark}", f"backbone={backbone}", f"pretrain={pretrain}")
    built = recipe.build(cfg, Path("w.pkl"), Path("out"), "cpu")
    assert built.MODEL.RESNETS.DEPTH == cfg.backbone.d2.MODEL.RESNETS.DEPTH
    assert built.INPUT.FORMAT == cfg.pretrain.input.d2.INPUT.FORMAT
    assert cfg.pretrain.format in ("moco", "openselfsup", "torchvision", "msra", "auto") or \
        (cfg.pretrain.format == "none" and cfg.pretrain.weights is None)  # scratch: random init, no checkpoint
    pub = cfg.pretrain.published.get("voc0712_c4_24k", {})
    assert set(pub) <= {"r50", "r101"}
    for numbers in pub.values():
        assert 0 < numbers.AP < numbers.AP75 < numbers.AP50 < 100


@pytest.mark.launch
def test_published_numbers_are_the_seeds():
    def pub(pretrain, backbone):
        p = composed(f"pretrain={pretrain}").pretrain.published.voc0712_c4_24k[backbone]
        return (p.AP50, p.AP, p.AP75)

    assert pub("supervised", "r50") == (81.3, 53.5, 58.8)
    assert pub("moco_v1", "r50") == (81.5, 55.9, 62.6)
    assert pub("moco_v2_200ep", "r50") == (82.4, 57.0, 63.6)
    assert pub("moco_v2_800ep", "r50") == (82.5, 57.4, 64.0)
    assert pub("densecl", "r50") == (82.7, 58.5, 65.6)
    assert pub("densecl", "r101") == (83.57, 61.02, 68.20)
    assert pub("regioncl_d", "r50") == (83.32, 58.72, 65.57)
    assert pub("regioncl", "r101") == (84.30, 61.59, 68.17)
    assert composed("benchmark=voc0712_c4_24k").benchmark.published_std == {"AP50": 0.2, "AP": 0.2, "AP75": 0.4}


def test_user_detectron2_overrides_merge_last_and_unknown_keys_fail():
    assert d2("+d2.SOLVER.CHECKPOINT_PERIOD=1000").SOLVER.CHECKPOINT_PERIOD == 1000
    with pytest.raises(KeyError, match="NOT_A_KEY"):
        d2("+d2.SOLVER.NOT_A_KEY=1")


def test_long_setting_names_are_hashed_without_slashes():
    assert identity.setting_dirname("r50", "densecl") == "r50_densecl"
    assert identity.setting_dirname("r50", "densecl", "SOLVER.BASE_LR=0.01") == "r50_densecl,SOLVER.BASE_LR=0.01"
    long = identity.setting_dirname("r50", "x", "a=" + "b/" * 100)
    assert len(long) < 120 and "/" not in long and long != identity.setting_dirname("r50", "x", "a=" + "c/" * 100)


def planned(tmp_path: Path, *overrides: str) -> trials.PlannedTrial:
    """The trial the launcher plans for these overrides (the smoke weights are made, then hashed): its identity
    and folder worked out as the launcher does (``tests/test_trial_identity.py``)."""
    return trial_identity.planned(tmp_path, *overrides)


@pytest.mark.launch
def test_trial_folder_follows_what_changes_the_result(tmp_path):
    base = planned(tmp_path, "seed=0")
    weights = Path(base.cfg.pretrain.weights)
    assert base.dir == tmp_path / "smoke_fast" / "r50_densecl" / f"w-{hashlib.sha256(weights.read_bytes()).hexdigest()[:12]}" / "seed0"
    same = [("cluster=slurm", "+cluster.sbatch.reservation=myres"), ("trial.evaluator=detectron2",),
            ("cluster.devices=2", "cluster.gpus_per_trial=1"), ("paths.datasets=/nowhere",),
            ("paths.cache=" + str(tmp_path / "other_cache"),)]  # the smoke weights made again there: same content
    for extra in same:
        assert planned(tmp_path, "seed=0", *extra).dir == base.dir, extra
    assert planned(tmp_path, "seed=1").dir == base.dir.parent / "seed1"
    for extra, setting in [(("+d2.SOLVER.BASE_LR=0.1",), "r50_densecl,SOLVER.BASE_LR=0.1"),
                           (("+experiment=amp",), "r50_densecl,experiment=amp"),
                           (("pretrain=custom", "pretrain.name=mine"), "r50_mine")]:  # fmt: skip
        assert planned(tmp_path, "seed=0", *extra).dir.parent.parent.name == setting


@pytest.mark.launch
def test_own_method_is_compared_with_the_baselines(tmp_path):
    mine = planned(tmp_path, "pretrain=custom", "pretrain.name=mine").setting
    dense = planned(tmp_path, "pretrain=densecl").setting
    assert mine.key == "smoke_fast/r50_mine" and mine.group == dense.group == "smoke_fast/r50"
    assert mine.weights != dense.weights  # custom's smoke weights are generated with another seed
    run = launch("-m", "benchmark=smoke_fast", "pretrain=custom", "pretrain.name=mine", "seed=0", "plan=true",
                 f"output_root={tmp_path}")  # fmt: skip
    assert run.returncode == 0 and "| smoke_fast/r50_mine | to run |" in run.stdout, run.output[-2000:]


@pytest.mark.launch
def test_a_reservation_is_not_part_of_the_setting(tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)
    run = launch("-m", "cluster=slurm", "cluster.gpus_per_node=0", "benchmark=smoke_fast", "seed=0",
                 "+cluster.sbatch.reservation=myres", "plan=true", f"output_root={tmp_path}")  # fmt: skip
    assert run.returncode in (0, 2), run.output[-2000:]  # 2 where no sbatch is on PATH: the plan prints first
    assert "| smoke_fast/r50_densecl | to run |" in run.stdout, run.output[-2000:]


@pytest.mark.launch
def test_amp_is_an_explicit_setting_of_its_own(tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)
    cfg = composed("+experiment=amp")
    assert d2("+experiment=amp").SOLVER.AMP.ENABLED is True and d2().SOLVER.AMP.ENABLED is False
    assert cfg.trial.evaluator == "xfer"  # the fast evaluator is the default
    run = launch("-m", "benchmark=smoke_fast", "+experiment=amp", "trial.device=cuda", "plan=true",
                 f"output_root={tmp_path}")  # fmt: skip
    assert "| smoke_fast/r50_densecl,experiment=amp |" in run.stdout  # its own row, never averaged with fp32


@pytest.mark.launch
def test_amp_on_cpu_is_refused_before_anything_runs(tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)
    run = launch("-m", "benchmark=smoke_fast", "+experiment=amp", f"output_root={tmp_path}")
    assert run.returncode == 2 and "mixed precision (+experiment=amp, d2.SOLVER.AMP.ENABLED) needs CUDA" in run.stderr


def test_the_launchers_view_of_a_key_is_what_detectron2_trains(tmp_path):
    """plan and the checks read MAX_ITER, IMS_PER_BATCH, the datasets and NUM_CLASSES without detectron2
    (recipe.value): whichever part sets them (benchmark.d2, backbone.d2, by_input, the user's d2), they must see
    the value detectron2's merged config (the oracle) holds."""
    cfg = composed("benchmark=coco_c4_1x", "pretrain=densecl", "+benchmark.by_input.rgb_torchvision.SOLVER.MAX_ITER=77",
                   "+backbone.d2.SOLVER.IMS_PER_BATCH=8", "+d2.MODEL.ROI_HEADS.NUM_CLASSES=5",
                   "+d2.DATASETS.TRAIN=[coco_2017_train_0.1]")  # fmt: skip
    built = recipe.build(cfg, Path("w.pkl"), Path("out"), "cpu")
    for key, expected in (("SOLVER.MAX_ITER", 77), ("SOLVER.IMS_PER_BATCH", 8), ("MODEL.ROI_HEADS.NUM_CLASSES", 5),
                          ("DATASETS.TRAIN", ["coco_2017_train_0.1"]), ("SOLVER.BASE_LR", 0.02)):  # fmt: skip
        assert field(built, key) == expected and recipe.value(cfg, key) == expected, key
    assert trials.max_iter_of(cfg) == 77
    assert recipe.value(cfg, "MODEL.NOT_A_KEY", "default") == "default"
    problems = checks.problems(cfg, here=False)
    assert any("dataset coco_2017_train_0.1: missing" in p for p in problems), problems
