"""plan=true's estimate: device-hours and the wall time of the trials left, against numbers worked out by hand
from trial folders written here (result.json of finished trials, detectron2's last_checkpoint of partial ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xfer.launch import plan
from xfer.report.schedule import makespan


def entry(root: Path, key: str, seed: int, backbone: str = "r50", max_iter: int = 1000,
          default: float | None = None) -> plan.Entry:  # fmt: skip
    folder = root / key / f"seed{seed}"
    folder.mkdir(parents=True)
    return plan.Entry(key, backbone, seed, folder, max_iter, default)


def finish(e: plan.Entry, wall_time_s: float, world_size: int, iterations: int) -> None:
    run = {"wall_time_s": wall_time_s, "world_size": world_size, "iterations_run": iterations, "max_iter": e.max_iter}
    bench, name = e.key.split("/")
    setting = {"benchmark": bench, "backbone": e.backbone, "pretrain": name.split("_", 1)[1]}
    record = {"setting": setting, "run": run, "metrics": {"AP50": 1.0, "AP": 1.0, "AP75": 1.0}}
    (e.dir / "result.json").write_text(json.dumps(record))


def checkpoint(e: plan.Entry, name: str) -> None:
    (e.dir / "last_checkpoint").write_text(name)


def test_makespan_is_the_longest_first_schedule():
    assert makespan([], 4) == 0
    assert makespan([5.0], 8) == 5.0  # one trial takes its own time, however many groups wait
    assert makespan([5.0, 1.0], 8) == 5.0
    # LPT on 2 groups: 3->A, 3->B, 2->A (5), 2->B (5), 2->A (7). (The best schedule is 6: 3+3 | 2+2+2.)
    assert makespan([2.0, 3.0, 2.0, 3.0, 2.0], 2) == 7.0
    assert makespan([2.0, 3.0, 2.0, 3.0, 2.0], 1) == 12.0  # one group: the sum
    assert makespan([4.0, 4.0], 0) == 8.0  # no group known (a problem the checks name): one


def test_one_trial_left_on_one_of_eight_gpus_takes_its_own_time(tmp_path):
    """The issue's case: 24k iterations at the benchmark's 0.8 GPU-s/iter, 1 GPU per trial, 8 at a time."""
    e = entry(tmp_path, "voc0712_c4_24k/r50_densecl", 0, max_iter=24000, default=0.8)
    text = plan.render([e], 1, 8, "GPU")
    assert "estimate: 5.33 GPU-hours of training left (5h20m), about 5h20m of wall time" in text, text
    cost = plan.estimate([e], devices_per_trial=1, at_once=8)
    assert cost.device_hours == pytest.approx(24000 * 0.8 / 3600)  # 19200 GPU-s = 5.33 GPU-hours
    assert cost.wall_s == pytest.approx(19200)  # not 19200 / 8 = 2400 s (40m)


def test_wall_time_schedules_the_trials_left_from_their_folders(tmp_path):
    """Two processes per trial, two trials at a time. By hand:
    r50 pace, measured on the finished trial: 500 s x 2 processes / 1000 iterations = 1.0 device-s/iter.
    r50 partial at model_0000499.pth: 1000 - 500 = 500 iterations left -> 500 device-s -> 250 s on 2 devices.
    r50 to run (two): 1000 device-s each -> 500 s each.
    r101 to run, no finished r101 trial: the benchmark's 3.0 device-s/iter x 1000 = 3000 device-s -> 1500 s.
    r18 to run: no pace at all -> named, left out.
    device-hours: (500 + 1000 + 1000 + 3000) / 3600 = 1.5278.
    LPT over [1500, 500, 500, 250] on 2 groups: 1500 | 500 + 500 + 250 = 1250 -> 1500 s (25m00s); dividing the
    device-seconds by the 4 devices, as before, gave 5500 / 4 = 1375 s, less than the longest trial."""
    done = entry(tmp_path, "smoke/r50_a", 0)
    finish(done, wall_time_s=500, world_size=2, iterations=1000)
    partial = entry(tmp_path, "smoke/r50_a", 1)
    checkpoint(partial, "model_0000499.pth")
    entries = [done, partial, entry(tmp_path, "smoke/r50_a", 2), entry(tmp_path, "smoke/r50_b", 0),
               entry(tmp_path, "smoke/r101_a", 0, backbone="r101", default=3.0),
               entry(tmp_path, "smoke/r18_a", 0, backbone="r18")]  # fmt: skip
    text = plan.render(entries, 2, 2, "GPU")
    assert "| smoke/r50_a | done | partial 500/1000 | to run |" in text, text
    assert "estimate: 1.53 GPU-hours of training left (1h31m), about 25m00s of wall time" in text, text
    cost = plan.estimate(entries, devices_per_trial=2, at_once=2, device="GPU")
    assert cost.device_hours == pytest.approx(5500 / 3600)
    assert cost.wall_s == pytest.approx(1500)
    assert cost.sources == {
        "r50": "1.000 GPU-s/iter, measured on 1 finished trial(s)",
        "r101": "3.000 GPU-s/iter, the benchmark's device_s_per_iter",
        "r18": "no estimate (no finished trial, no device_s_per_iter in the benchmark)",
    }
    # three groups: 1500 | 500 + 250 | 500 -> still the longest trial; one group: the sum, 2750 s
    assert plan.estimate(entries, 2, 3).wall_s == pytest.approx(1500)
    assert plan.estimate(entries, 2, 1).wall_s == pytest.approx(2750)


def test_each_benchmark_keeps_its_own_pace_in_a_sweep_over_several(tmp_path):
    """-m benchmark=smoke,coco_c4_1x: a finished smoke trial's pace (100 s x 1 process / 1000 iterations =
    0.1 device-s/iter) prices the smoke trial left, not the COCO one, which takes its benchmark's 2.3. By hand:
    smoke 1000 x 0.1 = 100 device-s; COCO 90000 x 2.3 = 207000 device-s; (100 + 207000) / 3600 = 57.53 h."""
    done = entry(tmp_path, "smoke/r50_a", 0, default=0.065)
    finish(done, wall_time_s=100, world_size=1, iterations=1000)
    entries = [done, entry(tmp_path, "smoke/r50_a", 1, default=0.065),
               entry(tmp_path, "coco_c4_1x/r50_a", 0, max_iter=90000, default=2.3)]  # fmt: skip
    cost = plan.estimate(entries, devices_per_trial=1, at_once=1, device="GPU")
    assert cost.device_hours == pytest.approx((100 + 207000) / 3600)
    assert cost.sources == {"smoke r50": "0.100 GPU-s/iter, measured on 1 finished trial(s)",
                            "coco_c4_1x r50": "2.300 GPU-s/iter, the benchmark's device_s_per_iter"}  # fmt: skip
