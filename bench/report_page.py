"""The report page at scale: ``report.html`` of a synthetic 500-trial sweep, its size, the time to write it, and the
time a real headless Chromium takes to open it, each against a baseline in the same call.

The sweep is ``bench/scale.py``'s (the real folder layout and files of finished trials, ``metrics.json`` of 150
lines each): 10 checkpoints x 2 backbones x 5 benchmarks x 5 seeds = 500 trials.

Printed, as medians of ``--repeats`` runs:

1. the page's size, in all and per trial;
2. writing it (``xfer.report.page.write``: reading every trial's curves, drawing, escaping) against reading the
   trials and their statistics (``results.read_trials`` + ``summarize`` + ``compare``), which it is built from;
3. Chromium opening it from the file until its load event, against opening the 25-trial page of one of its
   settings' groups (when Chromium is installed: Debian's ``chromium``).

    python bench/report_page.py [--repeats 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import scale  # noqa: E402  (bench/, this script's folder)
from collect_speed import timed  # noqa: E402

from tests import browser  # noqa: E402
from xfer.report import comparisons, page, results, status  # noqa: E402


def build(root: Path):
    trials = results.read_trials([root])
    rows = results.summarize(trials)
    return trials, rows, comparisons.compare(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xfer-page-") as tmp:
        base = args.keep or Path(tmp)
        large, small = base / "large", base / "small"
        n = scale.write_sweep(large, 10)
        n_small = scale.write_sweep(small, 5, backbones=("r50",), benchmarks=("voc0712_c4_24k",))
        trials, rows, compared = build(large)
        statuses = status.scan([large], trials=trials)
        read = timed(lambda: build(large), args.repeats)
        wrote = timed(lambda: page.write(large, rows, compared, statuses, [large]), args.repeats)
        size = (large / page.REPORT).stat().st_size
        s_trials, s_rows, s_compared = build(small)
        page.write(small, s_rows, s_compared, status.scan([small], trials=s_trials), [small])
        print(f"{n} trials: report.html {size:,} bytes ({size / n:,.0f} per trial); median of {args.repeats} runs:")
        print(f"  write the page          {wrote:7.3f} s   {wrote / read:5.2f}x reading its {n} trials ({read:.3f} s)")
        exe = browser.find()
        if exe is None:
            print("  Chromium: not installed (Debian: apt-get install chromium), not measured")
            return
        with browser.Browser(exe) as b:
            b.open((small / page.REPORT).as_uri())  # the browser's own start-up, once
            opens = {}
            for name, folder in (("large", large), ("small", small)):
                opens[name] = statistics.median(b.open((folder / page.REPORT).as_uri()) for _ in range(args.repeats))
            problems = b.problems()
        print(f"  Chromium opens it       {opens['large']:7.3f} s   {opens['large'] / opens['small']:5.2f}x the "
              f"{n_small}-trial page ({opens['small']:.3f} s); console problems: {problems or 'none'}")


if __name__ == "__main__":
    main()
