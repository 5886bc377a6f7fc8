"""Collect: statistics against hand-computed values, every trial state, golden files for each format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from xfer import collect, formats, results, stats

GOLDEN = REPO / "tests" / "golden"
DENSECL = {"name": "densecl", "label": "ImageNet-1M, DenseCL, 200ep",
           "published": {"voc0712_c4_24k": {"r50": {"AP50": 82.7, "AP": 58.5, "AP75": 65.6}}}}  # fmt: skip
REGIONCL = {"name": "regioncl_d", "label": "ImageNet-1M, RegionCL-D, 200ep",
            "published": {"voc0712_c4_24k": {"r50": {"AP50": 83.32, "AP": 58.72, "AP75": 65.57}}}}  # fmt: skip


def trial(root: Path, pretrain: dict, seed: int, metrics: tuple | None = None, backbone: str = "r50",
          failed: str = "", corrupt: bool = False) -> Path:  # fmt: skip
    """A trial folder as the stages leave it: trial.yaml always, then result.json or failure.json."""
    folder = root / "voc0712_c4_24k" / f"{backbone}_{pretrain['name']}" / f"seed{seed}"
    folder.mkdir(parents=True)
    cfg = {"benchmark": {"name": "voc0712_c4_24k", "trials": 5}, "backbone": {"name": backbone},
           "pretrain": pretrain, "seed": seed}  # fmt: skip
    (folder / "trial.yaml").write_text(yaml.safe_dump({"cfg": cfg, "overrides": ""}))
    if failed:
        (folder / "failure.json").write_text(json.dumps({"cause": failed}))
    if corrupt:
        (folder / "result.json").write_text('{"setting": {"benchmark": "voc0712_c4_24k", "backb')
    if metrics:
        published = pretrain["published"]["voc0712_c4_24k"].get(backbone)
        record = {"setting": {"benchmark": "voc0712_c4_24k", "backbone": backbone, "pretrain": pretrain["name"],
                              "overrides": "", "label": pretrain["label"]},
                  "seed": seed, "trials_expected": 5, "published": published,
                  "metrics": dict(zip(("AP50", "AP", "AP75"), metrics, strict=True)),
                  "run": {"wall_time_s": 100.0 + seed, "max_iter": 24000, "world_size": 8}}  # fmt: skip
        (folder / "result.json").write_text(json.dumps(record))
    return folder


@pytest.fixture
def sweep(tmp_path, monkeypatch) -> Path:
    """Trials in every state: done, failed, unfinished (never started), corrupt, and a lone n=1 setting."""
    monkeypatch.chdir(tmp_path)  # relative paths: golden files do not depend on where pytest runs
    root = Path("sweep")
    for seed, m in enumerate([(82.64, 58.32, 64.60), (82.64, 58.41, 64.89), (82.50, 58.20, 64.70),
                              (82.80, 58.60, 65.00), (82.70, 58.45, 64.95)]):  # fmt: skip
        trial(root, DENSECL, seed, m)
    for seed, m in enumerate([(83.24, 58.84, 65.98), (83.40, 58.60, 65.16), (83.30, 58.70, 65.50)]):
        trial(root, REGIONCL, seed, m)
    trial(root, REGIONCL, 3, failed="FloatingPointError: Loss became infinite or NaN at iteration=9")
    trial(root, REGIONCL, 4)  # planned, never started
    trial(root, REGIONCL, 5, corrupt=True)
    trial(root, DENSECL, 0, (83.57, 61.02, 68.20), backbone="r101")
    return root


def test_statistics_match_hand_computed_values():
    s = stats.summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s.mean == 3.0 and s.std == pytest.approx(1.5811388300841898)  # sqrt(10 / 4)
    assert s.ci95 == pytest.approx(2.7764451051977987 * 1.5811388300841898 / 5**0.5)  # t(0.975, 4) from tables
    one = stats.summarize([82.64])
    assert one.mean == 82.64 and one.std is None and one.ci95 is None and one.covers(82.64) is None
    # Welch: a=[1,2,3], b=[4,5,6]: t = 3 / sqrt(2/3) = 3.674, df = 4, two-sided p = 0.02131
    assert stats.welch_p([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.021311641128756713, rel=1e-9)
    assert stats.welch_p([1.0], [4.0, 5.0]) is None and stats.welch_p([1.0, 1.0], [2.0, 2.0]) is None


def test_rows_count_every_trial_and_flag_the_published_mean(sweep):
    rows = {r.key: r for r in results.summarize(results.read_trials([sweep]))}
    dense, region, lone = rows["voc0712_c4_24k/r50_densecl"], rows["voc0712_c4_24k/r50_regioncl_d"], rows["voc0712_c4_24k/r101_densecl"]
    assert (dense.n, dense.expected) == (5, 5) and (region.n, region.expected) == (3, 6) and (lone.n, lone.expected) == (1, 5)
    assert sorted((t.seed, t.state) for t in region.missing) == [(3, "failed"), (4, "unfinished"), (5, "corrupt")]
    assert "unreadable result.json" in next(t for t in region.missing if t.state == "corrupt").cause
    assert dense.stats["AP50"].mean == pytest.approx(82.656)
    assert dense.delta["AP50"] == pytest.approx(82.656 - 82.7)
    assert dense.outside == {"AP50": False, "AP": False, "AP75": True}  # AP75 64.83, 95% CI [64.62, 65.04], excludes 65.6
    assert lone.stats["AP"].std is None and lone.outside == {}  # published r101 not in this fixture
    (cmp,) = results.compare(list(rows.values()))
    assert (cmp.group, cmp.a, cmp.b) == ("voc0712_c4_24k/r50", "densecl", "regioncl_d")
    assert cmp.diff["AP50"] == pytest.approx(83.3133333 - 82.656)


@pytest.mark.parametrize("name", ["table.md", "trials.csv", "results.json", "table.tex", "table.html"])
def test_each_format_matches_its_golden_file(sweep, name):
    report = collect.collect([sweep], plots=False)
    got = (sweep / name).read_text()
    if os.environ.get("XFER_UPDATE_GOLDEN"):
        (GOLDEN / name).write_text(got)
    assert got == (GOLDEN / name).read_text(), f"{name} changed; XFER_UPDATE_GOLDEN=1 rewrites the golden file"
    assert report.markdown == (sweep / "table.md").read_text()


def test_tidy_csv_has_one_row_per_trial(sweep):
    import csv

    collect.collect([sweep], plots=False)
    with open(sweep / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["state"] for r in rows} == {"done", "failed", "unfinished", "corrupt"}
    assert all(r["AP50"] for r in rows if r["state"] == "done") and not any(r["AP50"] for r in rows if r["state"] != "done")


SEED_README = """# DenseCL

### Results

Below are the results on Pascal VOC 2007 test:

<table><tbody>
<!-- START TABLE -->
<!-- TABLE HEADER -->
<th valign="bottom">pretrain</th>
<th valign="bottom">AP50</th>
<th valign="bottom">AP</th>
<th valign="bottom">AP75</th>
<!-- TABLE BODY -->
<tr><td align="left">ImageNet-1M, R50, DenseCL, 200ep</td>
<td align="center">82.7</td>
<td align="center">58.5</td>
<td align="center">65.6</td>
</tr>
</tr>
</tbody></table>

denseCL, r50:
    82.64/58.32/64.60
"""


def test_seed_readme_block_is_rewritten_and_nothing_else(sweep, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(SEED_README)
    collect.collect([sweep], plots=False, readme=readme)
    text = readme.read_text()
    before, after = SEED_README.split("<!-- START TABLE -->")[0], SEED_README.split("</tbody></table>")[1]
    assert text.startswith(before) and text.endswith(after)
    assert '<tr><td align="left">ImageNet-1M, R50, DenseCL, 200ep</td>\n<td align="center">82.66</td>' in text
    assert "ImageNet-1M, R50, RegionCL-D, 200ep" in text and "ImageNet-1M, R101, DenseCL, 200ep" in text
    collect.collect([sweep], plots=False, readme=readme)
    assert readme.read_text() == text  # idempotent
    with pytest.raises(ValueError, match="no table block"):
        formats.rewrite_block(sweep / "table.md", "x")


def test_collect_cli_combines_sweeps_and_names_a_bad_readme(sweep, tmp_path):
    other = Path("other")
    trial(other, DENSECL, 7, (82.0, 58.0, 64.0))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "xfer", "collect", str(sweep), str(other), "--out", "combined",
                           "--no-plots"], capture_output=True, text=True, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "| voc0712_c4_24k/r50_densecl | 6/6 |" in proc.stdout
    assert Path("combined/results.json").exists() and not Path("combined/ap.png").exists()
    proc = subprocess.run([sys.executable, "-m", "xfer", "collect", str(sweep), "--readme", "nope.md"],
                          capture_output=True, text=True, env=env)  # fmt: skip
    assert proc.returncode == 2 and "--readme nope.md: no such file" in proc.stderr
