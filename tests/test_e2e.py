"""End to end through the real launch.py: real detectron2 training and VOC evaluation on tiny data."""

from __future__ import annotations

import csv
import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, launch, results_under

pytestmark = pytest.mark.slow
SETTINGS = {"smoke/r50_densecl", "smoke/r50_regioncl_d"}


def converted_weights(result: dict) -> dict[str, np.ndarray]:
    """The detectron2 weights a trial trained from (the converted pickle its result.json names)."""
    return pickle.loads(Path(result["weights"]["converted"]).read_bytes())["model"]


def first_losses(metrics: Path) -> dict[str, float]:
    """The losses of the first record detectron2 wrote to metrics.json (no timings, no learning rate)."""
    first = json.loads(metrics.read_text().splitlines()[0])
    losses = {k: v for k, v in first.items() if "loss" in k}
    assert "total_loss" in losses and "loss_cls" in losses, first
    return losses


def test_smoke_sweep_trains_evaluates_and_tabulates(smoke_sweep):
    out, run = smoke_sweep
    results = results_under(out)
    assert len(results) == 4
    assert {(r["setting"]["key"], r["seed"]) for r in results.values()} == {(s, i) for s in SETTINGS for i in (0, 1)}
    for path, r in results.items():
        assert path.parent.name == f"seed{r['seed']}"
        assert set(r["metrics"]) == {"AP50", "AP", "AP75"}
        assert all(math.isfinite(v) and 0 <= v <= 100 for v in r["metrics"].values()), r["metrics"]
        assert r["run"]["start_iter"] == 0 and r["run"]["max_iter"] == 10 and r["run"]["iterations_run"] == 10
        assert r["run"]["world_size"] == 1
        assert r["versions"]["detectron2"] and r["versions"]["torch"] and len(r["config_sha256"]) == 64
        iters = [json.loads(line)["iteration"] for line in (path.parent / "metrics.json").read_text().splitlines()]
        assert iters[-1] == 9  # detectron2 ran all 10 iterations (0-based)
        assert (
            r["weights"]["layout"]
            == {"smoke/r50_densecl": "openselfsup", "smoke/r50_regioncl_d": "openselfsup"}[r["setting"]["key"]]
        )
    # the two methods start from different weights, so their trials differ: in the converted weights, and in
    # the losses detectron2 logged (same seed, same data: only the weights differ; timings left out)
    seed0 = {r["setting"]["key"]: (p.parent, r) for p, r in results.items() if r["seed"] == 0}
    weights = {key: converted_weights(r) for key, (_, r) in seed0.items()}
    a, b = weights["smoke/r50_densecl"], weights["smoke/r50_regioncl_d"]
    assert set(a) == set(b) and any(not np.array_equal(a[k], b[k]) for k in a)
    losses = {key: first_losses(trial / "metrics.json") for key, (trial, _) in seed0.items()}
    assert losses["smoke/r50_densecl"] != losses["smoke/r50_regioncl_d"], losses
    table = (out / "smoke" / "table.md").read_text()
    for key in SETTINGS:
        assert f"| {key} | 2/5 |" in table  # 2 of the benchmark's 5 trials
    assert "| smoke/r50 | regioncl_d − densecl |" in table  # the Welch comparison
    assert table in run.stdout
    with open(out / "smoke" / "trials.csv") as f:
        tidy = list(csv.DictReader(f))
    assert len(tidy) == 4 and {row["state"] for row in tidy} == {"done"}
    for path, r in results.items():
        (row,) = [t for t in tidy if t["path"] == str(path.parent)]
        assert float(row["AP50"]) == pytest.approx(r["metrics"]["AP50"]) and int(row["seed"]) == r["seed"]
    for name in ("results.json", "table.tex", "table.html", "ap.png", "ap.svg", "curves.png", "curves.svg"):
        assert (out / "smoke" / name).stat().st_size > 0, name


@pytest.mark.parametrize("seeds", ["seed=0-1", "seed=range(0,2)", "seed=0,1"])
def test_rerun_trains_nothing(smoke_sweep, seeds):
    out, _ = smoke_sweep
    watched = [p for p in out.rglob("*") if p.name in ("metrics.json", "result.json", "model_final.pth")]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched}
    run = launch("-m", "benchmark=smoke", "pretrain=densecl,regioncl", seeds, f"output_root={out}")
    assert run.returncode == 0, run.output[-3000:]
    assert "4 trials, 4 done already, 0 to run" in run.output  # every seed syntax names the same 4 trials
    assert "Starting training" not in run.output
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched} == before


def test_collect_rebuilds_the_table_from_disk(smoke_sweep):
    out, _ = smoke_sweep
    table = (out / "smoke" / "table.md").read_text()
    (out / "smoke" / "table.md").unlink()
    proc = subprocess.run([sys.executable, "-m", "xfer", "collect", str(out / "smoke")], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (out / "smoke" / "table.md").read_text() == table and table in proc.stdout


def test_unfinished_trial_resumes_from_its_last_checkpoint(tmp_path):
    args = ("benchmark=smoke", "pretrain=moco_v2_200ep", "seed=7", f"output_root={tmp_path}",
            "trial.keep_checkpoints=all")  # the periodic checkpoints stay, to simulate a trial killed after one
    assert launch(*args).returncode == 0
    (trial,) = (tmp_path / "smoke" / "r50_moco_v2_200ep").glob("w-*/seed7")
    first = json.loads((trial / "result.json").read_text())
    assert first["weights"]["layout"] == "moco"
    # simulate a trial killed after its iteration-5 checkpoint
    for name in ("result.json", "model_final.pth", "model_0000009.pth"):
        (trial / name).unlink()
    (trial / "last_checkpoint").write_text("model_0000004.pth")
    run = launch(*args)
    assert run.returncode == 0, run.output[-3000:]
    assert "resuming from iteration 5" in (trial / "log.txt").read_text()
    resumed = json.loads((trial / "result.json").read_text())
    assert resumed["run"]["start_iter"] == 5 and resumed["run"]["iterations_run"] == 5


def test_supervised_msra_and_r101(tmp_path):
    run = launch("-m", "benchmark=smoke", "backbone=r101", "pretrain=supervised", "seed=0", f"output_root={tmp_path}")
    assert run.returncode == 0, run.output[-3000:]
    (r,) = results_under(tmp_path).values()
    assert r["setting"]["key"] == "smoke/r101_supervised" and r["weights"]["layout"] == "msra"
    (folder,) = (tmp_path / "smoke" / "r101_supervised").glob("w-*/seed0")
    cfg = (folder / "d2_config.yaml").read_text()
    assert "DEPTH: 101" in cfg and "FORMAT: BGR" in cfg
    log = (folder / "log.txt").read_text()
    missing = log.split("not found in the checkpoint:\n")[1].split("\n[")[0].splitlines()
    backbone = [m for m in missing if m.startswith(("backbone.", "roi_heads.res5.")) and ".norm." not in m]
    assert not backbone, backbone  # every conv came from the weights
    # MSRA pickles carry BN scale and bias but no running statistics, as detectron2's R-50.pkl
    assert all(m.endswith(".norm.{running_mean, running_var}") for m in missing if m.startswith("backbone.")), missing


def test_both_evaluators_give_the_same_ap_on_the_same_trial(tmp_path):
    """trial.evaluator=detectron2 runs detectron2's PascalVOCDetectionEvaluator on the identical training, and it
    scores it exactly as xfer's evaluator (the default) does. Whatever the AP of 10 random iterations is (often 0):
    equality is the oracle here; tests/test_voc_eval.py compares the two on detections of known, non-zero AP."""
    metrics = {}
    for evaluator in ("xfer", "detectron2"):
        args = ["benchmark=smoke", "pretrain=regioncl", "seed=1", f"output_root={tmp_path / evaluator}"]
        run = launch(*args, *([] if evaluator == "xfer" else ["trial.evaluator=detectron2"]))
        assert run.returncode == 0, run.output[-3000:]
        ((path, r),) = results_under(tmp_path / evaluator).items()
        assert r["run"]["evaluator"] == evaluator
        # detectron2's evaluator says so in the trial's log; xfer's does not
        ran = "Evaluating voc_2007_test using 2007 metric" in (path.parent / "log.txt").read_text()
        assert ran == (evaluator == "detectron2"), evaluator
        metrics[evaluator] = r["metrics"]
    assert set(metrics["xfer"]) == {"AP50", "AP", "AP75"}
    assert metrics["xfer"] == pytest.approx(metrics["detectron2"], abs=1e-9)
