"""Time to collect N trial results (default 1,000) into every table format, with and without plots.

Writes N ``result.json`` + ``trial.yaml`` folders (2 backbones x 6 pretrains x N/12 seeds, VOC-like AP
values) into a temporary folder, then runs the collect stage on them ``--repeats`` times and prints the
medians. The baseline in the same run is reading the files alone (``results.read_trials``), so the ratio
shows what the statistics and formats add.

    python bench/collect_speed.py --trials 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PRETRAINS = ("supervised", "moco_v1", "moco_v2_200ep", "moco_v2_800ep", "densecl", "regioncl_d")


def make(root: Path, n: int) -> None:
    rng = random.Random(0)
    settings = [(b, p) for b in ("r50", "r101") for p in PRETRAINS]
    for i in range(n):
        backbone, pretrain = settings[i % len(settings)]
        seed = i // len(settings)
        folder = root / "voc0712_c4_24k" / f"{backbone}_{pretrain}" / f"seed{seed}"
        folder.mkdir(parents=True)
        cfg = {"benchmark": {"name": "voc0712_c4_24k", "trials": 5}, "backbone": {"name": backbone},
               "pretrain": {"name": pretrain, "label": pretrain}, "seed": seed}  # fmt: skip
        (folder / "trial.yaml").write_text(yaml.safe_dump({"cfg": cfg, "overrides": ""}))
        metrics = {"AP50": 82 + rng.gauss(0, 0.2), "AP": 57 + rng.gauss(0, 0.2), "AP75": 64 + rng.gauss(0, 0.4)}
        record = {"setting": {"benchmark": "voc0712_c4_24k", "backbone": backbone, "pretrain": pretrain,
                              "overrides": "", "label": pretrain},
                  "seed": seed, "metrics": metrics, "published": None, "run": {"wall_time_s": 19000.0}}  # fmt: skip
        (folder / "result.json").write_text(json.dumps(record))


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from xfer.report import collect, results

    with tempfile.TemporaryDirectory(prefix="xfer-collect-") as tmp:
        root = Path(tmp) / "sweep"
        make(root, args.trials)
        collect.collect([root], plots=False)  # warm: imports (scipy) and the file cache, as a rerun would be
        read = timed(lambda: results.read_trials([root]), args.repeats)
        tables = timed(lambda: collect.collect([root], plots=False), args.repeats)
        plots = timed(lambda: collect.collect([root], plots=True), max(1, args.repeats // 2))
    print(f"collect of {args.trials} trial results, median of {args.repeats}:")
    print(f"  reading the files alone   {read:.3f} s")
    print(f"  collect, all 5 formats    {tables:.3f} s   ({tables / read:.2f}x reading)")
    print(f"  collect, formats + plots  {plots:.3f} s")


if __name__ == "__main__":
    main()
