"""A trial is what it runs: its identity comes from the resolved recipe, the weights' and data's content, the
evaluator and the seed, never from how the command line was spelled.

Oracles: detectron2's own config merge (``recipe.build``), folder names and changes written out by hand, VOC
annotation files written here, and the real launch.py's output and files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import REPO, launch, results_under
from xfer.launch import identify, trials
from xfer.store import identity
from xfer.trial import recipe


def planned(tmp_path: Path, *overrides: str, pretrain: str = "densecl") -> trials.PlannedTrial:
    """The trial the launcher plans for ``benchmark=smoke_fast pretrain=densecl seed=0`` plus ``overrides``:
    composed by Hydra, its inputs made and hashed, its identity and folder worked out as the launcher does."""
    base = ["benchmark=smoke_fast", f"pretrain={pretrain}", "seed=0", "trial.device=cpu", f"output_root={tmp_path}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=base + list(overrides), return_hydra_config=True)
        ids = identify.Identifier(lambda o: compose(config_name="config", overrides=o, return_hydra_config=True),
                                  tmp_path / "_cache")  # fmt: skip
        sha256, error = trials.inputs(cfg)
        family, error = trials.family_of(cfg, sha256, error, ids, identify.choices_of(cfg))
    assert not error, error
    p = trials.PlannedTrial(0, list(overrides), cfg, Path(), None, sha256, error, family)
    return trials.locate(p, tmp_path / "smoke_fast")


# What never changes a result: the same folder and the same identity (issue 19: counts, descriptions, published
# numbers, pace, checkpoint period, cluster and trial options, a value the recipe has already, other spellings).
SAME = [("benchmark.trials=3",), ("++benchmark.description=anything",), ("+benchmark.published_std.AP50=0.3",),
        ("benchmark.device_s_per_iter.r50=9.0",), ("+d2.SOLVER.CHECKPOINT_PERIOD=3",), ("cluster.stop_grace_s=5",),
        ("cluster=slurm", "+cluster.sbatch.reservation=r"), ("trial.keep_checkpoints=all",),
        ("+d2.SOLVER.BASE_LR=0.01",), ("++d2.SOLVER.BASE_LR=1e-2",), ("plan=true",),
        ("pretrain.format=auto",), ("pretrain.prefix=backbone.",), ("pretrain.format=auto", "pretrain.prefix=backbone.")]  # fmt: skip
# densecl's own conversion is format openselfsup, no prefix: its keys are OpenSelfSup's (backbone.*), so "auto"
# detects that layout and OpenSelfSup's prefix is backbone.: spelled out, the same tensors (xfer.trial.convert).


@pytest.mark.launch
def test_what_cannot_change_a_result_is_the_same_trial(tmp_path):
    base = planned(tmp_path)
    assert base.dir.parent.parent.name == "r50_densecl" and base.dir.name == "seed0"
    for extra in SAME:
        p = planned(tmp_path, *extra)
        assert (p.dir, p.identity["digest"]) == (base.dir, base.identity["digest"]), extra


@pytest.mark.launch
def test_a_conversion_is_one_trial_however_spelled_and_another_one_is_another(tmp_path):
    """A checkpoint holding two ResNets: a bare state dict (what ``format: auto`` reads, as torchvision's, under
    no prefix) and a teacher under ``teacher.`` (its weights halved). ``pretrain.prefix=''`` and
    ``pretrain.format=torchvision`` spell the pretrain's own conversion: its trial. ``pretrain.prefix=teacher.``
    converts other tensors: another setting, named so, of another identity."""
    import torch

    densecl = torch.load(planned(tmp_path).cfg.pretrain.weights, weights_only=True)["state_dict"]
    student = {k.removeprefix("backbone."): v for k, v in densecl.items()}
    path = tmp_path / "two_resnets.pth"
    torch.save({**student, **{f"teacher.{k}": v / 2 if v.is_floating_point() else v for k, v in student.items()}},
               path)  # fmt: skip
    weights = f"pretrain.weights={path}"
    base = planned(tmp_path, weights, pretrain="custom")
    for same in (("pretrain.prefix=''",), ("pretrain.format=torchvision",),
                 ("pretrain.format=torchvision", "pretrain.prefix=''")):  # fmt: skip
        p = planned(tmp_path, weights, *same, pretrain="custom")
        assert (p.dir, p.identity["digest"]) == (base.dir, base.identity["digest"]), same
    teacher = planned(tmp_path, weights, "pretrain.prefix=teacher.", pretrain="custom")
    assert teacher.dir.parent.parent.name == "r50_custom,pretrain.prefix=teacher."
    assert teacher.identity["digest"] != base.identity["digest"]
    assert identity.changes(base.identity, teacher.identity) == ["weights prefix null → teacher."]


@pytest.mark.launch
def test_what_changes_a_result_is_named_the_same_however_spelled(tmp_path):
    base = planned(tmp_path).identity
    a = planned(tmp_path, "+d2.SOLVER.BASE_LR=0.02")
    b = planned(tmp_path, "++d2.SOLVER.BASE_LR=2e-2")
    c = planned(tmp_path, "benchmark.d2.SOLVER.BASE_LR=0.02")
    assert a.dir.parent.parent.name == "r50_densecl,SOLVER.BASE_LR=0.02"
    assert a.dir == b.dir == c.dir and a.identity["digest"] == b.identity["digest"] == c.identity["digest"]
    assert identity.changes(base, a.identity) == ["SOLVER.BASE_LR 0.01 → 0.02"]
    amp = planned(tmp_path, "+experiment=amp")
    assert amp.dir.parent.parent.name == "r50_densecl,experiment=amp"
    assert identity.changes(base, amp.identity) == ["SOLVER.AMP.ENABLED false → true"]
    bgr = planned(tmp_path, "input@pretrain.input=bgr_msra")
    assert bgr.dir.parent.parent.name == "r50_densecl,input=bgr_msra"
    # The evaluator is part of what was measured, but not of the name: the same folder, another identity.
    d2eval = planned(tmp_path, "trial.evaluator=detectron2")
    assert d2eval.dir == planned(tmp_path).dir
    (change,) = identity.changes(base, d2eval.identity)
    assert change.startswith("evaluator xfer → detectron2 (detectron2 ")
    assert identity.changes(base, planned(tmp_path, "seed=1").identity) == ["seed 0 → 1"]


@pytest.mark.parametrize("benchmark", ["voc0712_c4_24k", "coco_c4_1x", "coco_fpn_1x_densecl", "smoke_fast"])
@pytest.mark.parametrize("extra", [(), ("backbone=r101",), ("input@pretrain.input=bgr_msra", "+experiment=amp")])
def test_the_recipe_of_an_identity_is_the_one_detectron2_builds(tmp_path, benchmark, extra):
    """The launcher resolves the recipe without importing detectron2's merge (it caches detectron2's defaults):
    what it records must be what detectron2's own merge_from_other_cfg gives, key for key."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"benchmark={benchmark}", "pretrain=densecl", *extra])
    ours = recipe.resolved(cfg, recipe.d2_defaults(tmp_path))
    built = identity.flatten(recipe.build(cfg, Path("w.pth"), tmp_path / "out", "cpu"))
    assert ours == {k: v for k, v in built.items() if k not in identity.RUN_ONLY}


def test_identity_changes_by_hand():
    old = {"recipe": {"SOLVER.BASE_LR": 0.02, "SOLVER.MAX_ITER": 100, "GONE.KEY": 1},
           "weights": {"sha256": "a" * 64, "format": "moco", "prefix": None},
           "data": {"voc_2007_test": "1" * 64, "voc_2007_trainval": "2" * 64},
           "evaluator": {"name": "xfer", "libraries": {}}, "seed": 0}  # fmt: skip
    assert identity.changes(old, json.loads(json.dumps(old))) == []
    # detectron2 added a key with its default (and dropped one): not a change, whatever the digests say.
    upgraded = {**old, "recipe": {"SOLVER.BASE_LR": 0.02, "SOLVER.MAX_ITER": 100, "NEW.KEY": True}}
    assert identity.digest(upgraded) != identity.digest(old) and identity.changes(old, upgraded) == []
    new = {"recipe": {"SOLVER.BASE_LR": 0.01, "SOLVER.MAX_ITER": 100},
           "weights": {"sha256": "b" * 64, "format": "openselfsup", "prefix": None},
           "data": {"voc_2007_test": "3" * 64, "voc_2007_trainval": "2" * 64},
           "evaluator": {"name": "detectron2", "libraries": {"detectron2": "0.6"}}, "seed": 1}  # fmt: skip
    assert identity.changes(old, new) == [
        "SOLVER.BASE_LR 0.02 → 0.01", "weights aaaaaaaaaaaa → bbbbbbbbbbbb", "weights format moco → openselfsup",
        "annotations of voc_2007_test changed", "evaluator xfer → detectron2 (detectron2 0.6)", "seed 0 → 1"]
    assert identity.changes(old, new, with_seed=False)[-1] != "seed 0 → 1"
    assert identity.changes(None, new) == ["no identity recorded (a result of an older xfer): what it ran cannot be "
                                           "compared"]  # fmt: skip


@pytest.mark.parametrize(("key", "use"), [("SEED", "seed=N"), ("OUTPUT_DIR", "output_root=DIR"),
                                          ("MODEL.WEIGHTS", "pretrain.weights="), ("MODEL.DEVICE", "trial.device=")])
def test_a_recipe_key_xfer_sets_per_trial_is_refused_with_the_option_to_use(key, use):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["benchmark=smoke_fast", f"+d2.{key}=1"])
    (msg,) = identify.refused(cfg)
    assert f"d2.{key}" in msg and use in msg


def voc_tree(root: Path, boxes: int) -> Path:
    """A minimal VOC2007/VOC2012 layout: one image id per split, its annotation with ``boxes`` objects."""
    for year in ("2007", "2012"):
        voc = root / f"VOC{year}"
        (voc / "ImageSets" / "Main").mkdir(parents=True)
        (voc / "Annotations").mkdir()
        for split in ("trainval", "test"):
            (voc / "ImageSets" / "Main" / f"{split}.txt").write_text(f"{year}_{split}\n")
            objs = "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
            (voc / "Annotations" / f"{year}_{split}.xml").write_text(f"<annotation>{objs * boxes}</annotation>")
    return root


@pytest.mark.launch
def test_a_sweep_over_two_datasets_sharing_a_folder_is_refused_naming_both(tmp_path):
    a, b, same = voc_tree(tmp_path / "a", 1), voc_tree(tmp_path / "b", 2), voc_tree(tmp_path / "c", 1)
    out = tmp_path / "out"
    run = launch("-m", "benchmark=voc0712_c4_24k", "pretrain=scratch", "seed=0", "trial.device=cpu", "plan=true",
                 f"paths.datasets={a},{b}", f"output_root={out}")  # fmt: skip
    assert run.returncode == 2, run.output[-3000:]
    (line,) = [x for x in run.stderr.splitlines() if "would share the trial folder" in x]
    assert f"paths.datasets={a}" in line and f"paths.datasets={b}" in line
    assert "annotations of voc_2007_test changed" in line and "annotations of voc_2007_trainval changed" in line
    # The same content at another path is the same trial: no refusal about sharing.
    again = launch("-m", "benchmark=voc0712_c4_24k", "pretrain=scratch", "seed=0", "trial.device=cpu", "plan=true",
                   f"paths.datasets={a},{same}", f"output_root={out}")  # fmt: skip
    assert "would share the trial folder" not in again.output
    assert not list(out.rglob("trial.yaml")) and not list(out.rglob(identity.IDENTITY))  # plan writes nothing


SMOKE = ("-m", "benchmark=smoke_fast", "pretrain=densecl", "seed=0", "trial.device=cpu")


@pytest.mark.slow
def test_a_conf_edit_makes_finished_trials_stale_never_pooled_nor_silently_retrained(tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path / 'out')  # its inputs made (tests/conftest.py): this test is about how trials run
    out = f"output_root={tmp_path / 'out'}"
    first = launch(*SMOKE, out)
    assert first.returncode == 0, first.output[-3000:]
    ((path, result),) = results_under(tmp_path / "out").items()
    assert result["identity"]["recipe"]["SOLVER.BASE_LR"] == 0.01 and result["identity"]["seed"] == 0

    same = launch(*SMOKE, out, "benchmark.trials=3", "++benchmark.description=x", "+d2.SOLVER.CHECKPOINT_PERIOD=3",
                  "cluster.stop_grace_s=5")  # fmt: skip
    assert same.returncode == 0 and "1 trials, 1 done already, 0 to run" in same.output, same.output[-3000:]

    conf = shutil.copytree(REPO / "conf", tmp_path / "conf")  # a corrected pin in the user's conf
    bench = conf / "benchmark" / "smoke_fast.yaml"
    bench.write_text(bench.read_text().replace("    BASE_LR: 0.01\n", "    BASE_LR: 0.02\n"))
    edited = ("--config-path", str(conf), *SMOKE, out)
    plan = launch(*edited, "plan=true")
    assert plan.returncode == 0 and "| smoke_fast/r50_densecl | stale |" in plan.output, plan.output[-3000:]
    run = launch(*edited)
    assert run.returncode == 0, run.output[-3000:]
    assert "smoke_fast/r50_densecl seed0 is stale (SOLVER.BASE_LR 0.01 → 0.02): kept, not pooled, not run" in run.output
    assert "Starting training" not in run.output and json.loads(path.read_text()) == result
    table = (tmp_path / "out" / "smoke_fast" / "table.md").read_text()
    assert "| smoke_fast/r50_densecl | 0/5 |" in table and "SOLVER.BASE_LR 0.01 → 0.02" in table
    status = launch_status(tmp_path / "out" / "smoke_fast")
    assert "stale" in status and "SOLVER.BASE_LR 0.01 → 0.02" in status

    rerun = launch(*edited, "trial.rerun_stale=true")
    assert rerun.returncode == 0, rerun.output[-3000:]
    new = json.loads(path.read_text())
    assert new["identity"]["recipe"]["SOLVER.BASE_LR"] == 0.02 and new["run"]["start_iter"] == 0
    (kept,) = path.parent.glob("_stale-*/result.json")
    assert json.loads(kept.read_text()) == result  # nothing it measured is lost
    assert "| smoke_fast/r50_densecl | 1/5 |" in (tmp_path / "out" / "smoke_fast" / "table.md").read_text()


def launch_status(folder: Path) -> str:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "xfer", "status", str(folder)], capture_output=True, text=True,
                          cwd=REPO, check=True).stdout  # fmt: skip


def test_collect_pools_only_trials_of_one_identity(tmp_path):
    """Two output roots read together hold one setting's trials run on different data: each is done against
    its own folder's launch, but only those of the identity most trials ran are pooled."""
    from tests.test_results import DENSECL, trial
    from xfer.report import results

    def ran(data: str, seed: int) -> dict:
        return {"recipe": {"SOLVER.BASE_LR": 0.02}, "weights": {"sha256": "none"}, "data": {"voc_2007_test": data},
                "evaluator": {"name": "xfer", "libraries": {}}, "seed": seed}  # fmt: skip

    for root, seed, data in ((tmp_path / "a", 0, "1" * 64), (tmp_path / "a", 1, "1" * 64), (tmp_path / "b", 2, "2" * 64)):
        folder = trial(root, DENSECL, seed, (82.0 + seed, 58.0, 64.0))
        record = json.loads((folder / "result.json").read_text())
        (folder / "result.json").write_text(json.dumps({**record, "identity": ran(data, seed)}))
    (row,) = results.summarize(results.read_trials([tmp_path / "a", tmp_path / "b"]))
    assert [t.seed for t in row.done] == [0, 1] and row.stats["AP50"].mean == 82.5
    (odd,) = row.conflicts
    assert odd.seed == 2 and "annotations of voc_2007_test changed" in odd.cause
