"""The launch refuses, before anything runs, a recipe key that detectron2 would refuse when the trial merges it (a
key it does not have, a value of another type than its default's), for every trial of a sweep; and the smoke makes
its inputs only inside its cache, never at a path the user gave."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests.conftest import launch
from xfer.launch import identify
from xfer.store import identity

PARTS = [  # each a user's d2 override, as Hydra parses it from the command line
    {"SOLVER": {"BASE_LR": 0.02}},
    {"SOLVER": {"BASE_LR": 1}},  # an int where detectron2 has a float
    {"SOLVER": {"MAX_ITER": 10.0}},  # a float where it has an int
    {"SOLVER": {"MAX_ITER": "abc"}},
    {"SOLVER": {"BASE_LR": "0.01"}},  # quoted on the command line
    {"SOLVER": {"STEPS": [6, 8]}},  # a list for its tuple
    {"SOLVER": {"NOPE": 1}},
    {"SOLVER": {"BASE_LR": {"X": 1}}},  # a node where it has a value
    {"SOLVER": {"GAMMA": None}},  # None for any type
    {"MODEL": {"PIXEL_MEAN": [1.0, 2.0, 3.0]}},
    {"MODEL": {"MASK_ON": 1}},  # an int for a bool
    {"INPUT": {"FORMAT": "RGB"}},
    {"INPUT": {"FORMAT": "[1]"}},  # a string detectron2 reads as a list
]


@pytest.mark.parametrize("part", PARTS, ids=lambda p: str(identity.flatten(p)))
def test_refused_exactly_where_detectron2s_config_refuses(part):
    """The oracle: detectron2's own CfgNode merge of the same part onto get_cfg() (yacs's type rule), not xfer's:
    refused where detectron2 refuses it, or where it runs another value than the one written (and recorded)."""
    from xfer import d2compat

    d2compat.ensure()
    from detectron2.config import CfgNode, get_cfg

    merged = get_cfg()
    try:
        merged.merge_from_other_cfg(CfgNode(part))
        ((key, value),) = identity.flatten(part).items()
        runs_as_written = identity.flatten(merged)[key] == value  # "0.01" is read as the float 0.01
        refused_by_detectron2 = False
    except (KeyError, ValueError, AssertionError):
        refused_by_detectron2, runs_as_written = True, False
    cfg = OmegaConf.create({"benchmark": {"d2": {}}, "backbone": {"d2": {}}, "pretrain": {}, "d2": part})
    found = identify.refused(cfg, identity.flatten(get_cfg()))
    assert bool(found) == (refused_by_detectron2 or not runs_as_written), found
    assert all(msg.startswith("d2.") for msg in found), found  # named as the user wrote it


@pytest.mark.launch
def test_the_smoke_makes_nothing_at_a_path_the_user_gave(tmp_path, smoke_fast_made):
    """A mistyped pretrain.weights or benchmark.datasets_root of a smoke benchmark is reported missing, not filled
    with random weights or generated scenes (and no lock file is left beside the user's files)."""
    smoke_fast_made(tmp_path / "out")
    mine = tmp_path / "mine"
    run = launch("-m", "benchmark=smoke_fast", f"pretrain.weights={mine}/missing.pth", f"output_root={tmp_path}/out",
                 "plan=true")  # fmt: skip
    assert run.returncode == 2 and f"weights not found at {mine}/missing.pth" in run.stderr, run.output[-3000:]
    run = launch("-m", "benchmark=smoke_fast", f"benchmark.datasets_root={mine}/data", f"output_root={tmp_path}/out")
    assert run.returncode == 2 and f"dataset voc_2007_test: missing {mine}/data/VOC2007" in run.stderr, run.output[-3000:]
    assert not mine.exists() and not list(tmp_path.glob("*.lock"))
