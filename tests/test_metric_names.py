"""Metric names come from the results (``result.json``'s ``metric_names``), not from a fixed AP50/AP/AP75 list.

Trial folders written here by hand: VOC settings (the fixture of ``tests/test_results.py``) beside a COCO-like
benchmark whose trials measured twelve metrics (box and mask AP, AP50, AP75, APs, APm, APl). Oracles: the
statistics worked out by hand (mean, sample std, Student t from printed tables), scipy's Welch test
(``ttest_ind(equal_var=False)``, ``ttest_ind_from_stats``), and the VOC-only report of the same VOC folders
(whose own numbers tests/test_results.py pins by hand).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
from pathlib import Path

import pytest
from scipy.stats import t as student_t
from scipy.stats import ttest_ind, ttest_ind_from_stats

from tests.test_results import DENSE_VALUES, DENSECL, REGION_VALUES, REGIONCL, by_hand, cell, column, trial
from xfer import benchmarks
from xfer.launch import local
from xfer.report import collect, comparisons, formats, plots, results, status
from xfer.store import files, state
from xfer.store.redo import set_aside_damaged
from xfer.trial import runner as runner

REPO = Path(__file__).resolve().parents[1]
COCO = ("box_AP", "box_AP50", "box_AP75", "box_APs", "box_APm", "box_APl",
        "mask_AP", "mask_AP50", "mask_AP75", "mask_APs", "mask_APm", "mask_APl")  # fmt: skip
BENCH = "coco_mask_c4_1x"
BASE = (40.0, 60.0, 43.0, 24.0, 44.0, 52.0, 35.0, 57.0, 37.0, 17.0, 38.0, 50.0)  # densecl's means, one per name
DENSE_COCO = [tuple(b + d for b in BASE) for d in (-1.0, 0.0, 1.0)]  # every metric: std 1
MOCO_COCO = [tuple(b + 0.25 * (j + 1) + d for j, b in enumerate(BASE)) for d in (-2.0, 0.0, 2.0)]  # std 2
PUB_COCO = {"box_AP": 40.5, "mask_AP": 35.0, "std": {"box_AP": 0.3, "mask_AP": 0.3}, "n": 5}  # two names only
VOC_HEADER = ("| setting | n | AP50 mean ± std [95% CI] | AP | AP75 | trials (AP50/AP/AP75) | published "
              "| Δ ours − published | weights |")  # fmt: skip


def coco(root: Path, pretrain: str, seed: int, values: tuple, published: dict | None = None,
         names: tuple[str, ...] = COCO, bench: str = BENCH) -> Path:  # fmt: skip
    """A finished trial of a benchmark that declares its own metrics, written as the trial runner writes
    result.json: sorted keys, so the file's ``metrics`` order is not the order of ``metric_names``."""
    folder = root / bench / f"r50_{pretrain}" / f"seed{seed}"
    folder.mkdir(parents=True)
    record = {"setting": {"benchmark": bench, "backbone": "r50", "pretrain": pretrain, "overrides": "",
                          "label": f"ImageNet-1M, {pretrain}"},
              "seed": seed, "trials_expected": 3, "published": published, "metric_names": list(names),
              "metrics": dict(zip(names, values, strict=True)), "run": {"wall_time_s": 10.0, "max_iter": 90000}}  # fmt: skip
    files.write_json_atomic(folder / "result.json", record)
    return folder


def queued(root: Path, pretrain: str, seed: int) -> Path:
    """A COCO trial the launcher handed over and nothing ran yet: trial.yaml only."""
    folder = root / BENCH / f"r50_{pretrain}" / f"seed{seed}"
    folder.mkdir(parents=True)
    cfg = {"benchmark": {"name": BENCH, "trials": 3}, "backbone": {"name": "r50"},
           "pretrain": {"name": pretrain, "label": pretrain}, "seed": seed}  # fmt: skip
    (folder / "trial.yaml").write_text(json.dumps({"cfg": cfg, "overrides": ""}))  # JSON is YAML
    return folder


def voc_sweep(root: Path) -> Path:
    """The VOC fixture of tests/test_results.py: 5 densecl, 3 regioncl_d (+ failed, unfinished, corrupt), 1 r101."""
    for seed, m in enumerate(DENSE_VALUES):
        trial(root, DENSECL, seed, m)
    for seed, m in enumerate(REGION_VALUES):
        trial(root, REGIONCL, seed, m)
    trial(root, REGIONCL, 3, failed="FloatingPointError: Loss became infinite or NaN at iteration=9")
    trial(root, REGIONCL, 4)
    trial(root, REGIONCL, 5, corrupt=True)
    trial(root, DENSECL, 0, (83.57, 61.02, 68.20), backbone="r101")
    return root


@pytest.fixture
def mixed(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """``voc/``: the VOC sweep. ``coco/``: densecl (3 trials, published box_AP and mask_AP only), mocov2
    (3 trials), byol (queued, nothing finished)."""
    monkeypatch.chdir(tmp_path)
    voc, cc = voc_sweep(Path("voc")), Path("coco")
    for seed, v in enumerate(DENSE_COCO):
        coco(cc, "densecl", seed, v, PUB_COCO)
    for seed, v in enumerate(MOCO_COCO):
        coco(cc, "mocov2", seed, v)
    queued(cc, "byol", 0)
    return voc, cc


def col(values: list[tuple], m: str) -> list[float]:
    """One COCO metric's values over trials."""
    return [v[COCO.index(m)] for v in values]


def tables(text: str) -> list[list[str]]:
    """Every Markdown table of ``text`` (blocks of lines starting with ``|``), as lists of lines."""
    return [block.splitlines() for block in text.split("\n\n") if block.startswith("|")]


def by_setting(table: list[str]) -> dict[str, dict[str, str]]:
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in table]
    return {row[0]: dict(zip(cells[0], row, strict=True)) for row in cells[2:]}


# ---- the contract: result.json names what it measured ----


def test_the_trial_runner_names_what_it_measured_and_the_order_survives_sorted_keys(tmp_path):
    """VOC's list comes from its format (xfer.benchmarks.voc, one with files.VOC_METRICS); result.json is written
    with sorted keys (AP, AP50, AP75), and the names give back the tables' order (AP50, AP, AP75)."""
    voc = benchmarks.of("voc")
    assert voc.METRIC_NAMES == files.VOC_METRICS == ("AP50", "AP", "AP75")
    record = runner.metrics_record(voc.METRIC_NAMES, voc.metrics({"bbox": {"AP": 58.3, "AP50": 82.6, "AP75": 64.6,
                                                                            "APs": 1.0}}))  # fmt: skip
    assert record == {"metric_names": ["AP50", "AP", "AP75"], "metrics": {"AP50": 82.6, "AP": 58.3, "AP75": 64.6}}
    written = {"setting": {"benchmark": "voc0712_c4_24k", "backbone": "r50", "pretrain": "densecl"}, **record}
    files.write_json_atomic(tmp_path / "result.json", written)
    assert list(json.loads((tmp_path / "result.json").read_text())["metrics"]) == ["AP", "AP50", "AP75"]
    done = state.read_result(tmp_path).record
    assert list(files.measured(done).items()) == [("AP50", 82.6), ("AP", 58.3), ("AP75", 64.6)]


def test_an_old_result_without_metric_names_is_done_as_voc_and_pools_with_a_new_one(tmp_path):
    """seed0: written before metric_names existed; seed1: names VOC's three. One setting, n = 2, no conflict."""
    old = trial(tmp_path, DENSECL, 0, (82.0, 58.0, 64.0))
    assert "metric_names" not in json.loads((old / "result.json").read_text())
    new = trial(tmp_path, DENSECL, 1, (83.0, 59.0, 65.0))
    record = json.loads((new / "result.json").read_text())
    (new / "result.json").write_text(json.dumps({**record, "metric_names": ["AP50", "AP", "AP75"]}))
    assert state.of(old).state == "done" and files.metric_names(state.read_result(old).record) == ("AP50", "AP", "AP75")
    (row,) = results.summarize(results.read_trials([tmp_path]))
    assert (row.n, row.conflicts, row.metric_names) == (2, [], ("AP50", "AP", "AP75"))
    assert row.stats["AP"].mean == 58.5 and row.stats["AP75"].std == pytest.approx(math.sqrt(0.5))  # (0.25+0.25)/1


@pytest.mark.parametrize(
    "change,why",
    [
        ({"metric_names": ["AP50", "AP", "AP75", "APs"]}, "no number for APs"),  # named, not measured
        ({"metrics": {"AP50": 82.0, "AP": True, "AP75": 64.0}}, "no number for AP"),  # a bool is no number
        ({"metric_names": ["box_AP"], "metrics": {"box_AP": False}}, "no number for box_AP"),
        ({"metric_names": []}, "metric_names is not a list of distinct names: []"),  # at least one name
        ({"metric_names": "AP50"}, "metric_names is not a list of distinct names: 'AP50'"),
        ({"metric_names": ["AP", "AP"]}, "metric_names is not a list of distinct names"),
        ({"metric_names": None}, "metric_names is not a list of distinct names: None"),
    ],
)
def test_a_result_whose_named_metric_is_missing_or_a_bool_is_damaged(tmp_path, change, why):
    folder = trial(tmp_path, DENSECL, 0, (82.0, 58.0, 64.0))
    record = json.loads((folder / "result.json").read_text())
    (folder / "result.json").write_text(json.dumps({**record, **change}))
    found = state.read_result(folder)
    assert found.kind == "damaged" and why in found.cause
    (t,) = results.read_trials([tmp_path])  # collect agrees with the launcher: not done, and why
    assert t.state == "damaged" and t.cause == found.cause
    redo = set_aside_damaged(folder, found.cause)  # set aside as any damaged result, so the trial runs again
    assert redo is not None and not (folder / "result.json").exists() and why in redo.cause


# ---- one collect, VOC and COCO rows: a table per list of names ----


def test_one_collect_gives_a_table_per_metric_list_with_hand_computed_cells(mixed):
    voc, cc = mixed
    text = collect.collect([voc, cc], out_dir=Path("both"), plots=False).markdown
    (coco_table, voc_table, *comparison_tables) = tables(text)
    assert coco_table[0] == ("| setting | n | box_AP mean ± std [95% CI] | " + " | ".join(COCO[1:])
                             + f" | trials ({'/'.join(COCO)}) | published | Δ ours − published | weights |")  # fmt: skip
    assert coco_table[1] == "|---|---|" + "---|" * 12 + "---|---|---|---|"
    assert voc_table[0] == VOC_HEADER
    rows = by_setting(coco_table)
    assert list(rows) == [f"{BENCH}/r50_byol", f"{BENCH}/r50_densecl", f"{BENCH}/r50_mocov2"]
    dense, moco, byol = rows[f"{BENCH}/r50_densecl"], rows[f"{BENCH}/r50_mocov2"], rows[f"{BENCH}/r50_byol"]
    # n 3, sd 1: half-width t(0.975, 2) / sqrt(3) = 4.303 / 1.732 = 2.484; sd 2: 4.968
    assert dense["box_AP mean ± std [95% CI]"] == "40.00 ± 1.00 [37.52, 42.48]"
    assert dense["mask_APl"] == "50.00 ± 1.00 [47.52, 52.48]"
    assert moco["box_AP mean ± std [95% CI]"] == "40.25 ± 2.00 [35.28, 45.22]"  # 40 + 0.25, values 38.25/40.25/42.25
    assert moco["mask_APl"] == "53.00 ± 2.00 [48.03, 57.97]"  # 50 + 12 · 0.25
    for j, m in enumerate(COCO):
        header = "box_AP mean ± std [95% CI]" if j == 0 else m
        assert dense[header] == cell(col(DENSE_COCO, m)) and moco[header] == cell(col(MOCO_COCO, m))
    assert dense["n"] == "3/3" and byol["n"] == "0/3" and byol["box_AP mean ± std [95% CI]"] == "—"
    assert dense["trials (" + "/".join(COCO) + ")"] == "; ".join("/".join(f"{x:.2f}" for x in v) for v in DENSE_COCO)
    assert dense["published"] == "40.50/—/—/—/—/—/35.00/—/—/—/—/—"  # the published record has two of the names
    assert dense["Δ ours − published"] == "-0.50 / — / — / — / — / — / +0.00 / — / — / — / — / —"
    assert moco["published"] == "—" and moco["Δ ours − published"] == "—"
    assert by_setting(voc_table)["voc0712_c4_24k/r50_densecl"]["AP"] == cell(column(DENSE_VALUES, "AP"))

    voc_only = collect.collect([voc], out_dir=Path("voc_only"), plots=False).markdown
    assert voc_table == tables(voc_only)[0]  # the VOC table, byte for byte, with or without COCO beside it
    assert text.index("Not finished (4):") > text.index(voc_table[-1])  # then the missing trials, all of them
    assert f"- {BENCH}/r50_byol seed0: to run" in text


def test_an_unfinished_or_unreadable_setting_sits_in_its_benchmarks_table_or_the_common_one(tmp_path):
    """A COCO-only report: a queued COCO setting and an unreadable folder (no benchmark known) join the COCO
    table, so the report has no VOC table; with nothing finished at all, the one table is VOC's, as before."""
    queued(tmp_path, "byol", 0)
    lost = tmp_path / "lost" / "seed0"
    lost.mkdir(parents=True)
    (lost / "result.json").write_text('{"metric_names": ["box_AP"], "metr')
    assert [t[0].split(" | ")[2] for t in tables(formats.markdown(results.summarize(results.read_trials(
        [tmp_path])), []))] == ["AP50 mean ± std [95% CI]"]  # fmt: skip
    coco(tmp_path, "densecl", 0, BASE)
    rows = results.summarize(results.read_trials([tmp_path]))
    assert [(r.key, r.n, r.metric_names) for r in rows] == [("?/?_lost", 0, COCO), (f"{BENCH}/r50_byol", 0, COCO),
                                                           (f"{BENCH}/r50_densecl", 1, COCO)]  # fmt: skip
    (only,) = tables(formats.markdown(rows, []))
    assert only[0].startswith("| setting | n | box_AP mean ± std [95% CI] | box_AP50 |") and len(only) == 5


def test_comparisons_only_between_rows_of_the_same_metrics_with_scipys_welch_p(mixed):
    voc, cc = mixed
    coco(cc, "scratch", 0, BASE[:6], names=COCO[:6])  # same group, box metrics only (another evaluator)
    coco(cc, "scratch", 1, tuple(b + 1 for b in BASE[:6]), names=COCO[:6])
    rows = results.summarize(results.read_trials([voc, cc]))
    compared = {(c.group, c.b, c.a): c for c in comparisons.compare(rows, "all")}
    assert set(compared) == {(f"{BENCH}/r50", "mocov2", "densecl"),  # scratch: other metrics; byol: no trial
                             ("voc0712_c4_24k/r50", "regioncl_d", "densecl")}  # and none across benchmarks
    cmp = compared[(f"{BENCH}/r50", "mocov2", "densecl")]
    assert cmp.metric_names == COCO
    for j, m in enumerate(COCO):
        a, b = col(DENSE_COCO, m), col(MOCO_COCO, m)
        assert cmp.diff[m] == pytest.approx(0.25 * (j + 1))
        assert cmp.p[m] == pytest.approx(ttest_ind(b, a, equal_var=False).pvalue, rel=1e-12)
    # by hand: se² = 1/3 + 4/3; t = 0.25 / sqrt(5/3) = 0.19365; df = (5/3)² / ((1/3)²/2 + (4/3)²/2) = 2.94118
    assert cmp.p["box_AP"] == pytest.approx(2 * student_t.sf(0.25 / math.sqrt(5 / 3), 2.94118), abs=1e-5)
    assert round(cmp.p["box_AP"], 4) == 0.8591
    voc_cmp = compared[("voc0712_c4_24k/r50", "regioncl_d", "densecl")]
    assert voc_cmp.metric_names == ("AP50", "AP", "AP75")
    text = formats.markdown(rows, comparisons.compare(rows, "all"))
    comparison_tables = tables(text.split("Comparisons (difference of means")[1])
    assert [t[0] for t in comparison_tables] == [
        "| group | b − a | " + " | ".join(f"Δ{m}" for m in COCO) + " |", "| group | b − a | ΔAP50 | ΔAP | ΔAP75 |"]
    assert comparison_tables[0][2].startswith(f"| {BENCH}/r50 | mocov2 − densecl | +0.25 (p = 0.859) | +0.50 (p = ")


def test_published_numbers_are_tested_only_for_the_names_they_have(mixed):
    voc, cc = mixed
    rows = {r.key: r for r in results.summarize(results.read_trials([voc, cc]))}
    dense = rows[f"{BENCH}/r50_densecl"]
    assert dense.delta == {"box_AP": pytest.approx(-0.5), "mask_AP": pytest.approx(0.0)}
    p = ttest_ind_from_stats(40.0, 1.0, 3, 40.5, 0.3, 5, equal_var=False).pvalue
    assert dense.published_p["box_AP"] == pytest.approx(p, rel=1e-9) and dense.published_p["mask_AP"] == pytest.approx(1.0)
    assert [m for m, v in dense.published_p.items() if v is not None] == ["box_AP", "mask_AP"]
    assert dense.flagged == {m: False for m in COCO}


def test_tidy_csv_has_a_column_per_metric_name_blank_where_a_row_lacks_it(mixed):
    voc, cc = mixed
    collect.collect([voc, cc], out_dir=Path("both"), plots=False)
    with open("both/trials.csv") as f:
        reader = csv.DictReader(f)
        got = list(reader)
    names = [*COCO, "AP50", "AP", "AP75"]  # in the order the rows (sorted by setting) first name them
    assert reader.fieldnames == ["setting", "benchmark", "backbone", "pretrain", "overrides", "weights", "seed",
                                 "state", *names, *(f"published_{m}" for m in names), "wall_time_s", "max_iter",
                                 "world_size", "cause", "path"]  # fmt: skip
    dense = [r for r in got if r["setting"] == f"{BENCH}/r50_densecl"]
    assert [[float(r[m]) for m in COCO] for r in dense] == [list(v) for v in DENSE_COCO]
    assert all(r["AP50"] == r["published_AP50"] == "" for r in dense)
    assert (dense[0]["published_box_AP"], dense[0]["published_mask_AP"], dense[0]["published_box_AP50"]) == (
        "40.5", "35.0", "")  # fmt: skip
    voc_dense = [r for r in got if r["setting"] == "voc0712_c4_24k/r50_densecl"]
    assert [float(voc_dense[0][m]) for m in ("AP50", "AP", "AP75")] == list(DENSE_VALUES[0])
    assert all(r[m] == "" for r in voc_dense for m in COCO)
    voc_only = formats.tidy_csv(results.summarize(results.read_trials([voc])))
    assert voc_only.splitlines()[0] == ",".join(formats.TIDY)  # a VOC-only report keeps its columns
    assert formats.TIDY[8:14] == ["AP50", "AP", "AP75", "published_AP50", "published_AP", "published_AP75"]


def test_json_latex_and_html_carry_each_settings_own_names(mixed):
    voc, cc = mixed
    collect.collect([voc, cc], out_dir=Path("both"), plots=False, compare="all")  # no baseline in these groups
    got = json.loads(Path("both/results.json").read_text())
    settings = {s["key"]: s for s in got["settings"]}
    dense = settings[f"{BENCH}/r50_densecl"]
    assert dense["metric_names"] == list(COCO) and list(dense["metrics"]) == list(COCO)
    assert settings["voc0712_c4_24k/r50_densecl"]["metric_names"] == ["AP50", "AP", "AP75"]
    assert settings[f"{BENCH}/r50_byol"]["metric_names"] == list(COCO)  # nothing finished: its benchmark's names
    for m in COCO:
        hand = by_hand(col(DENSE_COCO, m))
        for k in ("mean", "std", "ci95", "low", "high"):
            assert dense["metrics"][m][k] == pytest.approx(hand[k], abs=1e-6)
    assert dense["metrics"]["box_AP"]["delta"] == -0.5 and dense["metrics"]["box_AP50"]["delta"] is None
    assert [{k: t[k] for k in COCO} for t in dense["trials"]] == [dict(zip(COCO, v, strict=True)) for v in DENSE_COCO]
    assert [c["metric_names"] for c in got["comparisons"]] == [list(COCO), ["AP50", "AP", "AP75"]]

    tex = Path("both/table.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 2 and r"\begin{tabular}{l" + "c" * 13 + "}" in tex
    assert (r"Pretrain & $n$ & box\_AP & box\_AP$_{50}$ & box\_AP$_{75}$ & box\_AP$_{s}$ & box\_AP$_{m}$ & "
            r"box\_AP$_{l}$ & mask\_AP & ") in tex  # fmt: skip
    assert r"Pretrain & $n$ & AP$_{50}$ & AP & AP$_{75}$ \\" in tex
    assert "ImageNet-1M, R50, densecl & 3 & 40.00 $\\pm$ 1.00 & 60.00 $\\pm$ 1.00" in tex

    html = Path("both/table.html").read_text()
    header = re.findall(r'<th valign="bottom">(.*?)</th>', html)
    assert header == ["pretrain", *COCO, "AP50", "AP", "AP75"]  # one block: a column per metric of any row
    row = re.search(r'<tr><td align="left">ImageNet-1M, R50, densecl</td>\n((?:<td.*\n)+)</tr>', html)[1]
    assert re.findall(r">(.*?)</td>", row) == [f"{b:.2f}" for b in BASE] + ["—"] * 3


def test_status_and_the_launchers_done_line_show_each_trials_own_names(mixed):
    voc, cc = mixed
    seen = status.scan([voc, cc])
    table = status.table(seen)
    columns = {str(c.header): [str(x) for x in c.cells] for c in table.columns}
    labels = columns["trial"]
    voc_col, coco_col = columns["AP50/AP/AP75"], columns["/".join(COCO)]
    assert voc_col[labels.index("voc0712_c4_24k/r50_densecl seed0")] == "82.64/58.32/64.60"
    assert coco_col[labels.index("voc0712_c4_24k/r50_densecl seed0")] == ""
    assert coco_col[labels.index(f"{BENCH}/r50_densecl seed0")] == "/".join(f"{b - 1:.2f}" for b in BASE)
    assert voc_col[labels.index(f"{BENCH}/r50_densecl seed0")] == ""
    only_voc = status.table([s for s in seen if s.label.startswith("voc")])
    assert [str(c.header) for c in only_voc.columns] == ["trial", "state", "AP50/AP/AP75", "cause"]  # as before

    out = io.StringIO()
    shown = status.console(out)
    shown.width = 400  # one line each, whatever their length
    view = local.View(shown, live=False)
    for folder in (voc / "voc0712_c4_24k" / "r50_densecl" / "seed0", cc / BENCH / "r50_mocov2" / "seed1"):
        view.finished(local.Job(folder, str(folder)), status.refresh(status.TrialStatus(str(folder), "done"), folder))
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("seed0  AP50/AP/AP75 82.64/58.32/64.60")
    assert lines[1].endswith("seed1  " + "/".join(COCO) + " " + "/".join(f"{x:.2f}" for x in MOCO_COCO[1]))


@pytest.mark.launch
def test_the_ap_figure_has_a_line_of_panels_per_metric_list(mixed):
    pytest.importorskip("matplotlib")
    voc, cc = mixed
    rows = results.summarize(results.read_trials([voc, cc]))
    fig = plots._ap_figure(rows)
    assert [ax.get_title() for ax in fig.axes] == [*COCO, "AP50", "AP", "AP75"]  # 12 panels, then 3: no empty ones
    coco_settings = [f"{BENCH}/r50_densecl", f"{BENCH}/r50_mocov2"]
    voc_settings = ["voc0712_c4_24k/r101_densecl", "voc0712_c4_24k/r50_densecl", "voc0712_c4_24k/r50_regioncl_d"]
    for ax in fig.axes:
        want = coco_settings if ax.get_title() in COCO else voc_settings
        assert [c.get_label() for c in ax.containers] == want
    box = fig.axes[0].containers[1].lines[0].get_ydata()  # mocov2's box_AP mean
    assert list(box) == pytest.approx([40.25])
    width, height = fig.get_size_inches()
    assert (width, height) == pytest.approx(plots.ap_size(3, 12, 2)) and height == 9.0
    ids = plots.ap_plot(rows, Path("ap"))[1].read_text()
    assert ids.count('id="ap-box_AP-s0"') == 1 and ids.count('id="ap-AP50-s4"') == 1  # the 5th finished setting
    assert ids.count('id="published-box_AP-s0"') == 1 and 'id="published-box_AP50-' not in ids


# ---- a trial that measured other metrics than its setting: a conflict, not pooled ----


def test_a_trial_with_other_metric_names_than_its_setting_is_a_conflict(tmp_path, monkeypatch):
    """seed0 and seed1 measured VOC's three (seed0 an old result.json without names); seed2 measured four.
    Most of the setting measured three: seed2 counts in neither n nor the statistics, and is named."""
    monkeypatch.chdir(tmp_path)
    root = Path("sweep")
    trial(root, DENSECL, 0, (82.0, 58.0, 64.0))
    trial(root, DENSECL, 1, (83.0, 59.0, 65.0))
    odd = coco(root, "densecl", 2, (90.0, 60.0, 66.0, 40.0), names=("AP50", "AP", "AP75", "APs"),
               bench="voc0712_c4_24k")  # fmt: skip
    record = json.loads((odd / "result.json").read_text())  # the same setting as the others
    record["setting"]["label"], record["published"] = DENSECL["label"], None
    files.write_json_atomic(odd / "result.json", record)
    others = [root / "voc0712_c4_24k" / "r50_densecl" / f"seed{s}" for s in (0, 1)]

    report = collect.collect([root], plots=False)
    (row,) = report.rows
    assert (row.n, row.expected, row.metric_names) == (2, 5, ("AP50", "AP", "AP75"))
    assert row.stats["AP50"].mean == 82.5  # 90 is not pooled
    (conflict,) = row.conflicts
    assert conflict.path == odd and conflict.conflict == tuple(others)
    assert conflict.cause == (f"conflict: measured AP50/AP/AP75/APs, where the other trials of its setting measured "
                              f"AP50/AP/AP75 ({others[0]}, {others[1]})")  # fmt: skip
    other = report.markdown.split("Other metrics (1): ")[1].splitlines()
    assert other[1] == (f"- voc0712_c4_24k/r50_densecl seed2: AP50/AP/AP75/APs 90.00/60.00/66.00/40.00 ({odd}); "
                        "the setting's other trials measured AP50/AP/AP75")  # fmt: skip
    assert "Conflicts (" not in report.markdown and "1 with conflicting results" in report.summary()
    with open(root / "trials.csv") as f:
        got = {r["seed"]: r for r in csv.DictReader(f)}
    assert got["2"]["state"] == "conflict" and got["2"]["APs"] == "40.0" and got["0"]["APs"] == ""
    assert {s.label: s.cause for s in status.scan([root])}["voc0712_c4_24k/r50_densecl seed2"] == conflict.cause
    assert not comparisons.compare(report.rows)  # one setting: nothing to compare; and nothing crashed

    shutil.rmtree(others[1])  # one against one: the lowest seed's names are the setting's
    (row,) = results.summarize(results.read_trials([root]))
    assert row.metric_names == ("AP50", "AP", "AP75") and [t.seed for t in row.conflicts] == [2]
    shutil.rmtree(others[0])
    trial(root, DENSECL, 3, (82.0, 58.0, 64.0))
    (row,) = results.summarize(results.read_trials([root]))
    assert row.metric_names == ("AP50", "AP", "AP75", "APs") and [t.seed for t in row.conflicts] == [3]


def test_a_results_other_numbers_reach_the_csv_and_json_but_not_the_table(tmp_path):
    """A COCO result names six metrics (the table's) and holds APs/APm/APl of boxes and masks too: those go
    into trials.csv and results.json (per trial, and mean/std/interval per setting) and stay out of the table.
    A NaN (pycocotools had nothing to average) is kept per trial and gives no mean."""
    shown = ("box_AP", "box_AP50", "box_AP75", "mask_AP", "mask_AP50", "mask_AP75")
    written = [dict(zip(COCO, (b + d for b in BASE), strict=True)) for d in (-1.0, 0.0, 1.0)]
    written[2]["mask_APs"] = float("nan")
    for seed, metrics in enumerate(written):
        folder = coco(tmp_path / "in", "densecl", seed, tuple(metrics[m] for m in shown), names=shown)
        record = json.loads((folder / "result.json").read_text())
        files.write_json_atomic(folder / "result.json", {**record, "metrics": metrics})
    collect.collect([tmp_path / "in"], out_dir=tmp_path / "out", plots=False)
    others = ["box_APl", "box_APm", "box_APs", "mask_APl", "mask_APm", "mask_APs"]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| box_AP mean ± std [95% CI] |" in table and not any(m in table for m in others)
    with open(tmp_path / "out" / "trials.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames[8:26] == [*shown, *(f"published_{m}" for m in shown), *others]
    assert [[float(r[m]) for m in others] for r in rows[:2]] == [[w[m] for m in others] for w in written[:2]]
    assert math.isnan(float(rows[2]["mask_APs"])) and float(rows[2]["box_APs"]) == written[2]["box_APs"]
    (setting,) = json.loads((tmp_path / "out" / "results.json").read_text())["settings"]
    assert list(setting["metrics"]) == list(shown) and sorted(setting["other_metrics"]) == others
    for m in others[:5]:
        hand = by_hand([w[m] for w in written])
        assert setting["other_metrics"][m] == pytest.approx(hand, abs=1e-6)
    assert setting["other_metrics"]["mask_APs"]["mean"] is None
    assert [t["box_APs"] for t in setting["trials"]] == [w["box_APs"] for w in written]
    assert setting["trials"][2]["mask_APs"] is None


@pytest.mark.launch
def test_a_nan_metric_reads_as_undefined_everywhere_not_as_a_number(tmp_path):
    """pycocotools gives -1 (detectron2: NaN) where it has nothing to average, e.g. mask AP of a model without a
    detection: that setting's cell says so, its trials show "—", no Δ or p is computed from it, and no format
    prints "nan"; the other metrics keep their statistics."""
    shown = ("box_AP", "box_AP50", "box_AP75", "mask_AP", "mask_AP50", "mask_AP75")
    for seed in range(3):
        values = [40.0 + seed] * 6
        coco(tmp_path / "in", "densecl", seed, tuple(float("nan") if seed == 1 and i == 3 else v
                                                     for i, v in enumerate(values)), names=shown)  # fmt: skip
        coco(tmp_path / "in", "mocov2", seed, tuple(v - 5 for v in values), names=shown)
    report = collect.collect([tmp_path / "in"], out_dir=tmp_path / "out", plots=True, baseline="densecl")
    dense = next(line for line in report.markdown.splitlines() if line.startswith(f"| {BENCH}/r50_densecl |"))
    cells = dense.split(" | ")
    assert cells[2] == "41.00 ± 1.00 [38.52, 43.48]" and cells[5] == "— (NaN in 1 of 3 trials)"
    assert "41.00/41.00/41.00/—/41.00/41.00" in dense
    comparison = next(line for line in report.markdown.splitlines() if " − " in line and line.startswith(f"| {BENCH}"))
    assert comparison.split(" | ")[5] == "— (p —)"
    for name in ("table.md", "table.tex", "table.html", "results.json"):
        text = (tmp_path / "out" / name).read_text().replace("(NaN in", "").replace(str(tmp_path), "")
        assert "nan" not in text.lower(), name
    (setting, _) = json.loads((tmp_path / "out" / "results.json").read_text())["settings"]
    assert setting["metrics"]["mask_AP"]["mean"] is None and setting["trials"][1]["mask_AP"] is None
