"""Plots from trial folders written here by hand: valid files of the stated size, one series per setting."""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from xfer.report import canvas, metrics_log, plots
from xfer.report.results import Row, read_trials, summarize
from xfer.store.files import VOC_METRICS as METRICS

PUBLISHED = {"AP50": 82.3, "AP": 56.0, "AP75": 62.6, "reruns": 5}


def _trial(root: Path, pretrain: str, seed: int, ap: float, published: dict | None = None,
           curves: list[dict] | None = None, tail: str = "") -> Path:  # fmt: skip
    folder = root / pretrain / f"seed{seed}"
    folder.mkdir(parents=True)
    record = {
        "setting": {"benchmark": "smoke", "backbone": "r50", "pretrain": pretrain, "overrides": ""},
        "seed": seed,
        "metrics": {"AP50": ap + 25, "AP": ap, "AP75": ap + 5},
        "published": published,
    }
    (folder / "result.json").write_text(json.dumps(record))
    if curves is not None:
        (folder / "metrics.json").write_text("".join(json.dumps(c) + "\n" for c in curves) + tail)
    return folder


def _curve(seed: int, evaluated: bool = True) -> list[dict]:
    lines = [
        {"iteration": it, "total_loss": 2.0 - it / 100 + seed / 10, "lr": 0.02 * it / 40} for it in range(0, 40, 10)
    ]
    if evaluated:
        lines.append({"iteration": 39, "bbox/AP50": 70.0 + seed, "bbox/AP": 45.0, "bbox/AP75": 50.0})
    return lines


@pytest.fixture
def rows(tmp_path) -> list[Row]:
    """densecl: 3 seeds, published, one without metrics.json and one cut off mid-line; mocov2: 2 seeds,
    not evaluated; regioncl: 1 seed, published; byol: a failed trial only (no mean, never plotted)."""
    root = tmp_path / "sweep"
    _trial(root, "densecl", 0, 55.0, PUBLISHED, _curve(0))
    _trial(root, "densecl", 1, 56.0, PUBLISHED, _curve(1), tail='{"iteration": 40, "total_lo')
    _trial(root, "densecl", 2, 57.0, PUBLISHED)
    _trial(root, "mocov2", 0, 50.0, None, _curve(0, evaluated=False))
    _trial(root, "mocov2", 1, 51.0, None, _curve(1, evaluated=False))
    _trial(root, "regioncl", 0, 58.0, PUBLISHED, _curve(0))
    failed = root / "byol" / "seed0"
    failed.mkdir(parents=True)
    (failed / "trial.yaml").write_text(json.dumps({"cfg": {
        "benchmark": {"name": "smoke", "trials": 1}, "backbone": {"name": "r50"},
        "pretrain": {"name": "byol"}, "seed": 0}}))  # fmt: skip
    (failed / "failure.json").write_text(json.dumps({"cause": "diverged"}))
    return summarize(read_trials([root]))


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _assert_svg(path: Path) -> str:
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return path.read_text()


def test_fixture_is_what_the_plots_expect(rows):
    assert [(r.setting.pretrain, r.n) for r in rows] == [("byol", 0), ("densecl", 3), ("mocov2", 2), ("regioncl", 1)]


def test_ap_plot_files_have_the_figure_size_and_one_series_per_setting(rows, tmp_path):
    written = plots.ap_plot(rows, tmp_path / "out" / "ap")
    assert written == [tmp_path / "out" / "ap.png", tmp_path / "out" / "ap.svg"]
    width, height = plots.ap_size(3)  # byol has no finished trial
    assert _png_size(written[0]) == (round(width * canvas.DPI), round(height * canvas.DPI))
    svg = _assert_svg(written[1])
    for metric in METRICS:
        for i in range(3):
            assert svg.count(f'id="ap-{metric}-s{i}"') == 1
        assert f'id="ap-{metric}-s0-err' in svg and f'id="ap-{metric}-s2-err' not in svg  # regioncl: n=1
        assert svg.count(f'id="published-{metric}-') == 2


def test_ap_figure_marks_intervals_and_published_values(rows):
    fig = plots._ap_figure(rows)
    for ax, metric in zip(fig.axes, METRICS, strict=True):
        assert [c.get_label() for c in ax.containers] == ["smoke/r50_densecl", "smoke/r50_mocov2", "smoke/r50_regioncl"]
        assert [c.has_yerr for c in ax.containers] == [True, True, False]  # n=1: point, no interval
        assert len(ax.containers[2].lines[0].get_xdata()) == 1
        published = [line.get_gid() for line in ax.lines if (line.get_gid() or "").startswith("published")]
        assert published == [f"published-{metric}-s0", f"published-{metric}-s2"]  # mocov2 has none
        assert [t.get_text() for t in ax.get_xticklabels()] == [r.key for r in rows if r.n]
    densecl = next(r for r in rows if r.setting.pretrain == "densecl")
    low, high = fig.axes[0].containers[0].lines[2][0].get_segments()[0][:, 1]
    assert (low, high) == pytest.approx((densecl.stats["AP50"].low, densecl.stats["AP50"].high))


def test_read_curves_tolerates_missing_file_and_cut_off_line(rows):
    densecl = next(r for r in rows if r.setting.pretrain == "densecl")
    first, cut, missing = (metrics_log.read_curves(t.path) for t in densecl.done)
    assert missing == {}
    assert set(first) == {"total_loss", "lr", "AP50", "AP", "AP75"}
    assert [it for it, _ in first["total_loss"]] == [0, 10, 20, 30]
    assert first["AP50"] == [(39, 70.0)] and cut["AP50"] == [(39, 71.0)]
    assert [v for _, v in cut["total_loss"]] == pytest.approx([2.1, 2.0, 1.9, 1.8])  # the cut line is skipped


def test_read_curves_skips_bad_values_and_keeps_the_later_of_repeated_iterations(tmp_path):
    lines = ['{"iteration": 0, "total_loss": 3.0, "lr": 0.1}', "[1, 2]", "not json", '{"total_loss": 9.0}',
             '{"iteration": 0, "total_loss": 2.5}', '{"iteration": 5, "bbox/AP": NaN, "bbox/AP50": 60}']  # fmt: skip
    (tmp_path / "metrics.json").write_text("\n".join(lines))
    assert metrics_log.read_curves(tmp_path) == {"total_loss": [(0, 2.5)], "lr": [(0, 0.1)], "AP50": [(5, 60.0)]}


@pytest.mark.launch
def test_curves_one_line_per_trial_and_colour_per_setting(rows, tmp_path):
    fig = plots._curves_figure(rows)
    assert [ax.get_title() for ax in fig.axes] == ["total_loss", "lr", "AP50"]
    for ax in fig.axes:
        by_setting: dict[str, set] = {}
        for line in ax.lines:
            by_setting.setdefault(line.get_gid().split("-")[2], set()).add(line.get_color())
        counts = {s: sum(line.get_gid().split("-")[2] == s for line in ax.lines) for s in by_setting}
        if ax.get_title() == "AP50":
            assert counts == {"s0": 2, "s2": 1}  # mocov2 was never evaluated
        else:
            assert counts == {"s0": 2, "s1": 2, "s2": 1}  # densecl's third trial has no metrics.json
        assert all(len(colours) == 1 for colours in by_setting.values())
        assert len({c for colours in by_setting.values() for c in colours}) == len(by_setting)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["smoke/r50_densecl", "smoke/r50_mocov2", "smoke/r50_regioncl"]
    written = plots.curves_plot(rows, tmp_path / "curves")
    assert _png_size(written[0]) == (1200, 400)
    assert _assert_svg(written[1]).count('id="curve-total_loss-') == 5


def test_curves_without_evaluation_omit_the_ap_panel(rows):
    fig = plots._curves_figure([r for r in rows if r.setting.pretrain == "mocov2"])
    assert [ax.get_title() for ax in fig.axes] == ["total_loss", "lr"]


def test_nothing_to_plot_writes_nothing(rows, tmp_path):
    for r in rows:
        for t in r.done:
            (t.path / "metrics.json").unlink(missing_ok=True)
    assert plots.curves_plot(rows, tmp_path / "curves") == []
    assert plots.ap_plot([r for r in rows if r.n == 0], tmp_path / "ap") == []
    assert list(tmp_path.glob("curves.*")) == [] and list(tmp_path.glob("ap.*")) == []


@pytest.mark.launch
def test_write_all(rows, tmp_path):
    out = tmp_path / "plots"
    written = plots.write_all(rows, out)
    assert sorted(p.name for p in written) == ["ap.png", "ap.svg", "curves.png", "curves.svg"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    first = (out / "ap.svg").read_bytes()
    plots.write_all(rows, out)
    assert (out / "ap.svg").read_bytes() == first  # reproducible: no date, fixed ids


# ---- a large sweep: a figure per group, bounded, every setting named ----


def _result(root: Path, bench: str, backbone: str, pretrain: str, seed: int, ap: float, overrides: str = "",
            curves: list[dict] | None = None) -> None:  # fmt: skip
    folder = root / bench / f"{backbone}_{pretrain}{'_' + overrides if overrides else ''}" / f"seed{seed}"
    folder.mkdir(parents=True)
    record = {"setting": {"benchmark": bench, "backbone": backbone, "pretrain": pretrain, "overrides": overrides},
              "seed": seed, "metrics": {"AP50": ap + 25, "AP": ap, "AP75": ap + 5}, "published": None}  # fmt: skip
    (folder / "result.json").write_text(json.dumps(record))
    if curves is not None:
        (folder / "metrics.json").write_text("".join(json.dumps(c) + "\n" for c in curves))


LR = "SOLVER.BASE_LR=0.01"
R50_NAMES = ["scratch", *(f"ckpt_{k:02d}" for k in range(1, 30))]  # k = 0 is scratch, the groups' baseline


@pytest.fixture
def sweep90(tmp_path) -> list[Row]:
    """3 groups x 30 settings x 2 seeds. smoke/r50 and smoke/r101: scratch (their baseline) and ckpt_01..29;
    smoke/r50 with LR overridden: ckpt_00..29, no baseline. AP of setting k, seed s: r50 40 + k/10 + s,
    r101 30 + k/5 + s, LR 50 + k + s. ckpt_01 of smoke/r50 has curves: loss 2, 1 and 3, 2 at iterations 0, 10."""
    root = tmp_path / "sweep"
    for k in range(30):
        for s in (0, 1):
            loss = [{"iteration": it, "total_loss": 2.0 + s - it / 10, "lr": 0.01} for it in (0, 10)]
            _result(root, "smoke", "r50", R50_NAMES[k], s, 40 + k / 10 + s, curves=loss if k == 1 else None)
            _result(root, "smoke", "r101", R50_NAMES[k], s, 30 + k / 5 + s)
            _result(root, "smoke", "r50", f"ckpt_{k:02d}", s, 50 + k + s, overrides=LR)
    return summarize(read_trials([root]))


def _pixels(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def _svg_texts(path: Path) -> list[str]:
    return [t.text for t in ET.parse(path).getroot().iter("{http://www.w3.org/2000/svg}text")]


def test_many_settings_get_one_bounded_figure_per_group_that_names_each(sweep90, tmp_path):
    written = plots.write_all(sweep90, tmp_path / "out")
    groups = ["smoke_r101", "smoke_r50", f"smoke_r50_{LR}"]  # group names in order, "/" and "," as "_"
    stems = [tmp_path / "out" / "ap", *(tmp_path / "out" / "plots" / g for g in groups)]
    assert written == [stem.parent / f"{stem.name}.{ext}" for stem in stems for ext in ("png", "svg")]
    assert not (tmp_path / "out" / "curves.png").exists()
    for png in written[::2]:
        width, height = _pixels(png)
        assert 300 <= width <= 2500 and 300 <= height <= 2000, (png.name, width, height)  # as one figure: 20,000 px
    names = {"smoke_r101": R50_NAMES, "smoke_r50": R50_NAMES, f"smoke_r50_{LR}": [f"ckpt_{k:02d}" for k in range(30)]}
    for group, expected in names.items():
        texts = _svg_texts(tmp_path / "out" / "plots" / f"{group}.svg")
        assert all(texts.count(name) == 1 for name in expected), group  # each setting named once
        assert sorted(t for t in texts if t.startswith(("ckpt", "scratch"))) == sorted(expected)
    overview = _svg_texts(tmp_path / "out" / "ap.svg")
    assert all(overview.count(name) == 1 for name in [*R50_NAMES, "ckpt_00"])
    assert {"smoke/r101 AP50 − scratch", "smoke/r50 AP50 − scratch", f"smoke/r50,{LR} AP50 − median"} <= set(overview)


def test_the_overview_colours_each_setting_by_its_difference_to_the_groups_baseline(sweep90):
    from xfer.report import plot_groups

    cut = plot_groups.pages(sweep90)
    means = [plot_groups._baseline_means(p, p.rows, None) for p in cut]
    fig = plot_groups.overview_figure(cut, means, len(cut))
    (image,) = fig.axes[0].images
    cells = image.get_array()
    rows = [f"ckpt_{k:02d}" for k in range(1, 30)] + ["scratch", "ckpt_00"]  # in order of first appearance
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == rows
    nan = float("nan")
    # columns r101, r50 (baseline scratch: AP50 means 55.5 + k/5, 65.5 + k/10), LR (no baseline: the median
    # of 75.5 + k over k = 0..29 is 90)
    want = [[k / 5, k / 10, k - 14.5] for k in range(1, 30)] + [[0.0, 0.0, nan], [nan, nan, -14.5]]
    flat = [v for row in want for v in row]
    assert cells.filled(nan).ravel().tolist() == pytest.approx(flat, nan_ok=True)
    assert cells.mask.tolist() == [[v != v for v in row] for row in want]  # no result: masked, shown grey


def test_a_large_layout_draws_each_settings_mean_curve(sweep90):
    from xfer.report import plot_groups

    page = next(p for p in plot_groups.pages(sweep90) if p.stem == "smoke_r50")
    fig = plot_groups.group_figure(page, {})
    index = [r.key for r in sweep90 if r.n].index("smoke/r50_ckpt_01")
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.lines}
    mean = lines[f"curve-total_loss-s{index}"]
    assert list(mean.get_xdata()) == [0, 10] and list(mean.get_ydata()) == pytest.approx([2.5, 1.5])
    assert list(lines[f"curve-lr-s{index}"].get_ydata()) == pytest.approx([0.01, 0.01])
    assert [g for g in lines if g and g.startswith("curve-")] == [f"curve-total_loss-s{index}", f"curve-lr-s{index}"]
    # 60 trials in the figure: no line per trial; the settings without curves: no line at all
    assert [ax.get_title() for ax in fig.axes] == ["AP50", "AP", "AP75", "total_loss", "lr"]  # one AP: no panel


def test_a_group_larger_than_a_page_is_cut_and_up_to_50_trials_get_their_own_lines(tmp_path):
    from xfer.report import plot_groups

    root = tmp_path / "sweep"
    for k in range(101):
        _result(root, "smoke", "r50", f"m{k:03d}", 0, 40 + k / 100, curves=_curve(k % 3))
    rows = summarize(read_trials([root]))
    cut = plot_groups.pages(rows)
    assert [(p.stem, len(p.rows)) for p in cut] == [("smoke_r50", 50), ("smoke_r50_2", 50), ("smoke_r50_3", 1)]
    assert [p.labels[0] for p in cut] == ["m000", "m050", "m100"]
    loss = [line.get_gid() for line in plot_groups.group_figure(cut[0], {}).axes[3].lines]
    assert len(loss) == 100 and sum(g.endswith("-t0") for g in loss) == 50  # 50 trials: each under its mean
    assert len(plot_groups.group_figure(cut[2], {}).axes[3].lines) == 2

    small = summarize(read_trials([root / "smoke" / f"r50_m{k:03d}" for k in range(13)]))  # 13: over SMALL
    written = plots.write_all(small, tmp_path / "out")
    assert [p.name for p in written] == ["ap.png", "ap.svg", "smoke_r50.png", "smoke_r50.svg"]


# ---- metrics.json at scale: sampled, and the mean of trials ----


def test_a_long_metrics_json_is_sampled_over_its_whole_length_with_its_end(tmp_path):
    """3,000 logging lines of 0.5 KB (a 60k-iteration run) and the final evaluation: the sample's points are
    the file's own, from its first line to its last, with no hole wider than a twentieth of the run."""
    loss = lambda it: 3.0 - it / 30000  # noqa: E731
    pad = {f"pad/{k}": 0.123456789 for k in range(18)}  # detectron2's other keys: a line of ~0.5 KB
    lines = [{"iteration": it, "total_loss": loss(it), "lr": 0.02, **pad} for it in range(19, 60000, 20)]
    lines.append({"iteration": 59999, "bbox/AP50": 70.0, "bbox/AP": 45.0, "bbox/AP75": 50.0})
    (tmp_path / "metrics.json").write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
    assert (tmp_path / "metrics.json").stat().st_size > 1_000_000
    curves = metrics_log.read_curves(tmp_path)
    its = [it for it, _ in curves["total_loss"]]
    assert its[0] == 19 and its[-1] == 59999 and 40 <= len(its) <= 150
    assert max(b - a for a, b in zip(its, its[1:], strict=False)) <= 3000
    assert all(v == pytest.approx(loss(it)) for it, v in curves["total_loss"])
    assert curves["AP50"] == [(59999, 70.0)] and curves["AP"] == [(59999, 45.0)]


def test_mean_curve_interpolates_each_trial_within_its_own_range():
    mean = metrics_log.mean_curve
    assert mean([[(0, 1.0), (10, 3.0)], [(0, 3.0), (10, 5.0), (20, 7.0)]]) == ([0, 10, 20], [2.0, 4.0, 7.0])
    assert mean([[(0, 0.0), (20, 20.0)], [(10, 5.0)]]) == ([0, 10, 20], [0.0, 7.5, 20.0])
    its, values = mean([[(it, 1.0) for it in range(0, 1000, 2)], [(it, 3.0) for it in range(1, 1000, 2)]], points=11)
    assert its == pytest.approx([k * 99.9 for k in range(11)])  # 0..999 logged: 11 evenly spaced
    assert values[0] == 1.0 and values[-1] == 3.0 and values[1:-1] == pytest.approx([2.0] * 9)
    assert mean([[], []]) == ([], [])


@pytest.mark.launch
def test_collects_baseline_is_the_one_each_group_figure_marks(sweep90, tmp_path):
    from xfer.report import collect

    root = tmp_path / "sweep"
    collect.collect([root], tmp_path / "out", baseline="ckpt_02")
    overview = _svg_texts(tmp_path / "out" / "ap.svg")
    assert {"smoke/r101 AP50 − ckpt_02", "smoke/r50 AP50 − ckpt_02", f"smoke/r50,{LR} AP50 − ckpt_02"} <= set(overview)
    svg = (tmp_path / "out" / "plots" / "smoke_r50.svg").read_text()
    assert all(f'id="baseline-{m}"' in svg for m in METRICS)
    from xfer.report import plot_groups

    page = next(p for p in plot_groups.pages(sweep90) if p.stem == "smoke_r50")
    fig = plot_groups.group_figure(page, plot_groups._baseline_means(page, page.rows, "ckpt_02"))
    (line,) = [line for line in fig.axes[0].lines if line.get_gid() == "baseline-AP50"]
    assert list(line.get_xdata()) == pytest.approx([65.7, 65.7])  # ckpt_02's AP50: 25 + 40 + 2/10 + 1/2
