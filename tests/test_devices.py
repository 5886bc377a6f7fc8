"""The launcher plans and submits without importing torch (``xfer.devices``), and still counts GPUs as
torch does."""

from __future__ import annotations

import json
import subprocess
import sys
from hashlib import sha256

from tests.conftest import REPO, imported, launch


def test_gpu_count_is_torchs_and_skips_torch_without_a_driver():
    code = ("import sys; from xfer import devices; n = devices.gpu_count(); had = 'torch' in sys.modules; "
            "import torch; print(n, torch.cuda.device_count(), had, devices._driver_present())")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    ours, torchs, had, driver = out.stdout.split()
    assert ours == torchs
    if driver == "False":  # no GPU driver here (CI): the answer came without torch's 1-2 s start-up
        assert had == "False"


def test_plan_of_a_cached_sweep_imports_no_torch(tmp_path):
    sweep = ["-m", "benchmark=smoke", "backbone=r50,r101", "pretrain=densecl,moco_v1", "seed=0-1", "plan=true",
             f"output_root={tmp_path}"]  # fmt: skip
    first = launch(*sweep)  # generates the smoke data and weights and converts them: needs torch
    assert first.returncode == 0, first.output[-3000:]
    again = launch(*sweep, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert again.returncode == 0, again.output[-3000:]
    modules = imported(again)
    assert "hydra" in modules and "xfer.sweep" in modules  # the probe works
    assert not {"torch", "detectron2"} & modules
    assert "8 trials: 8 to run; 1 cpu device(s) per trial" in again.stdout


def test_a_family_is_checked_on_its_first_trial_still_to_run(tmp_path):
    """Seeds of a setting are checked once; a finished seed 0 must not let seed 1's problem through."""
    args = ("-m", "benchmark=smoke", "pretrain=densecl", "pretrain.format=bogus", "seed=0-1", f"output_root={tmp_path}")
    assert launch(*args, "plan=true").returncode == 2  # makes the smoke weights: their hash is a level of the folder
    weights = tmp_path / "_cache" / "smoke" / "weights" / "densecl_r50.pth"
    done = tmp_path / "smoke" / "r50_densecl,pretrain.format=bogus" / f"w-{sha256(weights.read_bytes()).hexdigest()[:12]}"
    (done / "seed0").mkdir(parents=True)
    (done / "seed0" / "result.json").write_text(json.dumps({"metrics": {}}))
    run = launch(*args)
    assert run.returncode == 2, run.output[-3000:]
    assert "pretrain.format='bogus' is not one of" in run.stderr
    assert run.stderr.count("pretrain.format='bogus'") == 1
