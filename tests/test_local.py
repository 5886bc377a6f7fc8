"""Local nodes: trials packed on device groups, crash safety, two launchers, failures.

CPU processes with gloo stand in for GPUs: ``cluster.devices=4`` gives four CPU "devices". The suite hides any
GPU of the machine (tests/conftest.py), so these trials run on the CPU on a GPU node too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO, launch, results_under
from xfer.launch import local, placement
from xfer.report import status

SMOKE = ["benchmark=smoke_fast", "pretrain=densecl"]


def start_launcher(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "launch.py"), *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def checkpointed_mid_training(trial: Path):
    """True once a periodic checkpoint exists and training is still going."""
    return lambda: (trial / "last_checkpoint").exists() and not (trial / "result.json").exists()


def ranks_of(launcher: subprocess.Popen, n: int) -> list[psutil.Process]:
    procs = psutil.Process(launcher.pid).children(recursive=True)
    ranks = [p for p in procs if "xfer.trial.rank" in " ".join(p.cmdline())]
    assert len(ranks) == n, [p.cmdline() for p in procs]
    return procs


def assert_all_gone(procs: list[psutil.Process], timeout: float = 15) -> None:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    assert not alive, f"still running: {[(p.pid, p.cmdline()) for p in alive]}"


# ---- fast: devices, groups and the checks before anything starts ---------------------------------


def cluster(**kw):
    return OmegaConf.create({"devices": "auto", "gpus_per_trial": "auto", "stop_grace_s": 60, **kw})


def test_cpu_devices_are_cut_into_disjoint_groups():
    devices = placement.resolve_devices(5, "cpu")
    assert devices == ["cpu0", "cpu1", "cpu2", "cpu3", "cpu4"]
    assert placement.groups(devices, 2) == [("cpu0", "cpu1"), ("cpu2", "cpu3")]  # the fifth stays idle
    assert placement.groups(devices, placement.per_trial("auto", 5)) == [tuple(devices)]
    assert placement.resolve_devices("auto", "cpu") == ["cpu0"]


@pytest.mark.parametrize("kw,batch,message", [
    ({"devices": 4, "gpus_per_trial": 3}, 16, "cluster.gpus_per_trial=3 cannot share the global batch 16 evenly"),
    ({"devices": 2, "gpus_per_trial": 4}, 16, "cluster.gpus_per_trial=4: only 2 device(s) to use"),
    ({"devices": 0}, 16, "cluster.devices=0: use auto, a count"),
    ({"gpus_per_trial": "two"}, 16, "cluster.gpus_per_trial='two': use auto"),
    ({"stop_grace_s": -1}, 16, "cluster.stop_grace_s=-1"),
])  # fmt: skip
def test_local_problems_name_the_option(kw, batch, message):
    found = placement.problems(cluster(**kw), batch, "cpu")
    assert len(found) == 1 and message in found[0], found


def test_a_group_that_divides_the_batch_passes():
    assert placement.problems(cluster(devices=8, gpus_per_trial=2), 16, "cpu") == []


def test_gpus_requested_on_a_machine_without_them_are_refused():
    assert placement.visible_gpus() == []  # CUDA_VISIBLE_DEVICES="" (tests/conftest.py), on a GPU node too
    found = placement.problems(cluster(devices=[0, 1]), 16, "cuda")
    assert found and "not visible" in found[0]


def test_diagnose_prefers_the_rank_that_raised(tmp_path):
    (tmp_path / "rank0.out").write_text("killed\n")
    (tmp_path / "rank1.out").write_text("Traceback (most recent call last):\n  File x\n"
                                        "torch.OutOfMemoryError: CUDA out of memory. Tried 2 GiB\n")  # fmt: skip
    cause, text = local.diagnose(tmp_path, [-9, 1])
    assert cause == "torch.OutOfMemoryError: CUDA out of memory. Tried 2 GiB" and "Traceback" in text
    cause, _ = local.diagnose(tmp_path, [-9, 0])
    assert cause.startswith("rank 0 killed by SIGKILL (out of memory?")


def test_eta_follows_the_pace_of_this_run():
    progress = {"iteration": 150, "start_iter": 100, "max_iter": 1100, "started_at": 0.0, "updated_at": 10.0}
    assert status.eta_s(progress, now=10.0) == pytest.approx(190.0)  # 50 iterations in 10 s, 950 to go
    assert status.eta_s(progress, now=15.0) == pytest.approx(185.0)
    assert status.eta_s({**progress, "iteration": 100}, now=10.0) is None
    s = status.TrialStatus("x", "running", iteration=150, max_iter=1100, phase="training", eta_s=190.0)
    assert status.describe(s) == "150/1100, ETA 3m10s"


# ---- slow: real trials -------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_process_trial_keeps_the_global_batch(tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    run = launch(*SMOKE, "seed=0", "cluster.devices=2", "cluster.gpus_per_trial=2", "+d2.SOLVER.IMS_PER_BATCH=16",
                 "+d2.SOLVER.MAX_ITER=4", f"output_root={tmp_path}")  # fmt: skip
    assert run.returncode == 0, run.output[-3000:]
    ((path, r),) = results_under(tmp_path).items()
    assert r["run"]["world_size"] == 2 and r["run"]["global_batch"] == 16 and r["run"]["batch_per_process"] == 8
    assert r["run"]["devices"] == ["cpu0", "cpu1"] and r["run"]["iterations_run"] == 4
    assert (path.parent / "log.txt.rank1").exists()  # the second process trained too
    assert "exited with status" not in run.output and "Traceback" not in (path.parent / "rank1.out").read_text()


@pytest.mark.slow
def test_trials_are_packed_side_by_side_on_disjoint_devices(tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    run = launch("-m", *SMOKE, "seed=0,1", "cluster.devices=4", "cluster.gpus_per_trial=2", f"output_root={tmp_path}")
    assert run.returncode == 0, run.output[-3000:]
    assert "2 trial(s) on 4 cpu device(s): 2 at a time, 2 process(es) each" in run.output
    a, b = (r["run"] for r in results_under(tmp_path).values())
    assert a["world_size"] == b["world_size"] == 2
    assert not set(a["devices"]) & set(b["devices"]) and len(set(a["devices"]) | set(b["devices"])) == 4
    assert a["rendezvous"] != b["rendezvous"]  # each trial its own port
    assert max(a["started_unix"], b["started_unix"]) < min(a["finished_unix"], b["finished_unix"])  # at once


@pytest.mark.slow
def test_kill_9_of_the_launcher_leaves_no_process_and_a_resumable_trial(tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    args = [*SMOKE, "seed=3", "cluster.devices=2", "cluster.gpus_per_trial=2", "benchmark.d2.SOLVER.MAX_ITER=60",
            f"output_root={tmp_path}"]  # fmt: skip
    launcher = start_launcher(*args)
    trial = next_trial_dir(tmp_path)
    wait_for(checkpointed_mid_training(trial), 120, "a checkpoint mid-training")
    procs = ranks_of(launcher, 2)
    launcher.kill()  # SIGKILL: the launcher gets no chance to clean up
    launcher.wait()
    assert_all_gone(procs)
    assert not (trial / "result.json").exists()
    run = launch(*args)
    assert run.returncode == 0, run.output[-3000:]
    r = json.loads((trial / "result.json").read_text())
    assert r["run"]["start_iter"] > 0 and r["run"]["iterations_run"] == 60 - r["run"]["start_iter"]
    assert json.loads((trial / "metrics.json").read_text().splitlines()[-1])["iteration"] == 59


@pytest.mark.slow
def test_ctrl_c_checkpoints_where_it_stops_and_the_rerun_resumes_there(tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    args = [*SMOKE, "seed=4", "benchmark.d2.SOLVER.MAX_ITER=60", f"output_root={tmp_path}"]
    launcher = start_launcher(*args)
    trial = next_trial_dir(tmp_path)
    wait_for(checkpointed_mid_training(trial), 120, "a checkpoint mid-training")
    procs = ranks_of(launcher, 1)
    launcher.send_signal(signal.SIGINT)
    out, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 130, out[-3000:]
    assert "stopping: 1 running trial(s) save a checkpoint and exit" in out and "stopped " in out
    assert_all_gone(procs)
    stopped_at = int((trial / "last_checkpoint").read_text().strip()[len("model_") : -len(".pth")])
    assert (trial / f"model_{stopped_at:07d}.pth").stat().st_size > 0
    assert f" at {stopped_at + 1}/60; run the same command to resume" in out  # where the rerun resumes, said once
    run = launch(*args)
    assert run.returncode == 0, run.output[-3000:]
    r = json.loads((trial / "result.json").read_text())
    assert r["run"]["start_iter"] == stopped_at + 1  # nothing trained twice, nothing skipped


@pytest.mark.slow
def test_two_launchers_on_one_sweep_train_each_trial_once(tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    args = ["-m", *SMOKE, "seed=0,1,2", f"output_root={tmp_path}"]
    first, second = start_launcher(*args), start_launcher(*args)
    outs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs[0][-2000:] + outs[1][-2000:]
    results = results_under(tmp_path)
    assert len(results) == 3
    for path, r in results.items():
        starts = (path.parent / "log.txt").read_text().count("Starting training from iteration")
        assert starts == 1 and r["run"]["start_iter"] == 0, path
    assert sum(out.count("\nstart   ") for out in outs) == 3
    for out in outs:
        assert "| smoke_fast/r50_densecl | 3/5 |" in out  # each launcher waits for the other's trials, then tabulates


@pytest.mark.slow
def test_a_launcher_with_nothing_to_run_waits_for_the_other_launchers_trial(tmp_path, smoke_fast_made):
    """The second launcher finds the trial running under the first (its lock held): it says so, waits for it rather
    than tabulating it as unfinished, and the trial trains once."""
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    args = ["-m", *SMOKE, "seed=0", "+d2.SOLVER.MAX_ITER=200", f"output_root={tmp_path}"]
    first = start_launcher(*args)
    trial = next_trial_dir(tmp_path)
    wait_for(lambda: (trial / "progress.json").exists(), 120, "the first launcher's trial to train")
    second = launch(*args)
    out = first.communicate(timeout=300)[0]
    assert first.returncode == 0 and second.returncode == 0, out[-2000:] + second.output[-2000:]
    assert "1 trials, 0 done already, 0 to run, 1 running under another launcher" in second.output, second.output[-3000:]
    assert "| smoke_fast/r50_densecl,SOLVER.MAX_ITER=200 | 1/5 |" in second.stdout  # waited, then tabulated it
    assert (trial / "log.txt").read_text().count("Starting training from iteration") == 1


@pytest.mark.slow
def test_a_failing_trial_does_not_stop_the_others_and_shows_its_cause(tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)  # its inputs made (tests/conftest.py): this test is about how trials run
    run = launch("-m", *SMOKE, "seed=0", "+d2.SOLVER.BASE_LR=1e12,0.01", "cluster.devices=2",
                 "cluster.gpus_per_trial=1", f"output_root={tmp_path}")  # fmt: skip
    assert run.returncode == 1, run.output[-3000:]
    (r,) = results_under(tmp_path).values()  # the good trial finished and is in the table
    assert r["setting"]["overrides"] == ""  # 0.01 is smoke_fast's own learning rate: the plain setting
    assert "smoke_fast/r50_densecl | 1/5 |" in (tmp_path / "smoke_fast" / "table.md").read_text()
    (failure_file,) = tmp_path.rglob("failure.json")
    failure = json.loads(failure_file.read_text())
    assert failure["cause"].startswith("FloatingPointError: ")  # the loss or the boxes diverged
    assert "Traceback" in failure["detail"]
    failed_line = next(line for line in run.stdout.splitlines() if line.startswith("failed  "))
    assert "smoke_fast/r50_densecl,SOLVER.BASE_LR=1" in failed_line and failure["cause"] in failed_line
    assert "FloatingPointError" in run.stdout.split("trial(s): 1 done, 1 failed")[1]  # the final status table


def next_trial_dir(root: Path) -> Path:
    """The folder of the only trial under ``root``, once the launcher has made it."""
    found: list[Path] = []
    wait_for(lambda: found.extend(root.glob("smoke_fast/*/w-*/seed*/trial.yaml")) or found, 120, "the trial folder")
    return found[0].parent



# ---- a rank that fails after result.json is written (issue 12, item 8) ---------------------------------


def test_a_trial_is_done_once_its_result_is_written_whatever_the_exit_codes(tmp_path):
    (tmp_path / "result.json").write_text(json.dumps({
        "setting": {"benchmark": "smoke_fast", "backbone": "r50", "pretrain": "densecl", "overrides": ""}, "seed": 0,
        "metrics": {"AP50": 1.5, "AP": 0.5, "AP75": 0.25}}))  # fmt: skip
    assert local.verdict(tmp_path, [0, 1], stopping=False) == "done"
    assert local.verdict(tmp_path, [-9, 0], stopping=True) == "done"
    (tmp_path / "result.json").write_text('{"setting": {"benchmark": "smoke_fast", "backbone": "r50", "pretrain": "den')
    assert local.verdict(tmp_path, [0, 1], stopping=False) == "failed"  # a truncated result is no result
    (tmp_path / "result.json").unlink()
    assert local.verdict(tmp_path, [0, 1], stopping=False) == "failed"
    assert local.verdict(tmp_path, [0, 75], stopping=False) == "stopped"  # 75: a rank stopped on request
    assert local.verdict(tmp_path, [-9, -9], stopping=True) == "stopped"


TEARDOWN_FAILS = """\
import atexit, os, pathlib, sys, time

def _fail_after_the_result():
    trial = pathlib.Path(sys.argv[-1])
    while not (trial / "result.json").exists():
        time.sleep(0.05)
    os._exit(3)

if os.environ.get("RANK") == "1" and os.environ.get("XFER_LAUNCHER_PID"):
    atexit.register(_fail_after_the_result)
"""


@pytest.mark.slow
def test_a_rank_failing_in_teardown_after_the_result_leaves_the_trial_done(tmp_path, smoke_fast_made):
    """Rank 1 of a real 2-process trial exits with status 3 as it shuts down, once result.json exists (a
    ``sitecustomize`` on PYTHONPATH, which Python imports at start-up, registers that exit)."""
    smoke_fast_made(tmp_path / 'out')  # its inputs made (tests/conftest.py): this test is about how trials run
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(TEARDOWN_FAILS)
    run = launch(*SMOKE, "seed=0", "cluster.devices=2", "cluster.gpus_per_trial=2", "+d2.SOLVER.MAX_ITER=4",
                 f"output_root={tmp_path / 'out'}", env={"PYTHONPATH": f"{hooks}{os.pathsep}{REPO}"})  # fmt: skip
    assert run.returncode == 0, run.output[-3000:]
    ((path, r),) = results_under(tmp_path / "out").items()
    assert "after result.json was written; the trial is done" in run.stdout and ", 3] after" in run.stdout
    assert not (path.parent / "failure.json").exists() and r["run"]["world_size"] == 2
    rows = status.scan([tmp_path / "out"])
    assert [s.state for s in rows] == ["done"]
