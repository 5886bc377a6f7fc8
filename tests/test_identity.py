"""A trial's identity includes its weights by content: another checkpoint trains anew, a copy does not.

Oracles: sha256 from hashlib over the files' bytes, checkpoints written here with torch (one tensor
perturbed), result and trial files written by hand, and the folders the real launch.py leaves on disk.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, launch, results_under
from xfer.report import collect, results

SMOKE = ("-m", "benchmark=smoke_fast", "pretrain=densecl", "seed=0")


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def perturbed(src: Path, dst: Path, by: float = 0.5) -> Path:
    """``src`` with one tensor changed: the same layout and shapes, other content."""
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    state = ckpt["state_dict"]
    key = next(k for k in state if k.endswith("conv1.weight"))
    state[key] = state[key] + by
    torch.save(ckpt, dst)
    return dst


@pytest.mark.slow
def test_another_checkpoint_trains_anew_and_a_copy_of_the_first_is_done_already(tmp_path):
    out = f"output_root={tmp_path}"
    first = launch(*SMOKE, out)
    assert first.returncode == 0, first.output[-3000:]
    ((path_a, a),) = results_under(tmp_path).items()
    weights_a = Path(a["weights"]["source"])
    assert a["weights"]["sha256"] == sha(weights_a) and a["setting"]["weights"] == sha(weights_a)[:12]
    assert path_a.parent == tmp_path / "smoke_fast" / "r50_densecl" / f"w-{sha(weights_a)[:12]}" / "seed0"

    copy = shutil.copy(weights_a, tmp_path / "elsewhere.pth")
    again = launch(*SMOKE, f"pretrain.weights={copy}", out)
    assert again.returncode == 0, again.output[-3000:]
    assert "1 trials, 1 done already, 0 to run" in again.output and "Starting training" not in again.output

    b_file = perturbed(weights_a, tmp_path / "epoch200.pth")
    second = launch(*SMOKE, f"pretrain.weights={b_file}", out)
    assert second.returncode == 0, second.output[-3000:]
    assert "1 trials, 0 done already, 1 to run" in second.output, second.output[-3000:]
    found = results_under(tmp_path)
    assert len(found) == 2
    (path_b,) = set(found) - {path_a}
    b = found[path_b]
    assert b["weights"]["sha256"] == sha(b_file) != sha(weights_a) and b["weights"]["source"] == str(b_file)
    assert b["run"]["start_iter"] == 0 and "resuming" not in (path_b.parent / "log.txt").read_text()
    assert json.loads((path_a).read_text()) == a  # the first weights' result is untouched

    rows = results.summarize(results.read_trials([tmp_path / "smoke_fast"]))
    assert sorted((r.key, r.setting.weights, r.n) for r in rows) == sorted(
        [("smoke_fast/r50_densecl", sha(weights_a)[:12], 1), ("smoke_fast/r50_densecl", sha(b_file)[:12], 1)])
    table = (tmp_path / "smoke_fast" / "table.md").read_text()
    assert f"| {sha(weights_a)[:12]} |" in table and f"| {sha(b_file)[:12]} |" in table

    # The trial runner checks the content its folder was chosen for: weights rewritten after the launch
    # (a SLURM job still queued, say) are refused, not trained into the old folder.
    from omegaconf import OmegaConf

    from xfer.trial import runner
    from xfer.trial.checks import InputError

    job = yaml.safe_load((path_b.parent / "trial.yaml").read_text())
    assert job["cfg"]["pretrain"]["sha256"] == sha(b_file)
    perturbed(weights_a, b_file, by=1.5)  # same path, other content (and a new mtime)
    with pytest.raises(InputError, match="changed since the launch"):
        runner.setup(OmegaConf.create(job["cfg"]), path_b.parent, job["overrides"])


@pytest.mark.launch
@pytest.mark.parametrize("multirun", [True, False])
def test_missing_weights_stop_the_launch_before_any_trial_folder(tmp_path, multirun):
    missing = tmp_path / "nope" / "ckpt.pth"
    run = launch(*(["-m"] if multirun else []), "benchmark=voc0712_c4_24k", "trial.device=cpu",
                 f"pretrain.weights={missing}", f"output_root={tmp_path / 'out'}")  # fmt: skip
    assert run.returncode == 2, run.output[-3000:]
    assert f"weights not found at {missing}" in run.stderr and run.stderr.count("weights not found") == 1
    assert "XFER_WEIGHTS" not in run.stderr  # a path of the user's: a folder to take defaults from would not help
    assert "Traceback" not in run.output
    folders = [p for p in (tmp_path / "out").rglob("*") if p.is_dir() and "_cache" not in p.parts]
    assert folders == [tmp_path / "out" / "voc0712_c4_24k"], folders  # the sweep folder, no trial in it


def test_a_digest_is_read_once_and_kept_on_disk(tmp_path):
    """Planning again must not read a checkpoint of hundreds of MB: the digest is kept on disk under the file's
    state. Shown by an entry changed behind the file's back: a fresh process answers it, so it did not read the
    file. A damaged entry is computed again; and content rewritten at the same size with the old modification
    time put back (as ``cp -p``, ``rsync -t`` and ``tar`` do) is a new state, read again."""
    ckpt, store = tmp_path / "ckpt.pth", tmp_path / "digests"
    ckpt.write_bytes(b"A" * 4096)
    code = "import sys; from pathlib import Path; from xfer.store import digests; " \
           "print(digests.file_sha256(Path(sys.argv[1]), Path(sys.argv[2])))"  # fmt: skip

    def fresh() -> str:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.run([sys.executable, "-c", code, str(ckpt), str(store)], capture_output=True, text=True,
                              check=True, env=env).stdout.strip()  # fmt: skip

    first = hashlib.sha256(b"A" * 4096).hexdigest()
    assert fresh() == first
    (entry,) = store.iterdir()
    entry.write_text(entry.read_text().replace(first, "f" * 64))
    assert fresh() == "f" * 64  # from the store: the file was not read again
    entry.write_text(entry.read_text()[:40])  # damaged (a truncated entry): read the file
    assert fresh() == first and entry.read_text().startswith(first)
    st = ckpt.stat()
    ckpt.write_bytes(b"B" * 4096)
    os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (ckpt.stat().st_size, ckpt.stat().st_mtime_ns, ckpt.stat().st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    assert fresh() == hashlib.sha256(b"B" * 4096).hexdigest()


def written(root: Path, pretrain: str, seed: int, metrics: tuple, sha256: str | None) -> Path:
    """A finished trial as the stages leave it; ``sha256`` None is a result.json of an older xfer."""
    folder = root / "smoke" / f"r50_{pretrain}" / (f"w-{sha256[:12]}" if sha256 else "") / f"seed{seed}"
    folder.mkdir(parents=True)
    record = {"setting": {"benchmark": "smoke", "backbone": "r50", "pretrain": pretrain, "overrides": "",
                          "label": pretrain, **({"weights": sha256[:12]} if sha256 else {})},
              "seed": seed, "trials_expected": 5, "published": None,
              "metrics": dict(zip(("AP50", "AP", "AP75"), metrics, strict=True)),
              "weights": {"source": "x.pth", **({"sha256": sha256} if sha256 else {})}}  # fmt: skip
    (folder / "result.json").write_text(json.dumps(record))
    return folder


def test_collect_keeps_two_checkpoints_of_one_pretrain_apart_and_reads_old_results(tmp_path):
    ep100, ep200 = "1" * 64, "2" * 64
    for seed, m in enumerate([(80.0, 50.0, 55.0), (81.0, 51.0, 56.0)]):
        written(tmp_path, "mine", seed, m, ep100)
    for seed, m in enumerate([(82.0, 52.0, 57.0), (83.0, 53.0, 58.0)]):
        written(tmp_path, "mine", seed, m, ep200)
    written(tmp_path, "densecl", 0, (79.0, 49.0, 54.0), None)  # an older xfer's result: no hash
    written(tmp_path, "densecl", 1, (78.0, 48.0, 53.0), None)
    report = collect.collect([tmp_path / "smoke"], plots=False, compare="all")  # no baseline here: every pair
    lines = {line for line in report.markdown.splitlines() if line.startswith("| smoke/")}
    assert any(line.startswith("| smoke/r50_mine | 2/5 | 80.50 ") and line.endswith("| 111111111111 |") for line in lines)
    assert any(line.startswith("| smoke/r50_mine | 2/5 | 82.50 ") and line.endswith("| 222222222222 |") for line in lines)
    assert any(line.startswith("| smoke/r50_densecl | 2/5 | 78.50 ") and line.endswith("| ? |") for line in lines)
    comparisons = {line.split(" | ")[1] for line in report.markdown.splitlines() if line.startswith("| smoke/r50 |")}
    assert comparisons == {"mine w-111111111111 − densecl", "mine w-222222222222 − densecl",
                           "mine w-222222222222 − mine w-111111111111"}  # fmt: skip
    with open(tmp_path / "smoke" / "trials.csv") as f:
        weights = sorted((r["pretrain"], r["seed"], r["weights"]) for r in csv.DictReader(f))
    assert weights == [("densecl", "0", ""), ("densecl", "1", ""), ("mine", "0", "111111111111"),
                       ("mine", "0", "222222222222"), ("mine", "1", "111111111111"), ("mine", "1", "222222222222")]
    settings = json.loads((tmp_path / "smoke" / "results.json").read_text())["settings"]
    assert sorted((s["pretrain"], s["weights"]) for s in settings) == [
        ("densecl", None), ("mine", "111111111111"), ("mine", "222222222222")]


def test_an_unfinished_trial_is_listed_with_its_weights(tmp_path):
    folder = tmp_path / "smoke" / "r50_mine" / "w-333333333333" / "seed0"
    folder.mkdir(parents=True)
    cfg = {"benchmark": {"name": "smoke", "trials": 5}, "backbone": {"name": "r50"},
           "pretrain": {"name": "mine", "sha256": "3" * 64}, "seed": 0}  # fmt: skip
    (folder / "trial.yaml").write_text(yaml.safe_dump({"cfg": cfg, "overrides": ""}))
    (t,) = results.read_trials([tmp_path])
    assert t.state == "to run" and t.setting == results.Setting("smoke", "r50", "mine", "", "333333333333")


@pytest.mark.launch
@pytest.mark.parametrize("sweep", ["trial.evaluator=xfer,detectron2", "cluster.stop_grace_s=10,20"])
def test_a_sweep_over_how_trials_run_is_refused(tmp_path, smoke_fast_made, sweep):
    """Such options name no setting, so the jobs of that sweep would share one folder: refused, not run."""
    smoke_fast_made(tmp_path)
    run = launch("-m", "benchmark=smoke_fast", "seed=0", sweep, "plan=true", f"output_root={tmp_path}")
    assert run.returncode == 2 and "cluster.* and trial.* say how the whole sweep runs" in run.stderr, run.output[-2000:]
