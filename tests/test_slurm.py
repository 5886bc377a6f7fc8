"""Sweeps on a real SLURM (started by the session fixture): arrays, multi-task trials, preemption, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import imported, launch, results_under

pytestmark = pytest.mark.slow
CPU = ["cluster=slurm", "benchmark=smoke", "cluster.gpus_per_node=0", "cluster.cpus_per_task=1"]
LONG = "benchmark.d2.SOLVER.MAX_ITER=300"


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def last_iteration(trial: Path) -> int:
    path = trial / "metrics.json"
    lines = path.read_text().splitlines() if path.exists() else []
    return json.loads(lines[-1])["iteration"] if lines else -1


def job_id(trial: Path) -> str:
    return json.loads((trial / "slurm.json").read_text())["job_id"]


def squeue() -> str:
    return subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True).stdout


def test_sweep_is_one_array_and_a_collect_job_writes_the_table(slurm, tmp_path):
    run = launch("-m", *CPU, "pretrain=densecl,regioncl", "seed=0,1", "cluster.wait=true", f"output_root={tmp_path}")
    assert run.returncode == 0, run.output[-4000:]
    assert "4 to submit" in run.stdout and "submitted 4 trials as SLURM job array" in run.stdout
    array = run.stdout.split("job array ")[1].split(";")[0]
    collect_id = run.stdout.split("; job ")[1].split(" ")[0]
    trials = [p.parent for p in results_under(tmp_path)]
    assert len(trials) == 4
    assert sorted(job_id(t) for t in trials) == [f"{array}_{i}" for i in range(4)]  # one array, one task each
    collect_log = next((tmp_path / "smoke" / "_slurm" / collect_id).glob("*_log.out")).read_text()
    for setting in ("smoke/r50_densecl | 2/5 |", "smoke/r50_regioncl_d | 2/5 |"):
        assert setting in collect_log and setting in (tmp_path / "smoke" / "table.md").read_text()
    again = launch("-m", *CPU, "pretrain=densecl,regioncl", "seed=0,1", f"output_root={tmp_path}")
    assert "4 trials, 4 done, 0 queued already, 0 to submit" in again.stdout, again.output[-3000:]


def test_a_trial_over_two_tasks_joins_one_process_group(slurm, tmp_path):
    run = launch("-m", *CPU, "cluster.tasks_per_node=2", "pretrain=densecl", "seed=0", "cluster.wait=true",
                 f"output_root={tmp_path}")  # fmt: skip
    assert run.returncode == 0, run.output[-4000:]
    (result,) = results_under(tmp_path).values()
    assert result["run"]["world_size"] == 2
    assert any(p.name.startswith("rendezvous-") for p in (tmp_path.rglob(".rendezvous/*")))


def test_preemption_warning_checkpoints_requeues_and_resumes(slurm, tmp_path):
    t0 = time.time()
    run = launch("-m", *CPU, "pretrain=densecl", "seed=0", LONG, f"output_root={tmp_path}")
    assert run.returncode == 0, run.output[-4000:]
    (trial,) = [p.parent for p in tmp_path.rglob("slurm.json")]
    wait_for(lambda: last_iteration(trial) >= 59, 120, "training to pass iteration 59")
    t_signal = time.time()
    subprocess.run(["scancel", "--signal=USR2", job_id(trial)], check=True)
    result = wait_for(lambda: results_under(tmp_path), 240, "the requeued trial to finish")
    t_done = time.time()
    (r,) = result.values()
    log = (trial / "log.txt").read_text()  # the trial's log, across requeues
    saved = int(log.split("checkpoint saved at iteration ")[1].split(";")[0])
    assert saved >= 59 and f"resuming from iteration {saved + 1}" in log
    assert r["run"]["start_iter"] == saved + 1 and r["run"]["iterations_run"] == 300 - saved - 1
    assert r["run"]["max_iter"] == 300 and len(results_under(tmp_path)) == 1
    assert not (trial / "failure.json").exists()
    print(f"preemption timeline: submitted 0 s, signal {t_signal - t0:.0f} s (after iteration {saved}), "
          f"finished {t_done - t0:.0f} s")  # fmt: skip


def test_requeue_without_warning_resumes_from_the_last_checkpoint(slurm, tmp_path):
    run = launch("-m", *CPU, "pretrain=densecl", "seed=0", LONG, "cluster.checkpoint_period=50",
                 f"output_root={tmp_path}")  # fmt: skip
    assert run.returncode == 0, run.output[-4000:]
    (trial,) = [p.parent for p in tmp_path.rglob("slurm.json")]
    wait_for(lambda: (trial / "model_0000099.pth").exists(), 120, "the iteration-100 checkpoint")
    subprocess.run(["scontrol", "requeue", job_id(trial)], check=True)
    (r,) = wait_for(lambda: results_under(tmp_path), 240, "the requeued trial to finish").values()
    start = r["run"]["start_iter"]
    assert start > 0 and start % 50 == 0 and f"resuming from iteration {start}" in (trial / "log.txt").read_text()
    assert r["run"]["max_iter"] == 300


def test_cancelled_trial_is_recorded_and_only_it_is_resubmitted(slurm, tmp_path):
    args = ["-m", *CPU, "pretrain=densecl", "seed=0,1", LONG, f"output_root={tmp_path}"]
    assert launch(*args).returncode == 0
    trials = {p.parent.name: p.parent for p in tmp_path.rglob("slurm.json")}
    wait_for(lambda: last_iteration(trials["seed1"]) >= 0, 120, "seed 1 to start training")
    cancelled = job_id(trials["seed1"])
    subprocess.run(["scancel", cancelled], check=True)
    wait_for(lambda: not squeue().strip(), 300, "the array and the collect job to end")
    failure = json.loads((trials["seed1"] / "failure.json").read_text())
    assert failure["cause"].startswith("terminated (SIGTERM")
    assert "smoke/r50_densecl,benchmark.d2.SOLVER.MAX_ITER=300 | 1/5 |" in (tmp_path / "smoke" / "table.md").read_text()
    kept = job_id(trials["seed0"])
    again = launch(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert "2 trials, 1 done, 0 queued already, 1 to submit" in again.stdout, again.output[-3000:]
    assert "submitit" in imported(again) and "torch" not in imported(again)  # conversions cached: no torch start-up
    assert job_id(trials["seed0"]) == kept and job_id(trials["seed1"]) != cancelled
    subprocess.run(["scancel", "-u", "root"], check=False)
    wait_for(lambda: not squeue().strip(), 60, "the queue to drain")


def test_bad_submissions_are_refused_before_anything_is_queued(slurm, tmp_path):
    before = squeue()
    run = launch("-m", *CPU, "cluster.partition=nosuch", f"paths.datasets={tmp_path}/none", "benchmark.generate=false",
                 f"output_root={tmp_path}")  # fmt: skip
    assert run.returncode == 2
    assert "cluster.partition=nosuch: no such partition (sinfo lists: debug, other)" in run.stderr
    assert "dataset voc_2007_trainval: missing" in run.stderr
    run = launch("-m", *CPU, "cluster.tasks_per_node=3", f"output_root={tmp_path}")
    assert run.returncode == 2 and "3 processes cannot share the global batch 2" in run.stderr
    run = launch(
        "-m", "cluster=slurm", "benchmark=voc0712_c4_24k", "cluster.gpus_per_node=0", f"output_root={tmp_path}"
    )
    assert run.returncode == 2 and "set cluster.gpus_per_node" in run.stderr
    no_slurm = {"PATH": os.path.dirname(sys.executable)}  # the venv alone: no SLURM clients
    run = launch("-m", *CPU, f"output_root={tmp_path}", env=no_slurm)
    assert run.returncode == 2 and "sbatch is not on PATH" in run.stderr
    assert squeue() == before and not (tmp_path / "smoke" / "_slurm").exists()
    plan = launch("-m", "cluster=slurm", "benchmark=smoke", "cluster.gpus_per_node=2", "seed=0-1", "plan=true",
                  f"output_root={tmp_path}")  # fmt: skip
    assert plan.returncode == 0 and "2 trials: 2 to run; 2 GPU device(s) per trial" in plan.stdout, plan.output[-3000:]
