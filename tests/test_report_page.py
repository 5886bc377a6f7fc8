"""``report.html`` in a real headless Chromium (Debian's, driven over the DevTools protocol: ``tests/browser.py``).

The oracles are the browser's own: the DOM it built from the file, the text it shows, what it logged, what it
fetched, the pixels of its screenshot; the numbers are worked out here with ``statistics``, not by xfer.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest

from tests import browser
from tests.test_results import DENSE_VALUES, DENSECL, METRICS, PUB_DENSECL, REGION_VALUES, REGIONCL, trial
from xfer.report import collect
from xfer.store import sweeps

pytestmark = pytest.mark.launch  # starts a browser: seconds of CPU
HOSTILE = {"name": "evil", "label": '<script>document.title="pwned"</script> & <b>bold</b>',
           "published": {"voc0712_c4_24k": {"r50": {"AP50": 80.0, "AP": 55.0, "AP75": 60.0}}}}  # fmt: skip
EVIL_VALUES = [(80.1, 55.2, 60.3), (80.5, 55.0, 60.9)]
LOG_TAIL = "\n".join(f"[xfer] line {i} <of the log>" for i in range(40)) + "\nFloatingPointError: loss is NaN"
COMMAND = "python launch.py -m pretrain=densecl,regioncl_d seed=0-4"


@pytest.fixture(scope="module")
def chromium():
    exe = browser.find()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium missing in CI: .ci/run installs Debian's chromium")
        pytest.skip("no Chromium here (Debian: apt-get install chromium): the report page is tested in a real browser")
    with browser.Browser(exe) as b:
        yield b


@pytest.fixture
def report(tmp_path, monkeypatch) -> Path:
    """A sweep as the stages leave it: three settings with finished trials (one labelled with markup), a failed
    trial with its log tail, one never started, a damaged result, curves for one trial, the launch's record."""
    monkeypatch.chdir(tmp_path)
    root = Path("sweep")
    for seed, m in enumerate(DENSE_VALUES):
        trial(root, DENSECL, seed, m)
    for seed, m in enumerate(REGION_VALUES):
        trial(root, REGIONCL, seed, m)
    for seed, m in enumerate(EVIL_VALUES):
        trial(root, HOSTILE, seed, m)
    failed = trial(root, REGIONCL, 3)
    (failed / "failure.json").write_text(json.dumps({"cause": "FloatingPointError: loss is NaN", "detail": LOG_TAIL}))
    trial(root, REGIONCL, 4)
    trial(root, REGIONCL, 5, corrupt=True)
    curve = [{"iteration": i, "total_loss": 2.0 - i / 100, "lr": 0.02} for i in range(0, 100, 10)]
    (root / "voc0712_c4_24k/r50_densecl/seed0/metrics.json").write_text("\n".join(map(json.dumps, curve)) + "\n")
    sweeps.write(root / "voc0712_c4_24k", sweeps.SweepRecord(COMMAND, "local", "GPU", 1, 8, 1.7e9))
    collect.collect([root / "voc0712_c4_24k"], plots=False)
    return (root / "voc0712_c4_24k" / "report.html").resolve()


def test_the_page_loads_from_a_file_with_nothing_fetched_and_no_console_errors(chromium, report):
    chromium.open(report.as_uri())
    assert chromium.problems() == []
    assert chromium.evaluate("performance.getEntriesByType('resource').length") == 0  # self-contained
    assert chromium.evaluate("document.scripts.length") == 0


def test_the_table_shows_each_setting_with_the_hand_computed_means(chromium, report):
    chromium.open(report.as_uri())
    rows = chromium.evaluate("[...document.querySelector('#results + .wrap table').tBodies[0].rows]"
                             ".map(r => [...r.cells].map(c => c.innerText))")  # fmt: skip
    by_key = {r[0]: r for r in rows}
    assert set(by_key) == {"voc0712_c4_24k/r50_densecl", "voc0712_c4_24k/r50_regioncl_d", "voc0712_c4_24k/r50_evil"}
    for key, values, n in (("densecl", DENSE_VALUES, "5/5"), ("regioncl_d", REGION_VALUES, "3/6"), ("evil", EVIL_VALUES, "2/5")):
        row = by_key[f"voc0712_c4_24k/r50_{key}"]
        assert row[2] == n
        for k, m in enumerate(METRICS):
            assert row[3 + k].startswith(f"{statistics.fmean(v[k] for v in values):.2f} ± "), (key, m, row)
            assert row[3 + k].count("\n") == 1  # the interval on a line of its own
    dense = by_key["voc0712_c4_24k/r50_densecl"]
    assert dense[6] == "/".join(f"{PUB_DENSECL[m]:.2f}" for m in METRICS)
    delta = [statistics.fmean(v[k] for v in DENSE_VALUES) - PUB_DENSECL[m] for k, m in enumerate(METRICS)]
    assert dense[7].replace("*", "") == " / ".join(f"{d:+.2f}" for d in delta)
    # a markup label is shown as the text it is, and runs nothing
    assert by_key["voc0712_c4_24k/r50_evil"][1] == HOSTILE["label"]
    assert chromium.evaluate("document.title") == "xfer: voc0712_c4_24k"
    assert chromium.evaluate("document.querySelectorAll('b').length") == 0


def test_every_trial_is_a_point_beside_the_mean_and_the_published_mark(chromium, report):
    chromium.open(report.as_uri())
    points = chromium.evaluate("[...document.querySelectorAll('svg.ap circle')].map(c => c.textContent)")
    expected = [f"{key} seed{seed}: {m} {v[k]:.2f}" for key, values in
                (("voc0712_c4_24k/r50_densecl", DENSE_VALUES), ("voc0712_c4_24k/r50_regioncl_d", REGION_VALUES),
                 ("voc0712_c4_24k/r50_evil", EVIL_VALUES)) for seed, v in enumerate(values)
                for k, m in enumerate(METRICS)]  # fmt: skip
    assert sorted(points) == sorted(expected)
    marks = chromium.evaluate("[...document.querySelectorAll('svg.ap path')].map(p => p.textContent)")
    assert len(marks) == 3 * 3 and f"voc0712_c4_24k/r50_densecl: published AP50 {PUB_DENSECL['AP50']:.2f}" in marks
    lines = chromium.evaluate("document.querySelectorAll('svg.curve polyline').length")
    assert lines == 2  # one trial logged curves: total loss and lr


def test_unfinished_trials_show_state_cause_and_the_log_tail_and_provenance_the_command(chromium, report):
    chromium.open(report.as_uri())
    rows = chromium.evaluate("[...document.querySelector('#unfinished ~ .wrap table').tBodies[0].rows]"
                             ".map(r => [...r.cells].map(c => c.innerText))")  # fmt: skip
    states = {r[0]: r[1] for r in rows}
    assert states == {"voc0712_c4_24k/r50_regioncl_d seed3": "failed", "voc0712_c4_24k/r50_regioncl_d seed4": "to run",
                      "voc0712_c4_24k/r50_regioncl_d seed5": "damaged"}  # fmt: skip
    tail = chromium.evaluate("document.querySelector('#unfinished ~ .wrap pre').textContent")
    assert tail == "\n".join(LOG_TAIL.splitlines()[-15:])
    assert COMMAND in chromium.evaluate("document.querySelector('#provenance ~ p code').textContent")


def test_a_screenshot_shows_the_table(chromium, report, tmp_path):
    """The table lies in the first screen, and its pixels there are painted (not the page's white)."""
    from PIL import Image

    chromium.open(report.as_uri())
    box = chromium.evaluate("(() => { const r = document.querySelector('#results + .wrap table').getBoundingClientRect();"
                            " return [r.left, r.top, r.right, r.bottom]; })()")  # fmt: skip
    assert 0 <= box[0] < box[2] <= 1366 and 0 <= box[1] < box[3] <= 900, box
    shot = Image.open(chromium.screenshot(tmp_path / "report.png")).convert("L")
    region = shot.crop(tuple(round(v) for v in box))
    dark = sum(1 for p in region.getdata() if p < 128)
    assert dark > 0.01 * region.width * region.height, dark  # text drawn in the table's box


def test_over_its_limit_the_page_points_to_tensorboard_instead_of_drawing_every_curve(report, monkeypatch):
    """A sweep of more trials than ``page.CURVE_TRIALS`` (500) gets no curves on the page (2,000 trials' metrics.json
    took 6.5 s to read), and the page says where they are."""
    from xfer.report import page

    assert report.read_text().count('<svg class="curve"') == 2  # the fixture's 13 trials, one with curves: both drawn
    monkeypatch.setattr(page, "CURVE_TRIALS", 9)
    collect.collect([report.parent], plots=False)
    text = report.read_text()
    assert '<svg class="curve"' not in text and "more than this page draws (9)" in text and "tensorboard" in text
