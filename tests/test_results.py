"""Collect against oracles from outside the code: statistics and p-values worked out by hand, every cell of
every format recomputed here (``statistics`` module, the arithmetic written out) from the values written into
trial folders by hand, the seed README's own table, and a simulation of perfect reproductions."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf
from scipy.stats import t as student_t

from tests.conftest import REPO
from xfer.report import collect, comparisons, formats, paper, results, stats, status
from xfer.store import handover
from xfer.trial import runner as runner

SEED_TABLE = REPO / "tests" / "golden" / "seed_table.html"  # the seed README's table block, copied by hand
# Student t 0.975 quantiles by degrees of freedom (printed tables: 2.776, 3.182, 4.303), more digits.
T975 = {4: 2.7764451051977987, 3: 3.182446305284263, 2: 4.302652729911275}
STD = {"AP50": 0.2, "AP": 0.2, "AP75": 0.4}  # the seed's note: "the std ... is expected to be 0.2, 0.2, 0.4"
PUB_DENSECL = {"AP50": 82.7, "AP": 58.5, "AP75": 65.6}  # the seed's table, R50 DenseCL
PUB_REGIONCL = {"AP50": 83.32, "AP": 58.72, "AP75": 65.57}  # the seed's table, R50 RegionCL-D
DENSECL = {"name": "densecl", "label": "ImageNet-1M, DenseCL, 200ep",
           "published": {"voc0712_c4_24k": {"r50": PUB_DENSECL}}}  # fmt: skip
REGIONCL = {"name": "regioncl_d", "label": "ImageNet-1M, RegionCL-D, 200ep",
            "published": {"voc0712_c4_24k": {"r50": PUB_REGIONCL}}}  # fmt: skip
DENSE_VALUES = [(82.64, 58.32, 64.60), (82.64, 58.41, 64.89), (82.50, 58.20, 64.70), (82.80, 58.60, 65.00),
                (82.70, 58.45, 64.95)]  # fmt: skip
REGION_VALUES = [(83.24, 58.84, 65.98), (83.40, 58.60, 65.16), (83.30, 58.70, 65.50)]
METRICS = ("AP50", "AP", "AP75")


def trial(root: Path, pretrain: dict, seed: int, metrics: tuple | None = None, backbone: str = "r50",
                 failed: str = "", corrupt: bool = False, spread: bool = True) -> Path:  # fmt: skip
    """A trial folder as the stages leave it: trial.yaml always, then result.json or failure.json. The
    published record is written out here as the README documents it (the seed's means, ``std``, ``n``)."""
    folder = root / "voc0712_c4_24k" / f"{backbone}_{pretrain['name']}" / f"seed{seed}"
    folder.mkdir(parents=True)
    cfg = {"benchmark": {"name": "voc0712_c4_24k", "trials": 5, "published_std": STD if spread else None},
           "backbone": {"name": backbone}, "pretrain": pretrain, "seed": seed}  # fmt: skip
    (folder / "trial.yaml").write_text(yaml.safe_dump({"cfg": cfg, "overrides": ""}))
    if failed:
        (folder / "failure.json").write_text(json.dumps({"cause": failed}))
    if corrupt:
        (folder / "result.json").write_text('{"setting": {"benchmark": "voc0712_c4_24k", "backb')
    if metrics:
        numbers = pretrain["published"]["voc0712_c4_24k"].get(backbone)
        published = {**numbers, "std": STD, "n": 5} if numbers and spread else numbers
        record = {"setting": {"benchmark": "voc0712_c4_24k", "backbone": backbone, "pretrain": pretrain["name"],
                              "overrides": "", "label": pretrain["label"]},
                  "seed": seed, "trials_expected": 5, "published": published,
                  "metrics": dict(zip(METRICS, metrics, strict=True)),
                  "run": {"wall_time_s": 100.0 + seed, "max_iter": 24000, "world_size": 8}}  # fmt: skip
        (folder / "result.json").write_text(json.dumps(record))
    return folder


@pytest.fixture
def sweep(tmp_path, monkeypatch) -> Path:
    """Trials in every state: done, failed, to run (never started), damaged, and a lone n=1 setting."""
    monkeypatch.chdir(tmp_path)  # relative paths, as a user types them
    root = Path("sweep")
    for seed, m in enumerate(DENSE_VALUES):
        trial(root, DENSECL, seed, m)
    for seed, m in enumerate(REGION_VALUES):
        trial(root, REGIONCL, seed, m)
    trial(root, REGIONCL, 3, failed="FloatingPointError: Loss became infinite or NaN at iteration=9")
    trial(root, REGIONCL, 4)  # planned, never started
    trial(root, REGIONCL, 5, corrupt=True)
    trial(root, DENSECL, 0, (83.57, 61.02, 68.20), backbone="r101")
    return root


# ---- the oracles: arithmetic written out, independent of xfer.report.stats ----


def by_hand(values: list[float]) -> dict:
    """Mean, sample std and 95% Student-t half-width (n = 3 or 5 here), from the statistics module."""
    n, mean = len(values), statistics.fmean(values)
    sd = statistics.stdev(values)
    half = T975[n - 1] * sd / math.sqrt(n)
    return {"mean": mean, "std": sd, "ci95": half, "low": mean - half, "high": mean + half}


def welch_by_hand(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int) -> float:
    """Welch's two-sided p: t = (b − a) / sqrt(va/na + vb/nb), Welch–Satterthwaite df, then the t tail."""
    qa, qb = sd_a**2 / n_a, sd_b**2 / n_b
    t = (mean_b - mean_a) / math.sqrt(qa + qb)
    df = (qa + qb) ** 2 / (qa**2 / (n_a - 1) + qb**2 / (n_b - 1))
    return 2 * student_t.sf(abs(t), df)


def column(values: list[tuple], m: str) -> list[float]:
    return [v[METRICS.index(m)] for v in values]


def markdown_table(text: str) -> dict[str, dict[str, str]]:
    """The first Markdown table of ``text``, by setting and header name (so an added column breaks nothing)."""
    lines = [line for line in text.split("\n\n")[0].splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    header = cells[0]
    return {row[0]: dict(zip(header, row, strict=True)) for row in cells[2:]}


def html_rows(block: str) -> tuple[list[str], dict[str, list[float]]]:
    """Header cells, and each row's name -> its numbers, of a seed-style table block."""
    header = re.findall(r'<th valign="bottom">(.*?)</th>', block)
    rows = re.findall(r'<tr><td align="left">(.*?)</td>\s*((?:<td align="center">.*?</td>\s*)+)</tr>', block)
    return header, {name: [float(x) for x in re.findall(r'<td align="center">(.*?)</td>', tds)] for name, tds in rows}


# ---- statistics ----


def test_statistics_match_hand_computed_values():
    s = stats.summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s.mean == 3.0 and s.std == pytest.approx(math.sqrt(10 / 4))  # squares 4+1+0+1+4 = 10, n − 1 = 4
    assert s.ci95 == pytest.approx(2.776 * math.sqrt(2.5) / math.sqrt(5), rel=1e-3)  # t(0.975, 4) = 2.776
    one = stats.summarize([82.64])
    assert one.mean == 82.64 and one.std is None and one.ci95 is None and one.covers(82.64) is None
    assert stats.welch_p([1.0], [4.0, 5.0]) is None and stats.welch_p([1.0, 1.0], [2.0, 2.0]) is None


def test_the_sample_std_is_the_standard_librarys_bit_for_bit():
    """stats.stdev computes in integers what statistics.stdev computes in Fractions: the same float, for AP-like
    values, values over many orders of magnitude, ties and subnormals; NaN where a value is not finite (where the
    standard library raises AttributeError), and then a summary has no spread."""
    rng = np.random.default_rng(7)
    samples = [[82.64, 82.64, 82.5, 82.8, 82.7], [1.0, 1.0], [0.1, 0.2, 0.3], [5e-324, 1e-310, 0.0], [1e300, -1e300, 3.0]]
    samples += [list(np.round(rng.normal(58, 0.3, n), 4)) for n in (2, 3, 5, 10, 40) for _ in range(200)]
    samples += [list(rng.normal(0, 1, 5) * 10.0 ** rng.integers(-30, 30, 5)) for _ in range(500)]
    for values in samples:
        ours, theirs = stats.stdev([float(v) for v in values]), statistics.stdev([float(v) for v in values])
        assert ours == theirs, values
    assert math.isnan(stats.stdev([math.nan, 1.0])) and math.isnan(stats.stdev([math.inf, 1.0]))
    assert stats.summarize([math.inf, 1.0]).std is None


def test_welch_p_for_unequal_n_and_variances_worked_out_by_hand():
    """a = 1..5: n 5, mean 3, variance 10/4 = 2.5. b = 6, 10, 14: n 3, mean 10, variance (16+0+16)/2 = 16.
    Welch: se² = 2.5/5 + 16/3 = 0.5 + 5.3333 = 5.8333; t = 7 / sqrt(5.8333) = 7 / 2.41523 = 2.89828;
    df = 5.8333² / (0.5²/4 + 5.3333²/2) = 34.0278 / (0.0625 + 14.2222) = 2.38211; p = 2 t.sf(t, df) = 0.0825.
    Student (pooled): s² = (4·2.5 + 2·16) / 6 = 7; t = 7 / sqrt(7 (1/5 + 1/3)) = 3.62284, df 6: p = 0.0111."""
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 10.0, 14.0]
    se2 = 2.5 / 5 + 16 / 3
    t_hand, df_hand = 7 / math.sqrt(se2), se2**2 / ((2.5 / 5) ** 2 / 4 + (16 / 3) ** 2 / 2)
    assert (round(t_hand, 5), round(df_hand, 5)) == (2.89828, 2.38211)
    welch = 2 * student_t.sf(t_hand, df_hand)
    student = 2 * student_t.sf(7 / math.sqrt(7 * (1 / 5 + 1 / 3)), 6)
    assert stats.welch_p(a, b) == pytest.approx(welch, rel=1e-9) and round(welch, 4) == 0.0825
    assert round(student, 4) == 0.0111 and abs(stats.welch_p(a, b) - student) > 0.07  # Student's would differ
    assert stats.welch_p(b, a) == pytest.approx(welch, rel=1e-9)  # two-sided: the order does not matter


# ---- the `*` flag: Welch's test against the published mean as a 5-trial mean with the stated std ----


def row_of(ours: dict[str, list[float]], published: dict | None) -> results.Row:
    setting = results.Setting("voc0712_c4_24k", "r50", "densecl")
    summaries = {m: stats.summarize(v) for m, v in ours.items()}
    return results.Row(setting, "", 5, [], [], summaries, published)


def test_the_flag_p_value_is_worked_out_by_hand():
    """Ours: five trials spread ±0.4, ±0.2, 0 about their mean: variance (0.16+0.04+0+0.04+0.16)/4 = 0.1.
    AP50: ours 82.3, published 82.9 (std 0.2, n 5). se² = 0.1/5 + 0.04/5 = 0.02 + 0.008 = 0.028;
      t = −0.6 / sqrt(0.028) = −3.58569; df = 0.028² / (0.02²/4 + 0.008²/4) = 0.000784 / 0.000116 = 6.75862;
      p = 2 t.sf(3.58569, 6.75862) = 0.0095 -> flagged.
    AP: ours 58.5 = published: t = 0, p = 1.
    AP75: ours 65.1, published 65.6 (std 0.4, n 5). se² = 0.02 + 0.16/5 = 0.052; t = −0.5 / 0.228035 = −2.19265;
      df = 0.052² / (0.02²/4 + 0.032²/4) = 0.002704 / 0.000356 = 7.59551; p = 0.0614 -> not flagged, though
      65.6 lies outside our 95% interval 65.1 ± 2.776·sqrt(0.1/5) = [64.71, 65.49] (the old rule flagged it)."""
    spread = [-0.4, -0.2, 0.0, 0.2, 0.4]
    ours = {"AP50": [82.3 + d for d in spread], "AP": [58.5 + d for d in spread], "AP75": [65.1 + d for d in spread]}
    row = row_of(ours, {"AP50": 82.9, "AP": 58.5, "AP75": 65.6, "std": STD, "n": 5})
    p = row.published_p
    assert p["AP50"] == pytest.approx(2 * student_t.sf(0.6 / math.sqrt(0.028), 0.000784 / 0.000116), rel=1e-6)
    assert p["AP"] == pytest.approx(1.0)
    assert p["AP75"] == pytest.approx(2 * student_t.sf(0.5 / math.sqrt(0.052), 0.002704 / 0.000356), rel=1e-6)
    assert (round(p["AP50"], 4), round(p["AP75"], 4)) == (0.0095, 0.0614)
    assert row.flagged == {"AP50": True, "AP": False, "AP75": False}
    assert row.stats["AP75"].covers(65.6) is False  # outside our interval, yet within both sides' noise
    no_std = row_of(ours, {"AP50": 82.9, "AP": 58.5, "AP75": 65.6})  # an old result.json: nothing to test
    assert no_std.published_p == {"AP50": None, "AP": None, "AP75": None} and not any(no_std.flagged.values())
    assert row_of({m: v[:1] for m, v in ours.items()}, row.published).flagged == {m: False for m in METRICS}


@pytest.mark.launch
def test_the_flag_rarely_fires_at_a_perfect_reproduction():
    """20,000 simulated perfect reproductions: ours and the seed's both 5 trials of N(mu, sd) with the seed's sd
    (0.2 / 0.2 / 0.4), the published side known as its mean and the stated sd, as the seed reports it.
    A test at level 0.05 flags at most 5%; the margin allows Monte-Carlo noise: 3 standard errors of a rate of
    0.05 over 20,000 draws, 3·sqrt(0.05·0.95/20000) = 0.0046. The old rule (published mean outside our
    interval) flags |x̄ − ȳ| > t·s/√5 with x̄ − ȳ ~ N(0, 2σ²/5), i.e. |√2·T₄| > 2.776: 2·P(T₄ > 2.776/√2) = 0.121;
    the simulation must find that too, or it could not tell a bad flag from a good one."""
    rng = np.random.default_rng(20261128)
    draws, mu = 20_000, {"AP50": 82.7, "AP": 58.5, "AP75": 65.6}
    ours = {m: rng.normal(mu[m], STD[m], (draws, 5)) for m in METRICS}
    theirs = {m: rng.normal(mu[m], STD[m], (draws, 5)).mean(axis=1) for m in METRICS}
    new = {m: 0 for m in METRICS}
    old = {m: 0 for m in METRICS}
    for i in range(draws):
        row = row_of({m: ours[m][i].tolist() for m in METRICS},
                     {**{m: float(theirs[m][i]) for m in METRICS}, "std": STD, "n": 5})  # fmt: skip
        for m, flagged in row.flagged.items():
            new[m] += flagged
            old[m] += row.stats[m].covers(float(theirs[m][i])) is False
    margin = 3 * math.sqrt(0.05 * 0.95 / draws)
    expected_old = 2 * student_t.sf(T975[4] / math.sqrt(2), 4)
    old_margin = 4 * math.sqrt(expected_old * (1 - expected_old) / draws)  # 4 standard errors: 0.0092
    assert round(expected_old, 3) == 0.121
    for m in METRICS:
        assert new[m] / draws <= 0.05 + margin, (m, new[m] / draws)
        assert abs(old[m] / draws - expected_old) < old_margin, (m, old[m] / draws)


def test_the_published_spread_reaches_the_trial_record(tmp_path):
    """The real composed config: result.json's ``published`` (trial.published) and an unfinished trial's
    (results from trial.yaml) carry the seed's numbers with the benchmark's std and n = its 5 trials."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["benchmark=voc0712_c4_24k", "pretrain=densecl"])
        smoke = compose(config_name="config", overrides=["benchmark=smoke", "pretrain=densecl"])
    record = runner.published(cfg)
    assert {m: record[m] for m in METRICS} == PUB_DENSECL
    assert record["std"] == STD and record["n"] == 5
    handover.write(tmp_path / "seed0", OmegaConf.to_container(cfg, resolve=True), "", None)  # as a queued trial has it
    queued = results.read_trial(tmp_path / "seed0")
    assert queued.state == "to run" and queued.published == record
    assert "std" not in (runner.published(smoke) or {})  # smoke states no std: nothing to test against


# ---- rows and every format, against values recomputed here ----


def test_rows_count_every_trial_and_flag_the_published_mean(sweep):
    rows = {r.key: r for r in results.summarize(results.read_trials([sweep]))}
    dense, region, lone = (rows[f"voc0712_c4_24k/{k}"] for k in ("r50_densecl", "r50_regioncl_d", "r101_densecl"))
    assert [(r.n, r.expected) for r in (dense, region, lone)] == [(5, 5), (3, 6), (1, 5)]
    assert sorted((t.seed, t.state) for t in region.missing) == [(3, "failed"), (4, "to run"), (5, "damaged")]
    assert "damaged result.json: not JSON" in next(t for t in region.missing if t.state == "damaged").cause
    for m in METRICS:
        hand = by_hand(column(DENSE_VALUES, m))
        assert dense.stats[m].mean == pytest.approx(hand["mean"]) and dense.stats[m].std == pytest.approx(hand["std"])
        assert dense.delta[m] == pytest.approx(hand["mean"] - PUB_DENSECL[m])
        p = welch_by_hand(hand["mean"], hand["std"], 5, PUB_DENSECL[m], STD[m], 5)
        assert dense.published_p[m] == pytest.approx(p, rel=1e-6)
    # AP75: ours 64.828 ± 0.171 against 65.6 ± 0.4 (n 5): t = −3.97, df 5.41, p = 0.0124; AP50 and AP: p > 0.3
    assert dense.flagged == {"AP50": False, "AP": False, "AP75": True}
    assert lone.stats["AP"].std is None and lone.flagged == {}  # no published r101 numbers in this fixture
    (cmp,) = comparisons.compare(list(rows.values()), baseline="densecl")  # no scratch or supervised here
    assert (cmp.group, cmp.a, cmp.b) == ("voc0712_c4_24k/r50", "densecl", "regioncl_d")
    for m in METRICS:  # Welch with n 5 against n 3
        a, b = by_hand(column(DENSE_VALUES, m)), by_hand(column(REGION_VALUES, m))
        assert cmp.diff[m] == pytest.approx(b["mean"] - a["mean"])
        assert cmp.p[m] == pytest.approx(welch_by_hand(a["mean"], a["std"], 5, b["mean"], b["std"], 3), rel=1e-6)


def cell(values: list[float]) -> str:
    h = by_hand(values)
    return f"{h['mean']:.2f} ± {h['std']:.2f} [{h['low']:.2f}, {h['high']:.2f}]"


def test_markdown_cells_are_the_hand_computed_statistics(sweep):
    report = collect.collect([sweep], plots=False)
    text = (sweep / "table.md").read_text()
    assert report.markdown == text
    table = markdown_table(text)
    dense, region, lone = (table[f"voc0712_c4_24k/{k}"] for k in ("r50_densecl", "r50_regioncl_d", "r101_densecl"))
    assert (dense["n"], region["n"], lone["n"]) == ("5/5", "3/6", "1/5")
    for m, header in zip(METRICS, ("AP50 mean ± std [95% CI]", "AP", "AP75"), strict=True):
        assert dense[header] == cell(column(DENSE_VALUES, m)) and region[header] == cell(column(REGION_VALUES, m))
    assert dense["AP50 mean ± std [95% CI]"] == "82.66 ± 0.11 [82.52, 82.79]"  # 82.656, sqrt(0.04752/4), 2.776·sd/√5
    assert lone["AP"] == "61.02 (n=1, no spread)" and lone["published"] == "—"
    assert dense["trials (AP50/AP/AP75)"] == "; ".join("/".join(f"{x:.2f}" for x in v) for v in DENSE_VALUES)
    assert dense["published"] == "82.70/58.50/65.60"
    deltas = [statistics.fmean(column(DENSE_VALUES, m)) - PUB_DENSECL[m] for m in METRICS]
    assert dense["Δ ours − published"] == f"{deltas[0]:+.2f} / {deltas[1]:+.2f} / {deltas[2]:+.2f}*"  # AP75 flagged
    assert "*" not in region["Δ ours − published"]
    assert formats.FLAG_NOTE in text and "Not tested" not in text
    missing = text.split("Not finished (3):\n")[1].split("\n\n")[0].splitlines()
    assert [line.split(": ")[0] for line in missing] == [f"- voc0712_c4_24k/r50_regioncl_d seed{s}" for s in (3, 4, 5)]
    assert "FloatingPointError" in missing[0] and "to run" in missing[1] and "damaged result.json: not JSON" in missing[2]


def test_json_csv_and_latex_carry_the_hand_computed_values(sweep):
    collect.collect([sweep], plots=False)
    settings = {s["key"]: s for s in json.loads((sweep / "results.json").read_text())["settings"]}
    dense, region = settings["voc0712_c4_24k/r50_densecl"], settings["voc0712_c4_24k/r50_regioncl_d"]
    for m in METRICS:
        for got, values in ((dense, DENSE_VALUES), (region, REGION_VALUES)):
            hand = by_hand(column(values, m))
            for k in ("mean", "std", "ci95", "low", "high"):
                assert got["metrics"][m][k] == pytest.approx(hand[k], abs=1e-6), (got["key"], m, k)
        hand = by_hand(column(DENSE_VALUES, m))
        p = welch_by_hand(hand["mean"], hand["std"], 5, PUB_DENSECL[m], STD[m], 5)
        assert dense["metrics"][m]["published_p"] == pytest.approx(p, abs=1e-6)
        assert dense["metrics"][m]["published_differs"] is bool(p < 0.05)
        assert (dense["metrics"][m]["published_std"], dense["metrics"][m]["published_n"]) == (STD[m], 5)
    assert (dense["n"], dense["expected"], region["n"], region["expected"]) == (5, 5, 3, 6)
    assert sorted((t["seed"], t["state"]) for t in region["missing"]) == [(3, "failed"), (4, "to run"),
                                                                           (5, "damaged")]  # fmt: skip
    assert [(t["seed"], t["AP50"]) for t in dense["trials"]] == [(s, v[0]) for s, v in enumerate(DENSE_VALUES)]

    with open(sweep / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and sorted({r["state"] for r in rows}) == ["damaged", "done", "failed", "to run"]
    written = {(r["pretrain"], r["backbone"], int(r["seed"])): r for r in rows}
    for seed, v in enumerate(DENSE_VALUES):
        r = written[("densecl", "r50", seed)]
        assert [float(r[m]) for m in METRICS] == list(v) and r["state"] == "done"
        assert [float(r[f"published_{m}"]) for m in METRICS] == [PUB_DENSECL[m] for m in METRICS]
        assert Path(r["path"]) == sweep / "voc0712_c4_24k" / "r50_densecl" / f"seed{seed}"
    assert not any(r["AP50"] for r in rows if r["state"] != "done")
    assert "FloatingPointError" in written[("regioncl_d", "r50", 3)]["cause"]

    lines = [line.rstrip(" \\") for line in (sweep / "table.tex").read_text().splitlines() if " & " in line]
    header = [c.strip() for c in lines[0].split(" & ")]
    cells = [[c.strip() for c in line.split(" & ")] for line in lines[1:]]
    tex = {r[0]: dict(zip(header, r, strict=True)) for r in cells}
    dense_tex = tex["ImageNet-1M, R50, DenseCL, 200ep"]
    assert dense_tex["$n$"] == "5"
    for m, h in zip(METRICS, ("AP$_{50}$", "AP", "AP$_{75}$"), strict=True):
        hand = by_hand(column(DENSE_VALUES, m))
        assert dense_tex[h] == f"{hand['mean']:.2f} $\\pm$ {hand['std']:.2f}"
    assert tex["ImageNet-1M, R101, DenseCL, 200ep"]["AP"] == "61.02"  # one trial: no ±


def test_seed_style_html_has_the_seeds_own_layout(tmp_path, monkeypatch):
    """The seed README's table (copied by hand into tests/golden/seed_table.html): one trial per row with the
    seed's numbers gives back the seed's header, names and numbers, between the same markers."""
    monkeypatch.chdir(tmp_path)
    seed_block = SEED_TABLE.read_text()
    header, seed_rows = html_rows(seed_block)
    labels = {}
    for path in (REPO / "conf" / "pretrain").glob("*.yaml"):
        conf = yaml.safe_load(path.read_text())
        if "label" in conf:  # (regioncl.yaml only points at regioncl_d)
            labels[conf["label"]] = conf["name"]
    for name, values in seed_rows.items():  # "ImageNet-1M, R50, DenseCL, 200ep" = label with the backbone inserted
        head, backbone, *rest = name.split(", ")
        label = ", ".join([head, *rest])
        pretrain = {"name": labels[label], "label": label, "published": {"voc0712_c4_24k": {}}}
        trial(Path("sweep"), pretrain, 0, tuple(values), backbone=backbone.lower())
    collect.collect([Path("sweep")], plots=False)
    ours = (Path("sweep") / "table.html").read_text()
    assert html_rows(ours) == (header, seed_rows)
    assert ours.startswith(seed_block.split("\n<tr>")[0])  # the markers and header lines, as the seed has them
    assert ours.rstrip("\n").endswith("</tr>\n</tbody></table>")


SEED_README = "# DenseCL\n\n### Results\n\nBelow are the results on Pascal VOC 2007 test:\n\n<table><tbody>\n" + \
    SEED_TABLE.read_text() + "\n\ndenseCL, r50:\n    82.64/58.32/64.60\n"  # fmt: skip


def test_seed_readme_block_is_rewritten_and_nothing_else(sweep, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(SEED_README)
    collect.collect([sweep], plots=False, readme=readme)
    text = readme.read_text()
    before, after = SEED_README.split("<!-- START TABLE -->")[0], SEED_README.split("</tbody></table>")[1]
    assert text.startswith(before) and text.endswith(after)
    _, rows = html_rows(text)
    means = [round(statistics.fmean(column(DENSE_VALUES, m)), 2) for m in METRICS]
    assert rows["ImageNet-1M, R50, DenseCL, 200ep"] == means
    assert set(rows) == {"ImageNet-1M, R50, DenseCL, 200ep", "ImageNet-1M, R50, RegionCL-D, 200ep",
                         "ImageNet-1M, R101, DenseCL, 200ep"}  # fmt: skip
    collect.collect([sweep], plots=False, readme=readme)
    assert readme.read_text() == text  # idempotent
    with pytest.raises(ValueError, match="no table block"):
        paper.rewrite_block(sweep / "table.md", "x")


def test_published_numbers_without_a_std_are_not_tested_and_the_legend_says_so(tmp_path, monkeypatch):
    """An old result.json (published means only): even 0.8 below the published AP50 with a tight spread gives
    no `*`, and the note names the setting."""
    monkeypatch.chdir(tmp_path)
    for seed, d in enumerate([-0.1, 0.0, 0.1]):
        trial(Path("old"), DENSECL, seed, (81.9 + d, 58.5 + d, 65.6 + d), spread=False)
    (row,) = results.summarize(results.read_trials([Path("old")]))
    assert row.flagged == {m: False for m in METRICS} and row.stats["AP50"].covers(82.7) is False
    text = collect.collect([Path("old")], plots=False).markdown
    assert "*" not in markdown_table(text)["voc0712_c4_24k/r50_densecl"]["Δ ours − published"]
    assert "Not tested (the published numbers state no std): voc0712_c4_24k/r50_densecl." in text


# ---- each trial once; conflicts by path ----


def run_collect(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "xfer", "collect", *args, "--no-plots"], capture_output=True,
                          text=True, env=env)  # fmt: skip


@pytest.mark.launch
def test_overlapping_folders_count_each_trial_once(sweep):
    """`collect outputs outputs/voc0712_c4_24k` (the issue's command) and a link to the sweep read each trial
    folder once."""
    proc = run_collect(str(sweep), str(sweep / "voc0712_c4_24k"), "--out", "combined")
    assert proc.returncode == 0, proc.stderr
    table = markdown_table(proc.stdout)
    assert table["voc0712_c4_24k/r50_densecl"]["n"] == "5/5", proc.stdout
    assert table["voc0712_c4_24k/r50_regioncl_d"]["n"] == "3/6"
    assert table["voc0712_c4_24k/r50_densecl"]["AP50 mean ± std [95% CI]"] == cell(column(DENSE_VALUES, "AP50"))
    with open("combined/trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 12
    os.symlink(sweep.resolve(), "alias")
    assert len(results.read_trials([sweep, sweep / "voc0712_c4_24k", Path("alias")])) == 12
    assert [len(r.done) for r in results.summarize(results.read_trials([sweep, Path("alias")]))] == [1, 5, 3]


@pytest.mark.launch
def test_copies_count_once_and_different_results_are_a_conflict_named_by_path(sweep):
    """A second sweep folder holds: an identical copy of densecl seed0, an unfinished copy of seed2 (copied
    mid-run), and seed1 with another result. Seed 0 and 2 count once; seed 1 counts for neither, and every
    view names both folders."""
    other = Path("other")
    dense = Path("voc0712_c4_24k", "r50_densecl")
    shutil.copytree(sweep / dense / "seed0", other / dense / "seed0")
    (other / dense / "seed2").mkdir(parents=True)
    shutil.copy(sweep / dense / "seed2" / "trial.yaml", other / dense / "seed2")
    shutil.copytree(sweep / dense / "seed1", other / dense / "seed1")
    record = json.loads((other / dense / "seed1" / "result.json").read_text())
    record["metrics"]["AP50"] = 90.0
    (other / dense / "seed1" / "result.json").write_text(json.dumps(record))
    a, b = sweep / dense / "seed1", other / dense / "seed1"

    proc = run_collect(str(sweep), str(other), "--out", "combined")
    assert proc.returncode == 0, proc.stderr
    kept = [v for s, v in enumerate(DENSE_VALUES) if s != 1]
    row = markdown_table(proc.stdout)["voc0712_c4_24k/r50_densecl"]
    assert row["n"] == "4/5", proc.stdout
    assert row["AP50 mean ± std [95% CI]"] == cell(column(kept, "AP50"))
    (conflict,) = proc.stdout.split("Conflicts (1)")[1].split("\n\n")[0].splitlines()[1:]
    name, _, copies = conflict.partition(": ")
    assert name == "- voc0712_c4_24k/r50_densecl seed1"
    assert set(copies.split("; ")) == {f"82.64/58.41/64.89 ({a})", f"90.00/58.41/64.89 ({b})"}
    assert "1 with conflicting results" in proc.stdout

    got = {s["key"]: s for s in json.loads(Path("combined/results.json").read_text())["settings"]}
    js = got["voc0712_c4_24k/r50_densecl"]
    assert js["n"] == 4 and [t["seed"] for t in js["trials"]] == [0, 2, 3, 4]
    assert {(c["path"], *c["differs_from"]) for c in js["conflicts"]} == {(str(a), str(b)), (str(b), str(a))}
    assert js["metrics"]["AP50"]["mean"] == pytest.approx(statistics.fmean(column(kept, "AP50")), abs=1e-6)
    with open("combined/trials.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["pretrain"] == "densecl" and r["backbone"] == "r50"]
    assert sorted((r["seed"], r["state"]) for r in rows) == [("0", "done"), ("1", "conflict"), ("1", "conflict"),
                                                            ("2", "done"), ("3", "done"), ("4", "done")]  # fmt: skip
    assert {r["path"] for r in rows if r["state"] == "conflict"} == {str(a), str(b)}

    seen = [s for s in status.scan([sweep, other]) if s.label.startswith("voc0712_c4_24k/r50_densecl ")]
    assert sorted(s.label for s in seen) == [f"voc0712_c4_24k/r50_densecl seed{i}" for i in (0, 1, 1, 2, 3, 4)]
    assert status.counts(seen) == "4 done, 1 conflict"  # one trial, as collect's "1 with conflicting results"
    causes = {s.cause for s in seen if s.cause}
    assert causes == {f"conflict: a different result for this trial at {path}" for path in (a, b)}
    shown = io.StringIO()
    status.console(shown).print(status.table(seen))
    assert str(a) in shown.getvalue() and str(b) in shown.getvalue()


@pytest.mark.launch
def test_collect_cli_combines_sweeps_and_names_a_bad_readme(sweep):
    trial(Path("other"), DENSECL, 7, (82.0, 58.0, 64.0))
    proc = run_collect(str(sweep), "other", "--out", "combined")
    assert proc.returncode == 0, proc.stderr
    assert markdown_table(proc.stdout)["voc0712_c4_24k/r50_densecl"]["n"] == "6/6"
    assert Path("combined/results.json").exists() and not Path("combined/ap.png").exists()
    proc = run_collect(str(sweep), "--readme", "nope.md")
    assert proc.returncode == 2 and "--readme nope.md: no such file" in proc.stderr


def test_an_unreadable_trial_is_named_after_its_setting_folder_not_its_weights_level(tmp_path):
    """A truncated result.json and no trial.yaml: the row is named after <setting>/w-<id>/seed<N> by hand."""
    folder = tmp_path / "smoke" / "r50_densecl" / "w-0123456789ab" / "seed0"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text('{"metrics": {"AP50": 1')
    (t,) = results.read_trials([tmp_path])
    assert t.state == "damaged"
    assert (t.setting.pretrain, t.setting.weights) == ("r50_densecl", "0123456789ab")


@pytest.mark.parametrize("mask_on", [True, False])
def test_a_coco_setting_whose_trials_all_failed_keeps_coco_columns(tmp_path, mask_on):
    """Nothing finished: the row's columns are what its trials would have measured, read from their hand-over
    (trial.yaml, the real composed config): box and mask AP for Mask R-CNN, box AP only with MASK_ON false. Before,
    such a row fell back to VOC's AP50/AP/AP75."""
    from hydra import compose, initialize_config_dir

    overrides = ["benchmark=coco_smoke_fast", "pretrain=densecl"] + ([] if mask_on else ["+d2.MODEL.MASK_ON=false"])
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    for seed in (0, 1):
        folder = tmp_path / "coco_smoke_fast" / "r50_densecl" / f"seed{seed}"
        handover.write(folder, {**OmegaConf.to_container(cfg, resolve=True), "seed": seed}, "", None)
        (folder / "failure.json").write_text(json.dumps({"cause": "FloatingPointError: Loss became infinite"}))
    (row,) = results.summarize(results.read_trials([tmp_path]))
    box = ["box_AP", "box_AP50", "box_AP75"]
    assert row.n == 0 and list(row.metric_names) == box + (["mask_AP", "mask_AP50", "mask_AP75"] if mask_on else [])


@pytest.mark.parametrize("out", ["afile", "afile/sub"])
def test_collect_out_that_cannot_be_a_folder_is_one_line_and_status_2(tmp_path, capsys, out):
    """``--out`` naming a file, or a path through one: the OS refuses the folder (FileExistsError, NotADirectoryError);
    collect says so in one line, status 2, and writes nothing, instead of a traceback."""
    from xfer.__main__ import main

    (tmp_path / "sweep" / "r50_x" / "w-none" / "seed0").mkdir(parents=True)
    (tmp_path / "sweep" / "r50_x" / "w-none" / "seed0" / "trial.yaml").write_text("{}")  # a trial, unfinished
    (tmp_path / "afile").write_text("mine")
    assert main(["collect", str(tmp_path / "sweep"), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {tmp_path / out}: cannot be a folder") and err.count("\n") == 1, err
    assert (tmp_path / "afile").read_text() == "mine" and [p.name for p in (tmp_path / "sweep").iterdir()] == ["r50_x"]


def test_collect_of_a_folder_without_trials_writes_nothing_and_says_so(tmp_path, capsys):
    """A mistyped folder (empty, or the home folder) is not a sweep: one line, status 2, no table files left in it."""
    from xfer.__main__ import main

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("mine")
    assert main(["collect", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.startswith(f"error: no trial under {tmp_path / 'empty'}: nothing to tabulate")
    assert [p.name for p in (tmp_path / "empty").iterdir()] == ["notes.txt"]
