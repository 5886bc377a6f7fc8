"""``python -m xfer status`` and ``launch.py ... plan=true`` on folders holding trials in every state."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, launch
from tests.test_results import DENSECL, REGIONCL, trial
from tests.test_trial_identity import planned
from xfer.report import status
from xfer.store import locks, queue, redo, state, sweeps


@pytest.fixture
def every_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = Path("sweep")
    trial(root, DENSECL, 0, (82.64, 58.32, 64.60))
    partial = trial(root, DENSECL, 1)
    (partial / "last_checkpoint").write_text("model_0000499.pth")
    now = time.time()
    (partial / "progress.json").write_text(json.dumps({"phase": "stopped", "iteration": 500, "max_iter": 24000,
                                                       "start_iter": 0, "started_at": now - 400, "updated_at": now}))  # fmt: skip
    trial(root, REGIONCL, 3, failed="FloatingPointError: Loss became infinite or NaN at iteration=9")
    trial(root, REGIONCL, 4)  # never started
    trial(root, REGIONCL, 5, corrupt=True)
    queued_on_slurm = trial(root, REGIONCL, 6)
    (queued_on_slurm / "slurm.json").write_text(json.dumps({"job_id": "4242_6"}))
    return root


def test_status_reads_every_state_from_disk(every_state):
    rows = {s.label: s for s in status.scan([every_state])}
    assert rows["voc0712_c4_24k/r50_densecl seed0"].state == "done"
    assert rows["voc0712_c4_24k/r50_densecl seed0"].metrics["AP50"] == 82.64
    partial = rows["voc0712_c4_24k/r50_densecl seed1"]
    assert partial.state == "partial" and status.describe(partial) == "partial at 500/24000 (resumable)"
    assert rows["voc0712_c4_24k/r50_regioncl_d seed3"].cause.startswith("FloatingPointError")
    assert rows["voc0712_c4_24k/r50_regioncl_d seed4"].state == "to run"
    damaged = rows["voc0712_c4_24k/r50_regioncl_d seed5"]
    assert damaged.state == "damaged" and "damaged result.json: not JSON" in damaged.cause
    assert rows["voc0712_c4_24k/r50_regioncl_d seed6"].job.startswith("4242_6")


def test_a_held_lock_means_running(every_state):
    folder = every_state / "voc0712_c4_24k" / "r50_regioncl_d" / "seed4"
    holder = subprocess.Popen([sys.executable, "-c", "import time; from xfer.store import locks; "
                               f"lock = locks.take({str(folder.resolve())!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, cwd=REPO)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert {s.label: s.state for s in status.scan([every_state])}["voc0712_c4_24k/r50_regioncl_d seed4"] == "running"
    finally:
        holder.kill()
        holder.wait()
    assert not locks.held(folder)


def test_status_command_prints_the_table_and_refreshes_the_report(every_state):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": os.path.dirname(sys.executable)}  # no SLURM commands
    sweep = every_state / "voc0712_c4_24k"
    sweeps.write(sweep, sweeps.SweepRecord("python launch.py -m seed=0-6", "local", "GPU", 1, 2, 0.0))
    proc = subprocess.run([sys.executable, "-m", "xfer", "status", str(every_state)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "1 to run, 1 partial, 1 done, 1 failed, 1 damaged, 1 unknown" in proc.stdout  # SLURM's trial: unknown
    page = (sweep / "report.html").read_text()  # the sweep's page, written by status (no collect has run)
    assert "Unfinished trials (5)" in page and "python launch.py -m seed=0-6" in page
    assert "SLURM's queue could not be read: squeue is not on PATH" in proc.stdout
    assert "FloatingPointError: Loss became infinite" in proc.stdout and "damaged result.json: not JSON" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "xfer", "status", "nope"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "not a folder: nope" in proc.stderr
    (every_state / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "xfer", "status", str(every_state / "empty")], capture_output=True,
                          text=True, env=env)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout  # one line, not an empty table
    assert proc.stderr == (f"error: no trial under {every_state / 'empty'}: nothing to show (a sweep's folder is "
                           "<output_root>/<benchmark>, e.g. outputs/smoke)\n")  # fmt: skip


def test_checkpoint_names_count_iterations():
    assert redo.checkpoint_iteration("model_0000499.pth", 24000) == 500
    assert redo.checkpoint_iteration("model_final.pth", 24000) == 24000
    assert redo.checkpoint_iteration("garbage", 24000) == 0


@pytest.mark.slow
def test_plan_shows_the_matrix_and_the_estimate_and_runs_nothing(tmp_path):
    args = ("-m", "benchmark=smoke_fast", "pretrain=densecl", "seed=0-2", "plan=true", f"output_root={tmp_path}")
    assert launch(*args).returncode == 0  # makes the smoke weights, whose content hash is a level of the folder
    weights = tmp_path / "_cache" / "smoke_fast" / "weights" / "densecl_r50.pth"
    base = tmp_path / "smoke_fast" / "r50_densecl" / f"w-{hashlib.sha256(weights.read_bytes()).hexdigest()[:12]}"
    done = base / "seed0"
    done.mkdir(parents=True)
    record = {"setting": {"benchmark": "smoke_fast", "backbone": "r50", "pretrain": "densecl"},  # done: setting and metrics
              "metrics": {"AP50": 1.0, "AP": 0.5, "AP75": 0.0}, "run": {"wall_time_s": 2.0, "iterations_run": 10,
                                                                         "world_size": 1}}  # fmt: skip
    record["identity"] = planned(tmp_path).identity  # as the trial records what it ran: done, not stale
    (done / "result.json").write_text(json.dumps(record))
    (base / "seed1").mkdir()
    (base / "seed1" / "last_checkpoint").write_text("model_0000004.pth")
    before = sorted(p for p in tmp_path.rglob("*") if "_cache" not in p.parts and p.name != "multirun.yaml")
    run = launch(*args)
    assert run.returncode == 0, run.output[-3000:]
    assert "| smoke_fast/r50_densecl | done | partial 5/10 | to run |" in run.stdout
    assert "3 trials: 1 done, 1 partial, 1 to run; 1 cpu device(s) per trial, 1 trial(s) at a time" in run.stdout
    assert "r50: 0.200 cpu-s/iter, measured on 1 finished trial(s)" in run.stdout
    assert "(0m03s)" in run.stdout  # (5 + 10) iterations left x 0.2 s
    after = sorted(p for p in tmp_path.rglob("*") if "_cache" not in p.parts and p.name != "multirun.yaml")
    assert after == before  # nothing ran, no trial folder was written
    bad = launch("-m", "benchmark=smoke_fast", "pretrain=densecl", "seed=0-2", "plan=true", "cluster.devices=4",
                 "cluster.gpus_per_trial=3", f"output_root={tmp_path}")  # fmt: skip
    assert bad.returncode == 2 and "| smoke_fast/r50_densecl |" in bad.stdout and "cannot share the global batch" in bad.stderr


@pytest.mark.launch
def test_plan_of_one_trial_without_m_runs_nothing(tmp_path, smoke_fast_made):
    """``python launch.py ... plan=true`` (no ``-m``) plans that one trial and runs nothing, as a sweep's plan does;
    a bad option is still named, with status 2."""
    made = smoke_fast_made(tmp_path)
    args = ("benchmark=smoke_fast", "pretrain=densecl", "seed=0", f"output_root={made}")
    run = launch(*args, "plan=true")
    assert run.returncode == 0, run.output[-3000:]
    assert "(nothing runs with plan=true)" in run.stdout and "| smoke_fast/r50_densecl | to run |" in run.stdout
    assert "1 trials: 1 to run" in run.stdout and "no problems found" in run.stdout
    assert not list(tmp_path.rglob("result.json")) and not list(tmp_path.rglob("trial.yaml"))
    bad = launch(*args, "plan=true", "trial.evaluator=nope")
    assert bad.returncode == 2 and "trial.evaluator='nope'" in bad.stderr, bad.output[-3000:]


def test_slurm_speaks_first_while_it_has_the_job(every_state):
    """Issue 12, item 6: a requeue's SIGTERM leaves failure.json; SLURM still has the job, so it is not failed."""
    failed = every_state / "voc0712_c4_24k" / "r50_regioncl_d" / "seed3"  # has failure.json
    assert state.of(failed, job=queue.JobState("PENDING", restarts=1)).state == "requeued"
    assert state.of(failed, job=queue.JobState("PENDING")).state == "queued"
    assert state.of(failed, job=queue.JobState("RUNNING", restarts=2)).state == "running"
    for ended in ("CANCELLED", "FAILED", "COMPLETED", "TIMEOUT", "OUT_OF_MEMORY", ""):
        assert state.of(failed, job=queue.JobState(ended)).state == "failed"  # the folder's word then
    assert state.of(failed).state == "failed"
    # A job that ended and left neither a result nor a failure record: failed, never "queued" beside it.
    empty = every_state / "voc0712_c4_24k" / "r50_regioncl_d" / "seed4"  # trial.yaml only
    assert state.of(empty).state == "to run"
    gone = state.of(empty, job=queue.JobState("COMPLETED"))
    assert gone.state == "failed" and "ended (COMPLETED) without a result" in gone.cause


def test_the_report_is_rewritten_only_when_what_it_shows_changed(every_state):
    """status rewrites a sweep's report.html when a trial's state, progress or cause, or the launch, changed since
    the page was written, and leaves it alone otherwise (a finished 2,000-trial sweep's page takes seconds)."""
    from xfer.report import page, results

    sweep = every_state / "voc0712_c4_24k"
    sweeps.write(sweep, sweeps.SweepRecord("python launch.py -m seed=0-6", "local", "GPU", 1, 2, 0.0))

    def look() -> list[Path]:
        trials = results.read_trials([every_state])
        return page.refresh([every_state], trials, status.scan([every_state], trials=trials))

    assert look() == [sweep / "report.html"]
    before = (sweep / "report.html").stat().st_mtime_ns
    assert look() == [] and (sweep / "report.html").stat().st_mtime_ns == before  # nothing changed
    never_started = sweep / "r50_regioncl_d" / "seed4"
    (never_started / "failure.json").write_text(json.dumps({"cause": "CUDA out of memory"}))
    assert look() == [sweep / "report.html"] and "CUDA out of memory" in (sweep / "report.html").read_text()


def test_status_of_two_folders_shows_an_unfinished_copy_of_a_trial_done_in_the_other(tmp_path, monkeypatch):
    """Drill: ``status A B``, where A holds a finished trial and B (a copy of the sweep, relaunched elsewhere) the
    same trial not yet run, listed A's result alone: B's trial, which a launch in B would run, was hidden. Now
    both rows, B's naming A's; collect still counts the trial once (n = 1)."""
    monkeypatch.chdir(tmp_path)
    done = trial(Path("a"), DENSECL, 0, (82.64, 58.32, 64.60))
    trial(Path("b"), DENSECL, 0)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": os.path.dirname(sys.executable)}  # no SLURM commands
    proc = subprocess.run([sys.executable, "-m", "xfer", "status", "a", "b"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "a, b: 1 to run, 1 done" in " ".join(proc.stdout.split()), proc.stdout
    assert f"a copy of the trial done at {done}" in " ".join(proc.stdout.split()), proc.stdout
    rows = {s.path: s.state for s in status.scan([Path("a"), Path("b")])}  # collect's report page: one per trial
    assert rows == {done: "done"}
