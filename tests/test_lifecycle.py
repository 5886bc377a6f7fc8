"""A finished trial's files over its life: a damaged result.json is redone without losing anything, and the
periodic checkpoints a finished trial no longer needs are dropped (``trial.keep_checkpoints``)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import launch
from xfer.store import state
from xfer.store.redo import prune_checkpoints, redo_start, set_aside_damaged

SMOKE = ["-m", "benchmark=smoke_fast", "pretrain=densecl", "seed=0"]
# detectron2's PeriodicCheckpointer with the smoke recipe's CHECKPOINT_PERIOD 5 and MAX_ITER 10 saves after
# iterations 5 and 10 (0-based 4 and 9, the number in the name) and model_final.pth after the last one.
EVERY_CHECKPOINT = {"model_0000004.pth", "model_0000009.pth", "model_final.pth", "last_checkpoint"}


def record() -> dict:
    """A result.json as a trial writes it, written here by hand."""
    return {"setting": {"benchmark": "smoke_fast", "backbone": "r50", "pretrain": "densecl", "overrides": "", "key": "k"},
            "seed": 0, "metrics": {"AP50": 1.5, "AP": 0.5, "AP75": 0.0}, "run": {"max_iter": 10}}  # fmt: skip


def checkpoints(trial: Path) -> set[str]:
    return {p.name for p in trial.iterdir() if p.name.startswith("model_") or p.name == "last_checkpoint"}


# ---- fast: what "done" means, setting aside, pruning, on files written by hand -----------------------------


@pytest.mark.parametrize(
    "text,why",
    [
        (json.dumps(record(), indent=2)[:120], "not JSON"),  # cut by a full disk or a killed writer
        ("", "empty"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({**record(), "metrics": {"AP50": 1.0, "AP": None, "AP75": 2.0}}), "no number for AP"),
        (json.dumps({k: v for k, v in record().items() if k != "metrics"}), "no metrics"),
        (json.dumps({k: v for k, v in record().items() if k != "setting"}), "no setting"),
    ],
)
def test_a_damaged_result_is_not_done(tmp_path, text, why):
    (tmp_path / "result.json").write_text(text)
    found = state.read_result(tmp_path)
    assert found.kind == "damaged" and found.record is None and why in found.cause
    assert state.of(tmp_path).state == "damaged"


def test_a_sound_result_is_done(tmp_path):
    (tmp_path / "result.json").write_text(json.dumps(record()))
    assert state.read_result(tmp_path).record == record() and state.of(tmp_path).state == "done"
    assert state.read_result(tmp_path / "absent").kind == "missing"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_result_that_cannot_be_read_is_unreadable_and_stays(tmp_path):
    """An I/O error (here EACCES, as on another user's file) is not damage: the file may be sound."""
    (tmp_path / "result.json").write_text(json.dumps(record()))
    (tmp_path / "result.json").chmod(0)
    try:
        s = state.of(tmp_path)
        assert s.state == "unreadable" and "PermissionError" in s.cause
    finally:
        (tmp_path / "result.json").chmod(0o644)


def test_an_io_error_is_unreadable_not_damaged(tmp_path):
    """A folder where result.json should be: reading it raises IsADirectoryError, an OSError like EIO or ESTALE.
    The trial is unreadable (reported, left in place), never damaged (moved aside and redone)."""
    (tmp_path / "result.json").mkdir()
    s = state.of(tmp_path)
    assert s.state == "unreadable" and "IsADirectoryError" in s.cause and (tmp_path / "result.json").is_dir()


def test_damaged_results_are_set_aside_never_overwritten(tmp_path):
    kept = []
    for text in ('{"setting": {"bench', '{"metr'):  # two damaged files within the same second
        (tmp_path / "result.json").write_text(text)
        redo = set_aside_damaged(tmp_path, state.read_result(tmp_path).cause)
        assert redo is not None and not (tmp_path / "result.json").exists()
        kept.append((redo.kept_as, text))
    assert len({path for path, _ in kept}) == 2
    for path, text in kept:
        assert path.name.startswith("result.json.damaged-") and path.read_text() == text
    (tmp_path / "result.json").write_text(json.dumps(record()))
    assert state.read_result(tmp_path).kind == "sound" and (tmp_path / "result.json").exists()


@pytest.mark.parametrize(
    "last,max_iter,start",
    [
        ("model_final.pth", 10, "re-evaluating from model_final.pth"),
        ("model_0000009.pth", 10, "re-evaluating from model_0000009.pth"),  # 10 iterations done of 10
        ("model_0000004.pth", 10, "resuming training from model_0000004.pth"),
        (None, 10, "retraining from the start"),
    ],
)
def test_a_redo_starts_from_what_the_trial_left(tmp_path, last, max_iter, start):
    if last:
        (tmp_path / last).write_bytes(b"weights")
        (tmp_path / "last_checkpoint").write_text(last)
    assert redo_start(tmp_path, max_iter).startswith(start)


@pytest.mark.parametrize(
    "keep,left",
    [
        ("all", EVERY_CHECKPOINT),
        ("final", {"model_final.pth", "last_checkpoint"}),
        ("none", set()),
    ],
)
def test_pruning_keeps_what_the_option_says(tmp_path, keep, left):
    for name in EVERY_CHECKPOINT:
        (tmp_path / name).write_text("model_final.pth" if name == "last_checkpoint" else "weights")
    (tmp_path / "result.json").write_text(json.dumps(record()))
    prune_checkpoints(tmp_path, keep)
    assert checkpoints(tmp_path) == left
    assert (tmp_path / "result.json").exists() and (tmp_path / "result.json").read_text() == json.dumps(record())


@pytest.mark.launch
def test_an_unknown_keep_checkpoints_value_is_refused_before_anything_runs(tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)
    run = launch(*SMOKE, f"output_root={tmp_path}", "trial.keep_checkpoints=some")
    assert run.returncode == 2, run.output[-2000:]
    assert "trial.keep_checkpoints='some': use one of final, all, none." in run.stderr
    assert not list(tmp_path.rglob("trial.yaml"))


# ---- slow: real launches of the smoke benchmark ------------------------------------------------------------


def plan_row(output: str) -> str:
    (row,) = [line for line in output.splitlines() if line.startswith("| smoke_fast/r50_densecl |")]
    return row


def the_trial(root: Path) -> Path:
    """The one smoke densecl seed-0 trial under ``root`` (its weights id is a level of the folder)."""
    (trial,) = root.glob("smoke_fast/r50_densecl/w-*/seed0")
    return trial


@pytest.mark.slow
def test_a_truncated_result_is_kept_and_the_trial_redone(tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    args = [*SMOKE, f"output_root={tmp_path}"]
    first = launch(*args)
    assert first.returncode == 0, first.output[-3000:]
    trial = the_trial(tmp_path)
    assert {"model_final.pth", "last_checkpoint"} <= checkpoints(trial)
    text = (trial / "result.json").read_text()
    original = json.loads(text)
    assert original["run"]["iterations_run"] == 10

    cut = text[: len(text) // 2]
    (trial / "result.json").write_text(cut)  # a writer killed half way, on a file system without atomic renames
    plan = launch(*args, "plan=true")
    assert plan.returncode == 0, plan.output[-3000:]
    assert plan_row(plan.stdout) == "| smoke_fast/r50_densecl | damaged 10/10 |"  # not done; nothing left to train
    assert "result.json of smoke_fast/r50_densecl seed0 is damaged (not JSON" in plan.stdout
    assert "re-evaluating from model_final.pth" in plan.stdout
    assert (trial / "result.json").read_text() == cut  # a plan changes nothing

    again = launch(*args)
    assert again.returncode == 0, again.output[-3000:]
    said = re.search(r"result\.json of smoke_fast/r50_densecl seed0 is damaged \(not JSON.*\): kept as "
                     r"(result\.json\.damaged-\S+), re-evaluating from model_final\.pth", again.stdout)  # fmt: skip
    assert said, again.output[-3000:]
    assert (trial / said.group(1)).read_text() == cut
    redone = json.loads((trial / "result.json").read_text())
    assert redone["run"]["iterations_run"] == 0 and redone["run"]["start_iter"] == redone["run"]["max_iter"] == 10
    # the same final weights, evaluated again: the numbers the first run measured
    assert redone["metrics"] == pytest.approx(original["metrics"], abs=1e-9)
    assert "unreadable result.json" not in again.stdout
    assert "training already finished (checkpoint at iteration 10)" in (trial / "log.txt").read_text()
    progress = json.loads((trial / "progress.json").read_text())  # what status showed while it evaluated
    assert (progress["phase"], progress["iteration"], progress["start_iter"]) == ("evaluating", 10, 10)

    # damaged again, and this time the checkpoints are gone too: the trial trains from the start
    (trial / "result.json").write_text('{"setting": {"benchmark": "smoke_fast"')
    for name in checkpoints(trial):
        (trial / name).unlink()
    plan = launch(*args, "plan=true")
    assert plan_row(plan.stdout) == "| smoke_fast/r50_densecl | damaged |", plan.output[-3000:]
    third = launch(*args)
    assert third.returncode == 0, third.output[-3000:]
    assert "retraining from the start (no checkpoint left)" in third.stdout
    retrained = json.loads((trial / "result.json").read_text())
    assert retrained["run"]["iterations_run"] == 10 and retrained["run"]["start_iter"] == 0
    assert len(list(trial.glob("result.json.damaged-*"))) == 2  # both damaged files kept


@pytest.mark.slow
@pytest.mark.parametrize("keep,left", [(None, {"model_final.pth", "last_checkpoint"}), ("all", EVERY_CHECKPOINT),
                                       ("none", set())])  # fmt: skip
def test_keep_checkpoints_decides_what_a_finished_trial_keeps(tmp_path, keep, left, smoke_fast_made):
    """The default keeps the final weights only; the option is not part of the setting."""
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    run = launch(*SMOKE, f"output_root={tmp_path}", *([f"trial.keep_checkpoints={keep}"] if keep else []))
    assert run.returncode == 0, run.output[-3000:]
    trial = the_trial(tmp_path)  # the default's setting folder: the option is not part of the setting
    assert checkpoints(trial) == left
    assert json.loads((trial / "result.json").read_text())["run"]["iterations_run"] == 10
