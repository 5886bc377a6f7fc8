"""Drill findings of a third round, each against an oracle from outside the code under test.

- ``collect --baseline`` naming a pretrain no trial has (a typo) left every group without its baseline and wrote
  the tables anyway; now one line naming the pretrains that are there (the names the test wrote), nothing
  written. At launch, ``collect.baseline=`` is checked against the sweep's pretrains and the pretrain group's
  files (``conf/pretrain/*.yaml``, listed here by the test).
- A ``result.json`` that is a link to storage that is gone (an unmounted file system) read as "missing": the
  trial showed as partial and would have run again. It is unreadable, named with its target, left in place.
- ``coco-subset`` of an instances file without images wrote a subset of 0 images; now refused, nothing written.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml

from tests.conftest import REPO, launch
from tests.test_bad_options import refused
from tests.test_results import DENSECL, REGIONCL, trial
from xfer.report import results
from xfer.store import state


def test_collect_refuses_a_baseline_no_trial_has_naming_the_pretrains_there(tmp_path, capsys):
    from xfer.__main__ import main

    root = tmp_path / "sweep"
    for seed in (0, 1):
        trial(root, DENSECL, seed, (80.0 + seed, 55.0, 60.0))
        trial(root, REGIONCL, seed, (81.0 + seed, 56.0, 61.0))
    before = sorted(root.rglob("*"))
    assert main(["collect", str(root), "--baseline", "scratc", "--no-plots"]) == 2
    err = capsys.readouterr().err
    names = ", ".join(sorted([DENSECL["name"], REGIONCL["name"]]))
    assert err == f"error: --baseline scratc: no trial of that pretrain here; the pretrains here: {names}\n"
    assert sorted(root.rglob("*")) == before  # no table written
    assert main(["collect", str(root), "--baseline", DENSECL["name"], "--no-plots"]) == 0
    assert (root / "table.md").is_file()


@pytest.mark.launch
def test_a_launch_refuses_a_collect_baseline_that_names_no_pretrain(tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)
    args = ("-m", "benchmark=smoke_fast", "pretrain=densecl", "seed=0", "plan=true", f"output_root={tmp_path}")
    lines = refused(launch(*args, "collect.baseline=scratc"), tmp_path)
    choices = sorted(p.stem for p in (REPO / "conf" / "pretrain").glob("*.yaml"))
    assert lines[-1] == f"  - collect.baseline=scratc: no pretrain of that name; choose one of: {', '.join(choices)}"
    ok = launch(*args, "collect.baseline=supervised")  # not in this sweep, but a pretrain: earlier sweeps' trials
    assert ok.returncode == 0, ok.output[-3000:]
    (tmp_path / "smoke_fast" / "r50_mine" / "w-none" / "seed0").mkdir(parents=True)  # pretrain.name=mine, earlier
    ok = launch(*args, "collect.baseline=mine")
    assert ok.returncode == 0, ok.output[-3000:]


def test_a_result_linked_to_storage_that_is_gone_is_unreadable_and_left_in_place(tmp_path):
    folder = trial(tmp_path, DENSECL, 0)  # trial.yaml only: then a result.json that is a dangling link
    gone = tmp_path / "unmounted" / "result.json"
    os.symlink(gone, folder / "result.json")
    st = state.of(folder)
    assert (st.state, st.cause) == ("unreadable", f"unreadable result.json: a link to {gone}, which is not there "
                                                  "(storage not mounted?)")  # fmt: skip
    (t,) = results.read_trials([tmp_path])
    assert t.state == "unreadable"
    assert os.readlink(folder / "result.json") == str(gone)
    gone.parent.mkdir()
    gone.write_text(json.dumps({"metrics": {"AP50": 1.0, "AP": 0.5, "AP75": 0.2}}))  # mounted again: it reads
    assert state.read_result(folder).kind != "unreadable"


def test_coco_subset_of_a_file_without_images_writes_nothing(tmp_path, capsys):
    from xfer.__main__ import main

    annotations = tmp_path / "coco" / "annotations"
    annotations.mkdir(parents=True)
    (annotations / "instances_train2017.json").write_text(json.dumps({"images": [], "annotations": [],
                                                                      "categories": [{"id": 1, "name": "a"}]}))  # fmt: skip
    assert main(["coco-subset", "--datasets", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lists no images" in err and err.count("\n") == 1
    assert sorted(p.name for p in annotations.iterdir()) == ["instances_train2017.json"]


@pytest.mark.launch
@pytest.mark.parametrize("flags,named", [(("-m", "--cfg", "job"), "-m and --cfg"), (("--cfg=job", "--info"), "--cfg and --info"),
                                         (("-c", "job", "--multirun"), "--cfg and -m")])  # fmt: skip
def test_two_hydra_modes_at_once_are_one_line_not_a_traceback(tmp_path, flags, named):
    """Hydra raises a ValueError (a traceback) for ``-m --cfg job``; the launch says what to do instead. Alone,
    ``--cfg job`` still prints the composed config (read back as YAML: the seed given)."""
    args = ("benchmark=smoke_fast", "pretrain=densecl", "seed=3", f"output_root={tmp_path}")
    run = launch(*flags, *args)
    assert run.returncode == 2 and "Traceback" not in run.output, run.output[-3000:]
    assert run.stderr.startswith(f"error: {named} together: Hydra does one of them at a time.")
    assert run.stderr.count("\n") == 1 and not list(tmp_path.iterdir())
    shown = launch("--cfg", "job", *args)
    assert shown.returncode == 0 and yaml.safe_load(shown.stdout)["seed"] == 3, shown.output[-3000:]


@pytest.mark.launch
@pytest.mark.parametrize("option,line", [
    ("cluster.time_min=1:00:00", "cluster.time_min='1:00:00': minutes per job (e.g. 1440 for SLURM's 1-00:00:00), a "
                                 "whole number of at least 1."),
    ("cluster.time_min=-5", "cluster.time_min=-5: minutes per job"),
    ("cluster.array_parallelism=0", "cluster.array_parallelism=0: trials running at once, a whole number of at least 1."),
    ("cluster.nodes=two", "cluster.nodes='two': nodes per trial"),
    ("cluster.mem_gb=-1", "cluster.mem_gb=-1: GB per node, more than 0"),
    ("cluster.setup=source .venv/bin/activate", "cluster.setup='source .venv/bin/activate': a list of shell lines"),
    ("cluster.sbatch=5", "cluster.sbatch=5: sbatch options by name"),
])  # fmt: skip
def test_slurm_options_slurm_would_refuse_or_misread_are_one_line_before_anything_is_submitted(tmp_path, option, line):
    """Drill: ``time_min=1:00:00`` (SLURM's own format) was a traceback from ``int()`` after sweep.json and the
    trials' records were written; ``time_min=-5`` went out as ``--time=-5``, which SLURM reads as no limit
    (TimeLimit 2982611-04:17:00); ``array_parallelism=0`` planned "0 trial(s) at a time, no problems found"."""
    run = launch("-m", "cluster=slurm", "benchmark=smoke_fast", "pretrain=densecl", "seed=0", "cluster.gpus_per_node=0",
                 option, "plan=true", f"output_root={tmp_path}", f"paths.cache={tmp_path / '_cache'}")  # fmt: skip
    lines = refused(run, tmp_path)
    assert lines[-2:] == ["error: nothing was run; 1 problem(s) to fix first:", lines[-1]] and \
        lines[-1].startswith(f"  - {line}"), run.output[-3000:]  # fmt: skip
    assert not (tmp_path / "smoke_fast" / "sweep.json").exists()
