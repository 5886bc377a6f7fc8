"""Which methods a report compares: each against its group's baseline (scratch, else supervised, else
supervised_tv, or the one named), every pair on request, and the line naming the groups without a baseline.
Oracles: the pairs counted by hand, differences of means from ``statistics``, p-values from
``scipy.stats.ttest_ind(equal_var=False)`` on the hand-written numbers, all computed here."""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from scipy.stats import ttest_ind

from tests.conftest import REPO, launch
from xfer.report import collect, comparisons, formats, results, stats

METRICS = ("AP50", "AP", "AP75")
# AP50 of each method's three seeds, by group; AP and AP75 are AP50 shifted and spread apart (see ``values``).
VOC_R50 = {"scratch": [70.0, 71.0, 72.5], "supervised": [80.0, 80.5, 81.5], "densecl": [82.0, 82.4, 83.1],
           "moco_v1": [81.0, 81.2, 81.9]}  # fmt: skip
VOC_R101 = {"supervised_tv": [81.1, 81.9, 82.0], "supervised": [81.5, 81.6, 82.6], "densecl": [83.0, 83.9, 84.1]}
SMOKE_R50 = {"supervised_tv": [60.0, 61.0, 62.0], "densecl": [64.0, 66.5, 65.0]}
NO_BASELINE = {"densecl": [50.0, 51.0, 52.5], "moco_v1": [49.0, 50.5, 50.0]}  # smoke/r101: nothing to compare with


def values(ap50: float, seed: int) -> dict[str, float]:
    return {"AP50": ap50, "AP": ap50 - 25 + 0.3 * seed, "AP75": ap50 - 18 - 0.2 * seed * seed}


def weights_id(pretrain: str, backbone: str, checkpoint: int = 0) -> str:
    return "none" if pretrain == "scratch" else hashlib.sha256(f"{pretrain}{backbone}{checkpoint}".encode()).hexdigest()[:12]


def written(root: Path, bench: str, backbone: str, pretrain: str, seed: int, metrics: dict[str, float],
            checkpoint: int = 0) -> None:  # fmt: skip
    """A finished trial's result.json, in the trial's folder, as the runner writes it."""
    wid = weights_id(pretrain, backbone, checkpoint)
    folder = root / bench / f"{backbone}_{pretrain}" / f"w-{wid}" / f"seed{seed}"
    folder.mkdir(parents=True)
    record = {"setting": {"benchmark": bench, "backbone": backbone, "pretrain": pretrain, "overrides": "",
                          "weights": wid, "label": pretrain},
              "seed": seed, "trials_expected": 3, "metric_names": list(metrics), "metrics": metrics}  # fmt: skip
    (folder / "result.json").write_text(json.dumps(record))


def sweep(root: Path, groups: dict[tuple[str, str], dict[str, list[float]]]) -> list[results.Row]:
    for (bench, backbone), methods in groups.items():
        for pretrain, ap50s in methods.items():
            for seed, ap50 in enumerate(ap50s):
                written(root, bench, backbone, pretrain, seed, values(ap50, seed))
    return results.summarize(results.read_trials([root]))


GROUPS = {("voc0712_c4_24k", "r50"): VOC_R50, ("voc0712_c4_24k", "r101"): VOC_R101, ("smoke", "r50"): SMOKE_R50,
          ("smoke", "r101"): NO_BASELINE}  # fmt: skip


def composed_config(*overrides: str):
    """conf/config.yaml composed by Hydra with ``overrides``, as a launch composes it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def column(ap50s: list[float], m: str) -> list[float]:
    return [values(v, seed)[m] for seed, v in enumerate(ap50s)]


def by_pair(compared) -> dict[tuple[str, str, str], comparisons.Comparison]:
    return {(c.group, c.b, c.a): c for c in compared}


def test_each_method_is_compared_with_scratch_else_supervised_else_supervised_tv(tmp_path):
    compared = comparisons.compare(sweep(tmp_path, GROUPS))
    assert compared.mode == "baseline" and compared.baselines == {
        "smoke/r50": "supervised_tv", "voc0712_c4_24k/r101": "supervised", "voc0712_c4_24k/r50": "scratch"}
    assert set(by_pair(compared)) == {
        ("voc0712_c4_24k/r50", "densecl", "scratch"), ("voc0712_c4_24k/r50", "moco_v1", "scratch"),
        ("voc0712_c4_24k/r50", "supervised", "scratch"),  # scratch first: supervised is a method here
        ("voc0712_c4_24k/r101", "densecl", "supervised"), ("voc0712_c4_24k/r101", "supervised_tv", "supervised"),
        ("smoke/r50", "densecl", "supervised_tv")}  # fmt: skip
    assert compared.no_baseline == ("smoke/r101",) and not compared.ambiguous and not compared.other_metrics
    for (group, method, base), c in by_pair(compared).items():
        mine = {"voc0712_c4_24k/r50": VOC_R50, "voc0712_c4_24k/r101": VOC_R101, "smoke/r50": SMOKE_R50}[group]
        assert c.metric_names == METRICS
        for m in METRICS:
            b, a = column(mine[method], m), column(mine[base], m)
            assert c.diff[m] == pytest.approx(statistics.fmean(b) - statistics.fmean(a), abs=1e-12)  # method − baseline
            assert c.p[m] == pytest.approx(ttest_ind(b, a, equal_var=False).pvalue, rel=1e-12)


def test_densecl_against_scratch_by_hand(tmp_path):
    """AP50: densecl 82.0, 82.4, 83.1 (mean 82.5), scratch 70.0, 71.0, 72.5 (mean 71.1667): +11.3333."""
    c = by_pair(comparisons.compare(sweep(tmp_path, {("voc0712_c4_24k", "r50"): VOC_R50})))[
        ("voc0712_c4_24k/r50", "densecl", "scratch")]
    assert round(c.diff["AP50"], 4) == 11.3333
    assert c.p["AP50"] == pytest.approx(ttest_ind([82.0, 82.4, 83.1], [70.0, 71.0, 72.5], equal_var=False).pvalue)


def test_the_baseline_named_replaces_the_automatic_choice(tmp_path):
    compared = comparisons.compare(sweep(tmp_path, GROUPS), baseline="densecl")
    assert compared.baseline == "densecl" and set(compared.baselines.values()) == {"densecl"}
    assert sorted((c.group, c.b) for c in compared) == [
        ("smoke/r101", "moco_v1"), ("smoke/r50", "supervised_tv"), ("voc0712_c4_24k/r101", "supervised"),
        ("voc0712_c4_24k/r101", "supervised_tv"), ("voc0712_c4_24k/r50", "moco_v1"),
        ("voc0712_c4_24k/r50", "scratch"), ("voc0712_c4_24k/r50", "supervised")]  # fmt: skip
    assert all(c.a == "densecl" for c in compared) and not compared.no_baseline
    c = by_pair(compared)[("voc0712_c4_24k/r50", "scratch", "densecl")]
    assert c.diff["AP50"] == pytest.approx(statistics.fmean(VOC_R50["scratch"]) - statistics.fmean(VOC_R50["densecl"]))
    missing = comparisons.compare(sweep(tmp_path / "again", GROUPS), baseline="byol")
    assert not missing and missing.no_baseline == ("smoke/r101", "smoke/r50", "voc0712_c4_24k/r101",
                                                  "voc0712_c4_24k/r50")  # fmt: skip


def test_every_pair_only_on_request(tmp_path):
    """voc0712_c4_24k/r50 has 4 methods: 4·3/2 = 6 pairs, against 3 (each but scratch, against scratch);
    r101's 3 methods: 3 pairs against 2; smoke/r50's 2: 1 and 1; smoke/r101's 2: 1 pair, none without a baseline."""
    rows = sweep(tmp_path, GROUPS)
    every, against = comparisons.compare(rows, "all"), comparisons.compare(rows)
    count = lambda cs, g: sum(c.group == g for c in cs)  # noqa: E731
    assert [count(every, g) for g in ("voc0712_c4_24k/r50", "voc0712_c4_24k/r101", "smoke/r50", "smoke/r101")] == [
        6, 3, 1, 1]  # fmt: skip
    assert [count(against, g) for g in ("voc0712_c4_24k/r50", "voc0712_c4_24k/r101", "smoke/r50", "smoke/r101")] == [
        3, 2, 1, 0]  # fmt: skip
    assert every.mode == "all" and not every.no_baseline
    pairs = {(c.b, c.a) for c in every if c.group == "voc0712_c4_24k/r50"}
    assert pairs == {("supervised", "scratch"), ("densecl", "scratch"), ("moco_v1", "scratch"),
                     ("moco_v1", "densecl"), ("supervised", "densecl"), ("supervised", "moco_v1")}  # fmt: skip
    c = by_pair(every)[("voc0712_c4_24k/r50", "supervised", "moco_v1")]
    b, a = column(VOC_R50["supervised"], "AP75"), column(VOC_R50["moco_v1"], "AP75")
    assert c.p["AP75"] == pytest.approx(ttest_ind(b, a, equal_var=False).pvalue, rel=1e-12)


def test_a_group_without_a_baseline_is_named_in_one_line_with_how_to_choose_one(tmp_path):
    sweep(tmp_path / "in", GROUPS)
    report = collect.collect([tmp_path / "in"], tmp_path / "out", plots=False)
    lines = report.markdown.splitlines()
    said = [line for line in lines if "smoke/r101" in line and not line.startswith("| smoke/r101_")]
    assert said == ["No baseline (scratch / supervised / supervised_tv: no finished trial) in 1 group(s), not compared: "
                    "smoke/r101; choose the baseline with `--baseline NAME` (`collect.baseline=NAME` in a launch), or "
                    "compare every pair with `--compare all` (`collect.compare=all`)."]  # fmt: skip
    assert ("Comparisons (difference of means, Welch's t-test, two-sided), each method against its group's baseline "
            "(scratch, else supervised, else supervised_tv), method − baseline:") in lines
    assert "| group | method − baseline | ΔAP50 | ΔAP | ΔAP75 |" in lines
    assert any(line.startswith("| voc0712_c4_24k/r50 | densecl − scratch | +11.33 (p = ") for line in lines)
    got = json.loads((tmp_path / "out" / "results.json").read_text())
    assert got["compared"] == {"mode": "baseline", "baseline": None, "no_baseline": ["smoke/r101"], "ambiguous": {},
                               "baselines": {"smoke/r50": "supervised_tv", "voc0712_c4_24k/r101": "supervised",
                                             "voc0712_c4_24k/r50": "scratch"}, "other_metrics": []}  # fmt: skip
    assert {(c["b"], c["a"]) for c in got["comparisons"] if c["group"] == "voc0712_c4_24k/r50"} == {
        ("densecl", "scratch"), ("moco_v1", "scratch"), ("supervised", "scratch")}
    every = formats.markdown(report.rows, comparisons.compare(report.rows, "all"))
    assert "No baseline" not in every and "| group | b − a | ΔAP50 | ΔAP | ΔAP75 |" in every


def test_two_checkpoints_of_the_baseline_and_other_metrics_are_left_out_and_named(tmp_path):
    for seed, ap50 in enumerate([80.0, 81.0]):
        written(tmp_path, "smoke", "r50", "supervised", seed, values(ap50, seed))
        written(tmp_path, "smoke", "r50", "supervised", seed, values(ap50 + 1, seed), checkpoint=1)
        written(tmp_path, "smoke", "r50", "densecl", seed, values(ap50 + 2, seed))
        written(tmp_path, "voc0712_c4_24k", "r50", "scratch", seed, values(ap50 - 10, seed))
        written(tmp_path, "voc0712_c4_24k", "r50", "densecl", seed, {"box_AP": 40.0 + seed})  # another evaluator
    rows = results.summarize(results.read_trials([tmp_path]))
    compared = comparisons.compare(rows)
    assert not compared and compared.ambiguous == {"smoke/r50": tuple(sorted(
        (weights_id("supervised", "r50"), weights_id("supervised", "r50", 1))))}  # fmt: skip
    assert compared.other_metrics == ("voc0712_c4_24k/r50_densecl",) and not compared.no_baseline
    text = formats.markdown(rows, compared)
    assert "Not compared: smoke/r50: its baseline was measured with 2 checkpoints (w-" in text
    assert "Not compared (other metrics than their group's baseline): voc0712_c4_24k/r50_densecl." in text


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, of the constant side
def test_the_batch_welch_test_is_scipys_for_each_pair():
    pairs = [([1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 10.0, 14.0]), ([82.6, 82.7, 82.5], [81.0, 81.4, 80.9]),
             ([1.0, 2.0], [3.0, 5.0]), ([2.0, 2.0], [2.0, 2.0]), ([1.0], [1.0, 2.0]), ([3.0, 3.0, 3.0], [1.0, 2.0, 4.0]),
             ([40.0, 41.0, 39.5], [38.0, 38.5, 39.0])]  # fmt: skip
    got = stats.welch_ps(pairs)
    assert got[3] is None and got[4] is None  # no spread on either side; one trial
    for (a, b), p in zip(pairs, got, strict=True):
        if p is not None:
            assert p == pytest.approx(ttest_ind(b, a, equal_var=False).pvalue, rel=1e-12)
    assert [stats.welch_p(a, b) for a, b in pairs] == got


@pytest.mark.launch
def test_the_options_of_the_command_line_and_of_a_launch(tmp_path):
    sweep(tmp_path / "in", GROUPS)
    cli = [sys.executable, "-m", "xfer", "collect", str(tmp_path / "in"), "--no-plots"]
    run = subprocess.run([*cli, "--compare", "all"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0 and "| voc0712_c4_24k/r50 | supervised − moco_v1 |" in run.stdout, run.stderr
    run = subprocess.run([*cli, "--baseline", "moco_v1"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0 and "| voc0712_c4_24k/r50 | densecl − moco_v1 |" in run.stdout, run.stderr
    for bad, says in ((["--compare", "pairs"], "error: --compare 'pairs': one of baseline, all"),
                      (["--compare", "all", "--baseline", "scratch"], "error: --baseline scratch chooses the baseline "
                       "of --compare baseline; --compare all compares every pair of methods: drop one of the two")):  # fmt: skip
        run = subprocess.run([*cli, *bad], cwd=REPO, capture_output=True, text=True)
        assert run.returncode == 2 and run.stderr.startswith(says), run.stderr
    assert collect.options(composed_config()) == {"compare": "baseline", "baseline": None}
    assert collect.options(composed_config("collect.compare=all")) == {"compare": "all", "baseline": None}
    assert collect.options(composed_config("collect.baseline=supervised")) == {"compare": "baseline",
                                                                               "baseline": "supervised"}
    with pytest.raises(ValueError, match=r"^collect.compare='every': one of baseline, all"):
        collect.options(composed_config("collect.compare=every"))
    both = "^collect.baseline=scratch chooses the baseline of collect.compare=baseline; collect.compare=all compares"
    with pytest.raises(ValueError, match=both):  # each option as it is written on the command line
        collect.options(composed_config("collect.compare=all", "collect.baseline=scratch"))


@pytest.mark.launch
def test_a_launch_refuses_a_bad_compare_before_anything_runs(tmp_path):
    run = launch("-m", "benchmark=smoke_fast", "seed=0", "collect.compare=every", "plan=true", f"output_root={tmp_path}")
    assert run.returncode == 2 and "collect.compare='every': one of baseline, all" in run.stderr, run.output[-2000:]
    assert not list(tmp_path.rglob("result.json"))
