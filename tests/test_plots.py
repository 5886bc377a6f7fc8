"""Plots from trial folders written here by hand: valid files of the stated size, one series per setting."""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from xfer.report import plots
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
    assert _png_size(written[0]) == (round(width * plots.DPI), round(height * plots.DPI))
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
    first, cut, missing = (plots.read_curves(t.path) for t in densecl.done)
    assert missing == {}
    assert set(first) == {"total_loss", "lr", "AP50", "AP", "AP75"}
    assert [it for it, _ in first["total_loss"]] == [0, 10, 20, 30]
    assert first["AP50"] == [(39, 70.0)] and cut["AP50"] == [(39, 71.0)]
    assert [v for _, v in cut["total_loss"]] == pytest.approx([2.1, 2.0, 1.9, 1.8])  # the cut line is skipped


def test_read_curves_skips_bad_values_and_keeps_the_later_of_repeated_iterations(tmp_path):
    lines = ['{"iteration": 0, "total_loss": 3.0, "lr": 0.1}', "[1, 2]", "not json", '{"total_loss": 9.0}',
             '{"iteration": 0, "total_loss": 2.5}', '{"iteration": 5, "bbox/AP": NaN, "bbox/AP50": 60}']  # fmt: skip
    (tmp_path / "metrics.json").write_text("\n".join(lines))
    assert plots.read_curves(tmp_path) == {"total_loss": [(0, 2.5)], "lr": [(0, 0.1)], "AP50": [(5, 60.0)]}


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


def test_write_all(rows, tmp_path):
    out = tmp_path / "plots"
    written = plots.write_all(rows, out)
    assert sorted(p.name for p in written) == ["ap.png", "ap.svg", "curves.png", "curves.svg"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    first = (out / "ap.svg").read_bytes()
    plots.write_all(rows, out)
    assert (out / "ap.svg").read_bytes() == first  # reproducible: no date, fixed ids
