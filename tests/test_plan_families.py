"""One composition per family of jobs that differ only in plain leaf values (``xfer.launch.families``), with
every job planned exactly as if Hydra had composed it alone.

Oracles: Hydra itself (each job composed on its own by its config loader, the job lists split by Hydra's
basic sweeper), the launcher's plan with compositions shared between seeds only (``share_leaves=False``,
the path before families of leaves), and folders written out by hand.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
from hydra import initialize_config_dir
from hydra._internal.callbacks import Callbacks
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import HydraContext, RunMode
from omegaconf import OmegaConf

from tests.conftest import REPO
from xfer.launch import families, sweep, triage, trials


@contextlib.contextmanager
def hydra_sweep(*args: str) -> Iterator[tuple[HydraContext, object, list[list[str]]]]:
    """(context, primary config, job overrides) of ``launch.py -m ARGS`` as Hydra hands them to the launcher."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        config = loader.load_configuration("config", list(args), RunMode.MULTIRUN)
        parsed = OverridesParser.create().parse_overrides(list(args))
        (jobs,) = BasicSweeper.split_arguments(parsed, None)
        yield HydraContext(config_loader=loader, callbacks=Callbacks(config)), config, jobs


def task(cfg) -> dict:
    """A composed config as the trial runs it: resolved, without Hydra's node."""
    return {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in cfg.items()
            if k != "hydra"}  # fmt: skip


@pytest.mark.launch
def test_a_family_shares_one_composition_and_each_job_plans_as_hydra_composes_it(tmp_path):
    args = ("benchmark=smoke_fast", "pretrain=custom,densecl", "pretrain.name=ma,mb",
            "benchmark.d2.SOLVER.BASE_LR=0.01,0.02", "seed=0,1", "trial.device=cpu", f"output_root={tmp_path}")  # fmt: skip
    with hydra_sweep(*args) as (ctx, config, jobs):
        assert len(jobs) == 16
        fast = trials.plan(ctx, config, jobs, 0)
        slow = trials.plan(ctx, config, jobs, 0, share_leaves=False)
        assert len({id(p.cfg) for p in fast}) == 2  # one per pretrain group choice
        assert len({id(p.cfg) for p in slow}) == 8  # one per job but its seed
        for f, s, job in zip(fast, slow, jobs, strict=True):
            alone = ctx.config_loader.load_sweep_config(config, list(job))
            assert task(trials.activate(f)) == task(alone) == task(trials.activate(s)), job
            assert list(trials.activate(f).hydra.overrides.task) == list(alone.hydra.overrides.task) == job
            assert (f.dir, f.identity["digest"], f.sha256) == (s.dir, s.identity["digest"], s.sha256), job
            assert f.setting == s.setting and f.state == s.state
        assert triage.check(fast) == triage.check(slow)
        assert sweep.plan_of(fast) == sweep.plan_of(slow) and sweep.folders_of(fast) == sweep.folders_of(slow)
    # What the leaves change, they change per job: each name its own generated weights, each rate its recipe.
    weights = {(pick, name): {p.sha256 for p in fast if {f"pretrain={pick}", f"pretrain.name={name}"} <= set(p.overrides)}
               for pick in ("custom", "densecl") for name in ("ma", "mb")}  # fmt: skip
    assert all(len(v) == 1 for v in weights.values())
    assert weights["custom", "ma"] != weights["custom", "mb"]  # <name>_r50.pth, each name's own random weights
    dirs = {p.dir.relative_to(tmp_path / "smoke_fast").parent.parent.as_posix() for p in fast}
    assert dirs == {"r50_ma", "r50_mb", "r50_ma,SOLVER.BASE_LR=0.02", "r50_mb,SOLVER.BASE_LR=0.02"}
    assert len({p.dir for p in fast}) == 16 and {p.dir.name for p in fast} == {"seed0", "seed1"}


@pytest.mark.launch
def test_a_leaf_that_an_interpolation_reads_resolves_per_job(tmp_path):
    """``paths.cache`` is ``${output_root}/_cache`` and ``hydra.sweep.dir`` ``${output_root}/${benchmark.name}``:
    jobs sweeping ``output_root`` share a composition, and each resolves its own."""
    a, b = tmp_path / "a", tmp_path / "b"
    with hydra_sweep("benchmark=smoke_fast", "pretrain=densecl", f"output_root={a},{b}", "seed=0,1",
                     "trial.device=cpu") as (ctx, config, jobs):  # fmt: skip
        planned = trials.plan(ctx, config, jobs, 0)
        assert len({id(p.cfg) for p in planned}) == 1
        for p, job in zip(planned, jobs, strict=True):
            assert task(trials.activate(p)) == task(ctx.config_loader.load_sweep_config(config, list(job)))
        caches = [trials.activate(p).paths.cache for p in planned]
        assert sweep.folders_of(planned) == [a / "smoke_fast", b / "smoke_fast"]
        assert not triage.check(planned)
    assert caches == [f"{a}/_cache", f"{a}/_cache", f"{b}/_cache", f"{b}/_cache"]
    weights = {p.sha256 for p in planned}
    assert len(weights) == 1  # the same generated checkpoint, made under each job's own cache
    (sha,) = weights
    assert [p.dir for p in planned] == [root / "smoke_fast" / "r50_densecl" / f"w-{sha[:12]}" / f"seed{s}"
                                        for root in (a, b) for s in (0, 1)]  # fmt: skip
    for root in (a, b):
        assert (root / "_cache" / "smoke_fast" / "weights" / "densecl_r50.pth").is_file()
        assert (root / "_cache" / "smoke_fast" / "datasets" / "VOC2007").is_dir()


def test_a_sweep_over_how_trials_run_is_still_refused(tmp_path):
    """cluster.* and trial.* take one value per sweep: families share a composition, each job's values count."""
    with hydra_sweep("benchmark=smoke_fast", "pretrain=scratch", "trial.keep_checkpoints=final,all", "seed=0",
                     "trial.device=cpu", f"output_root={tmp_path}") as (ctx, config, jobs):  # fmt: skip
        planned = trials.plan(ctx, config, jobs, 0)
        assert len({id(p.cfg) for p in planned}) == 1
        found = triage.check(planned)
    assert any(m.startswith("cluster.* and trial.* say how the whole sweep runs") for m in found), found


def test_what_is_a_leaf():
    splitter = families.Splitter(frozenset({"benchmark", "pretrain", "input"}))
    job = splitter.split(["benchmark=smoke", "pretrain.name=a", "seed=3", "+d2.X=1", "x=[1,2]", "y={a:1}",
                          "input@pretrain.input=bgr_msra", "~z", "hydra.verbose=true", "pretrain.q=null"])  # fmt: skip
    assert job.leaves == (("pretrain.name", "a"), ("seed", 3), ("pretrain.q", None))
    assert [k for k, _ in job.shape] == ["", "=", "=", "", "", "", "", "", "", "="]
    # A key set twice, or one inside another override's, is no leaf: the order of the two would matter.
    assert splitter.split(["a.b=1", "a.b=2"]).leaves == ()
    assert splitter.split(["a=1", "a.b=2"]).leaves == ()
    assert splitter.split(["ab=1", "a.b=2"]).leaves == (("ab", 1), ("a.b", 2))


def test_a_missing_coco_image_is_named_once_for_a_sweep_of_checkpoints(tmp_path):
    """Checked for the sweep's first checkpoint and kept for the others, the COCO images a JSON lists are all
    looked for in one listing of their folder: one removed and one replaced by a folder of its name are named."""
    with hydra_sweep("benchmark=coco_smoke_fast", "pretrain=custom", "pretrain.name=ma,mb", "seed=0,1",
                     "trial.device=cpu", f"output_root={tmp_path}") as (ctx, config, jobs):  # fmt: skip
        planned = trials.plan(ctx, config, jobs, 0)
        assert triage.check(planned) == []
        coco = tmp_path / "_cache" / "coco_smoke_fast" / "datasets" / "coco"
        listed = [i["file_name"] for i in json.loads((coco / "annotations" / "instances_val2017.json").read_text())["images"]]
        gone, folder = coco / "val2017" / listed[0], coco / "val2017" / listed[1]
        gone.unlink()
        folder.unlink()
        folder.mkdir()
        found = triage.check(planned)
    assert [m for m in found if "val2017" in m] == [f"dataset coco_2017_val: 2 of {len(listed)} images of "
                                                     f"instances_val2017.json are missing from {coco / 'val2017'}/: "
                                                     f"{listed[0]}, {listed[1]}."]  # fmt: skip


@pytest.mark.launch
def test_a_checkpoint_is_checked_against_each_backbone_it_is_swept_with(tmp_path):
    """A conversion is looked up once per launch, and what the weights are is compared with each job's recipe:
    a ResNet-50 checkpoint swept with r50 and r101 over two benchmarks is refused for r101 only."""
    import torch

    from xfer.smoke import layouts

    ckpt = tmp_path / "mine_r50.pth"
    torch.save(layouts.torchvision_resnet(50, 16, 32, 8, seed=3), ckpt)
    with hydra_sweep("benchmark=smoke_fast,coco_smoke_fast", "backbone=r50,r101", "pretrain=custom",
                     f"pretrain.weights={ckpt}", "seed=0", "trial.device=cpu", f"output_root={tmp_path}") as (ctx, config, jobs):  # fmt: skip
        found = triage.check(trials.plan(ctx, config, jobs, 0))
    assert [m for m in found if "ResNet-" in m] == [
        "pretrain custom (r101): the weights are a ResNet-50, the backbone is ResNet-101; choose backbone=r50 or the "
        "r101 checkpoint."]  # fmt: skip
