"""``pretrain=scratch``: random init, no checkpoint at all (``pretrain.weights`` null).

Oracles from outside the code under test: detectron2's own ``build_model`` under the same seed (the
initialisation a scratch trial must start from), the folders and files the real launch.py leaves on disk,
detectron2's ``metrics.json``, and trial folders written here by hand for the comparison order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from tests.conftest import REPO, launch, results_under
from xfer import d2compat
from xfer.report import comparisons, results
from xfer.report.formats import markdown
from xfer.store import identity
from xfer.trial import checks, runner

SWEEP = ("-m", "benchmark=smoke_fast", "pretrain=scratch,densecl", "seed=0")


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def first_losses(trial_dir: Path) -> dict[str, float]:
    """The losses of iteration 0, as detectron2's JSONWriter wrote them."""
    first = json.loads((trial_dir / "metrics.json").read_text().splitlines()[0])
    assert first["iteration"] == 0
    return {k: v for k, v in first.items() if k.startswith("loss") or k == "total_loss"}


# --- without training ---------------------------------------------------------------------------------------------


def test_no_weights_means_pretrain_weights_null_and_its_id_is_none(tmp_path):
    cache = f"paths.cache={tmp_path / 'cache'}"
    scratch = composed("pretrain=scratch", cache)
    custom_null = composed("pretrain=custom", "pretrain.weights=null", cache)
    densecl = composed("pretrain=densecl", cache)
    unresolvable = composed("pretrain=custom", "pretrain.weights=${nowhere.at_all}", cache)
    assert [identity.no_weights(c) for c in (scratch, custom_null, densecl, unresolvable)] == [True, True, False, False]
    assert runner.weights_sha256(scratch) == runner.weights_sha256(custom_null) == identity.NO_WEIGHTS == "none"
    assert not (tmp_path / "cache").exists()  # no file read, no digest kept
    folder = identity.trial_dir(tmp_path, "r50_scratch", runner.weights_sha256(scratch), 0)
    assert folder == tmp_path / "r50_scratch" / "w-none" / "seed0"
    # A path that cannot be resolved is not random init: the check names it.
    assert any("no weights path" in p for p in checks.problems(unresolvable, here=False))


def test_launch_checks_of_scratch_name_the_datasets_but_never_weights(tmp_path):
    overrides = ("pretrain=scratch", "trial.device=cpu", f"paths.datasets={tmp_path / 'none'}",
                 f"paths.cache={tmp_path / 'cache'}")  # fmt: skip
    found = checks.problems(composed(*overrides), here=False)
    assert len(found) == 3 and all(p.startswith("dataset voc_") for p in found), found  # the datasets, as usual
    assert not (tmp_path / "cache").exists()  # nothing hashed or converted
    ckpt = tmp_path / "ckpt.pth"
    ckpt.write_bytes(b"x")  # format none with a checkpoint: refused, with the fix
    (msg,) = [p for p in checks.problems(composed(*overrides, f"pretrain.weights={ckpt}"), here=False)
              if not p.startswith("dataset ")]  # fmt: skip
    assert "pretrain.format=none means no checkpoint" in msg and "pretrain.weights=null" in msg


def written(root: Path, name: str, weights: str, seed: int, ap50: float) -> None:
    """A finished trial's result.json as a trial writes it (setting with its weights id)."""
    folder = root / "voc0712_c4_24k" / f"r50_{name}" / f"w-{weights}" / f"seed{seed}"
    folder.mkdir(parents=True)
    record = {"setting": {"benchmark": "voc0712_c4_24k", "backbone": "r50", "pretrain": name, "overrides": "",
                          "weights": weights, "label": name},
              "seed": seed, "trials_expected": 2, "metrics": {"AP50": ap50, "AP": ap50 - 20, "AP75": ap50 - 15}}  # fmt: skip
    (folder / "result.json").write_text(json.dumps(record))


def test_a_row_without_weights_is_always_side_a_of_its_comparisons(tmp_path):
    for seed in (0, 1):
        written(tmp_path, "scratch", "none", seed, 70.0 + seed)
        written(tmp_path, "densecl", "b9f8abcb15a0", seed, 82.0 + seed)
        written(tmp_path, "moco_v1", "0123456789ab", seed, 81.0 + seed)
        written(tmp_path, "aaa_rand", "none", seed, 69.0 + seed)  # pretrain=custom pretrain.weights=null
    rows = results.summarize(results.read_trials([tmp_path]))
    pairs = [(c.b, c.a) for c in comparisons.compare(rows, "all")]
    assert pairs == [("scratch", "aaa_rand"), ("densecl", "aaa_rand"), ("moco_v1", "aaa_rand"),
                     ("densecl", "scratch"), ("moco_v1", "scratch"), ("moco_v1", "densecl")]  # fmt: skip
    by_pair = {(c.b, c.a): c for c in comparisons.compare(rows, "all")}
    assert by_pair[("densecl", "scratch")].diff["AP50"] == pytest.approx(12.0)  # pretrained − scratch
    table = markdown(rows, comparisons.compare(rows, "all"))
    assert "| voc0712_c4_24k/r50 | densecl − scratch |" in table and "| voc0712_c4_24k/r50_scratch | 2/2 |" in table


# --- real smoke trials ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch_sweep(tmp_path_factory) -> Path:
    """The brief's sweep, one seed: scratch and densecl, trained for real (10 iterations each)."""
    out = tmp_path_factory.mktemp("scratch")
    run = launch(*SWEEP, f"output_root={out}")
    assert run.returncode == 0, run.output[-4000:]
    return out


@pytest.mark.slow
def test_a_scratch_trial_trains_from_no_checkpoint(scratch_sweep):
    smoke = scratch_sweep / "smoke_fast"
    folder = smoke / "r50_scratch" / "w-none" / "seed0"
    result = json.loads((folder / "result.json").read_text())
    assert result["weights"] == {"source": None, "sha256": "none", "converted": None, "layout": "none", "depth": None,
                                 "tensors": 0, "dropped": {}}  # fmt: skip
    assert result["setting"]["weights"] == "none" and result["setting"]["pretrain"] == "scratch"
    assert yaml.safe_load((folder / "d2_config.yaml").read_text())["MODEL"]["WEIGHTS"] == ""
    log = (folder / "log.txt").read_text()
    assert "verified: all" not in log
    assert "random init: no pretrained weights" in log
    (densecl,) = (smoke / "r50_densecl").glob("w-*/seed0")
    assert "verified: all 265 pretrained tensors loaded" in (densecl / "log.txt").read_text()
    cache = scratch_sweep / "_cache"
    made = sorted(p.name for p in (cache / "smoke_fast" / "weights").iterdir() if not p.name.endswith((".lock", ".spec")))
    assert made == ["densecl_r50.pth"]  # no checkpoint generated for scratch
    assert len(list((cache / "converted").glob("*.safetensors"))) == 1  # densecl's, nothing for scratch
    # Same seed, same heads (built alike), another backbone: the first iteration's losses differ.
    assert first_losses(folder) != first_losses(densecl)


@pytest.mark.slow
def test_the_table_compares_densecl_with_scratch_and_shows_weights_none(scratch_sweep):
    smoke = scratch_sweep / "smoke_fast"
    table = (smoke / "table.md").read_text()
    assert "| smoke_fast/r50 | densecl − scratch |" in table
    (row,) = [line for line in table.splitlines() if line.startswith("| smoke_fast/r50_scratch |")]
    assert row.startswith("| smoke_fast/r50_scratch | 1/5 |") and row.endswith("| — | — | none |")
    everything = json.loads((smoke / "results.json").read_text())
    assert [(c["b"], c["a"]) for c in everything["comparisons"]] == [("densecl", "scratch")]
    (setting,) = [s for s in everything["settings"] if s["pretrain"] == "scratch"]
    assert setting["weights"] == "none" and setting["label"] == "no pretraining, random init"
    assert "no pretraining, R50, random init & 1 &" in (smoke / "table.tex").read_text()
    assert "smoke_fast/r50_scratch,smoke_fast,r50,scratch,,none,0,done," in (smoke / "trials.csv").read_text()


@pytest.mark.slow
def test_scratch_launched_again_trains_nothing_and_plans_the_next_seed(scratch_sweep):
    out = f"output_root={scratch_sweep}"
    again = launch(*SWEEP, out)
    assert again.returncode == 0, again.output[-3000:]
    assert "2 trials, 2 done already, 0 to run" in again.output and "Starting training" not in again.output
    assert len(results_under(scratch_sweep)) == 2
    planned = launch("-m", "benchmark=smoke_fast", "pretrain=scratch,densecl", "seed=0-1", "plan=true", out)
    assert planned.returncode == 0, planned.output[-3000:]
    assert "| smoke_fast/r50_scratch | done | to run |" in planned.output
    assert "4 trials: 2 done, 2 to run" in planned.output


@pytest.mark.slow
def test_a_scratch_trial_starts_from_detectron2s_own_initialisation(tmp_path):
    """Oracle: detectron2's ``build_model`` after ``seed_all_rng(SEED)``, as its trainers do. With the learning
    rate 0, training leaves every conv weight as it started, so ``model_final.pth`` holds the initial ones."""
    run = launch("-m", "benchmark=smoke_fast", "pretrain=scratch", "seed=3", "+d2.SOLVER.BASE_LR=0.0",
                 f"output_root={tmp_path}")  # fmt: skip
    assert run.returncode == 0, run.output[-4000:]
    ((path, _),) = results_under(tmp_path).items()
    d2compat.ensure()  # detectron2 without its compiled part needs xfer's compat layer first
    import torch
    from detectron2.config import CfgNode
    from detectron2.modeling import build_model
    from detectron2.utils.env import seed_all_rng

    from xfer.trial import roi_heads  # noqa: F401  registers the recipe's ROI head with detectron2

    cfg = CfgNode.load_cfg((path.parent / "d2_config.yaml").read_text())
    assert cfg.MODEL.WEIGHTS == "" and cfg.SEED == 3

    def initial(seed: int) -> dict[str, torch.Tensor]:
        seed_all_rng(seed)
        state = build_model(cfg).state_dict()
        return {k: v for k, v in state.items() if v.ndim == 4}  # every conv weight, backbone and res5

    trained = torch.load(path.parent / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    expected, other_seed = initial(3), initial(4)
    assert len(expected) > 50 and "backbone.res4.0.conv2.weight" in expected
    assert not torch.equal(expected["backbone.res4.0.conv2.weight"], other_seed["backbone.res4.0.conv2.weight"])
    differ = [k for k, v in expected.items() if not torch.equal(trained[k], v)]
    assert not differ, differ[:5]
