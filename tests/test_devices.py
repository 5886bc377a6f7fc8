"""The launcher plans and submits without importing torch (``xfer.trial.devices``), and still counts GPUs as
torch does: with the machine's GPUs visible, and with the suite's ``CUDA_VISIBLE_DEVICES=""`` (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from hashlib import sha256

import pytest

from tests.conftest import REPO, host_env, imported, launch
from xfer.trial import devices

TORCH_COUNT = "import torch; print(torch.cuda.device_count())"


@pytest.mark.launch
@pytest.mark.parametrize("gpus", [False, True], ids=["gpus-hidden", "machine-gpus"])
def test_gpu_count_is_torchs_and_skips_torch_without_a_driver(gpus):
    code = ("import sys; from xfer.trial import devices; n = devices.gpu_count(); had = 'torch' in sys.modules; "
            "import torch; print(n, torch.cuda.device_count(), had, devices._driver_present())")  # fmt: skip
    env = host_env() if gpus else dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, env=env)
    ours, torchs, had, driver = out.stdout.split()
    assert ours == torchs  # torch's answer, whatever this machine has
    if not gpus:
        assert ours == "0"  # CUDA_VISIBLE_DEVICES="" hides every GPU from CUDA
    if driver == "False":  # no GPU driver here (CI): the answer came without torch's 1-2 s start-up
        assert had == "False"


@pytest.mark.launch
def test_plan_of_a_cached_sweep_imports_no_torch(tmp_path):
    sweep = ["-m", "benchmark=smoke_fast", "backbone=r50,r101", "pretrain=densecl,moco_v1", "seed=0-1", "plan=true",
             f"output_root={tmp_path}"]  # fmt: skip
    first = launch(*sweep)  # generates the smoke data and weights and converts them: needs torch
    assert first.returncode == 0, first.output[-3000:]
    again = launch(*sweep, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert again.returncode == 0, again.output[-3000:]
    modules = imported(again)
    assert "hydra" in modules and "xfer.launch.sweep" in modules  # the probe works
    assert not {"torch", "detectron2"} & modules  # the suite hides the GPUs (conftest): no torch even with a driver
    assert "8 trials: 8 to run; 1 cpu device(s) per trial" in again.stdout


@pytest.mark.launch
def test_a_family_is_checked_on_its_first_trial_still_to_run(tmp_path, smoke_fast_made):
    """Seeds of a setting are checked once; a finished seed 0 must not let seed 1's problem through."""
    smoke_fast_made(tmp_path)
    args = ("-m", "benchmark=smoke_fast", "pretrain=densecl", "pretrain.format=bogus", "seed=0-1", f"output_root={tmp_path}")
    assert launch(*args, "plan=true").returncode == 2  # makes the smoke weights: their hash is a level of the folder
    weights = tmp_path / "_cache" / "smoke_fast" / "weights" / "densecl_r50.pth"
    done = tmp_path / "smoke_fast" / "r50_densecl,pretrain.format=bogus" / f"w-{sha256(weights.read_bytes()).hexdigest()[:12]}"
    done_record = {"setting": {"benchmark": "smoke_fast", "backbone": "r50", "pretrain": "densecl"},
                   "metrics": {"AP50": 1.0, "AP": 0.5, "AP75": 0.0}}  # fmt: skip
    (done / "seed0").mkdir(parents=True)
    (done / "seed0" / "result.json").write_text(json.dumps(done_record))
    run = launch(*args)
    assert run.returncode == 2, run.output[-3000:]
    assert "pretrain.format='bogus' is not one of" in run.stderr
    assert run.stderr.count("pretrain.format='bogus'") == 1


@pytest.mark.launch
def test_a_local_plan_fills_the_gpus_torch_sees(tmp_path, smoke_fast_made):
    """With the machine's GPUs visible: one trial per GPU torch counts; none visible: one CPU slot."""
    smoke_fast_made(tmp_path)
    count = subprocess.run([sys.executable, "-c", TORCH_COUNT], capture_output=True, text=True, check=True,
                           env=host_env())  # fmt: skip
    n = int(count.stdout)
    run = launch("-m", "benchmark=smoke_fast", "seed=0-1", "cluster.gpus_per_trial=1", "plan=true",
                 f"output_root={tmp_path}", gpus=True)  # fmt: skip
    assert run.returncode == 0, run.output[-3000:]
    per_trial = f"1 GPU device(s) per trial, {n} trial(s) at a time" if n else "1 cpu device(s) per trial, 1 trial(s)"
    assert f"2 trials: 2 to run; {per_trial}" in run.stdout, run.stdout


@pytest.mark.parametrize("value, hidden", [("", True), (" ", True), ("-1", True), ("-1,0", True), ("0", False),
                                           ("0,1", False), ("GPU-5f2c", False), (None, False)])  # fmt: skip
def test_a_visible_devices_list_naming_no_gpu_answers_without_torch(monkeypatch, value, hidden):
    """CUDA reads CUDA_VISIBLE_DEVICES up to its first invalid (negative) id: "" and "-1" leave no GPU, so
    torch's count is 0 whatever driver is loaded, and the launcher need not import torch to learn it."""
    if value is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert devices._hidden_by_env() is hidden
    if hidden:
        assert devices.gpu_count() == 0
