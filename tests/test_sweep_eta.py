"""The sweep's ETA (``xfer.report.schedule``): schedules worked out by hand, and the same through ``status`` from
trial folders and the launch's ``sweep.json``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_results import DENSECL, REGIONCL, trial
from xfer.report import schedule, status
from xfer.store import sweeps
from xfer.store.identity import IDENTITY

VOC = ("voc0712_c4_24k", "r50")


def test_running_trials_hold_their_groups_and_the_rest_go_longest_first():
    """2 groups. Running: A ends in 300 s, by its own ETA. Waiting: two trials of 1,000 iterations at the median
    pace of the finished trials (0.4, 0.5, 0.9 s/it: 0.5), 500 s each. By hand: B starts at 0 on the free group
    and ends at 500, C starts when A ends (300) and ends at 800."""
    trials = [schedule.Left("done", VOC, s_per_iter=p) for p in (0.4, 0.5, 0.9)]
    trials += [schedule.Left("running", VOC, 800, 1000, eta_s=300.0, s_per_iter=0.5)]
    trials += [schedule.Left("to run", VOC, None, 1000) for _ in range(2)]
    eta = schedule.sweep_eta(trials, groups=2)
    assert (eta.seconds, eta.trials, eta.unpriced, eta.groups) == (800.0, 3, 0, 2)
    assert schedule.makespan([500.0, 500.0], 2, busy=[300.0]) == 800.0


def test_never_below_the_longest_trial_left_and_partial_trials_count_what_is_left():
    """8 groups, one trial of 24,000 iterations at 0.8 s/it with 4,000 done: 16,000 s, however many groups."""
    trials = [schedule.Left("done", VOC, s_per_iter=0.8), schedule.Left("partial", VOC, 4000, 24000)]
    trials += [schedule.Left("queued", VOC, None, 100) for _ in range(3)]
    assert schedule.sweep_eta(trials, groups=8).seconds == 16000.0


def test_without_a_finished_trial_the_running_pace_prices_the_waiting_and_one_group_is_the_sum():
    trials = [schedule.Left("running", VOC, 10, 110, eta_s=None, s_per_iter=2.0),  # 100 left at its own 2 s/it
              schedule.Left("to run", VOC, None, 50),  # 100 s at the running pace
              schedule.Left("to run", ("coco_c4_1x", "r50"), None, 50)]  # no pace for COCO: left out, counted  # fmt: skip
    eta = schedule.sweep_eta(trials, groups=1)
    assert (eta.seconds, eta.trials, eta.unpriced) == (300.0, 3, 1)
    assert status.eta_line(eta) == "sweep ETA 5m00s (3 trial(s) left, 1 at a time, 1 without a pace yet)"


def test_status_gives_the_sweeps_eta_from_the_folders_and_sweep_json(tmp_path, monkeypatch):
    """Two finished trials (100 and 300 s for 24,000 iterations: a median 200 s / 24,000 it), one partial at
    12,000 of 24,000 (100 s left), two never started whose length the launch's identity.json gives (200 s
    each); 2 trials at a time as sweep.json says. By hand: 200 -> group A (200), 200 -> group B (200),
    100 -> A (300)."""
    monkeypatch.chdir(tmp_path)
    root = Path("sweep")
    for seed, (metrics, wall) in enumerate((((82.6, 58.3, 64.6), 100.0), ((82.5, 58.2, 64.7), 300.0))):
        done = trial(root, DENSECL, seed, metrics)
        record = json.loads((done / "result.json").read_text())
        record["run"].update(iterations_run=24000, max_iter=24000, wall_time_s=wall)
        (done / "result.json").write_text(json.dumps(record))
    partial = trial(root, REGIONCL, 0)
    (partial / "last_checkpoint").write_text("model_0011999.pth")
    for seed in (1, 2):
        trial(root, REGIONCL, seed)
    (partial.parent / IDENTITY).write_text(json.dumps({"recipe": {"SOLVER.MAX_ITER": 24000}}))
    sweeps.write(root / "voc0712_c4_24k", sweeps.SweepRecord("python launch.py -m", "local", "GPU", 1, 2, 0.0))
    dirs = [root / "voc0712_c4_24k"]
    eta = status.sweep_eta(status.scan(dirs), status.groups_of(dirs))
    assert (eta.seconds, eta.trials, eta.unpriced, eta.groups) == (300.0, 3, 0, 2)
    assert status.groups_of([root]) == 2  # `status` of the output root: its sweep folders' sweep.json
    sweeps.write(root / "voc0712_c4_24k", sweeps.SweepRecord("python launch.py -m", "local", "GPU", 1, 1, 0.0))
    assert status.sweep_eta(status.scan(dirs), status.groups_of(dirs)).seconds == 500.0  # one group: the sum
