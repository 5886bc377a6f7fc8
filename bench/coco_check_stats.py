"""How hard the COCO dataset check hits the file system: system calls on the image folder, per launch and per trial.

Writes a COCO layout of ``--images`` empty image files (the check never reads an image; it looks for each) with
instances JSONs for train2017 and val2017, then runs, under ``strace -f``, (1) ``launch.py benchmark=<coco> ...
plan=true`` twice in a row (the first parses the JSONs and keeps the result per JSON state; the second reads
that), and (2) the check a trial runs before it trains (``xfer.trial.checks.problems``, what
``xfer.trial.runner.setup`` calls, once per trial, not per rank), in a process of its own. It counts the calls
that name a file inside an image folder (stat family, open, access) and the folder listings (getdents64 calls,
and listings: reads to the end); the oracle is strace, not xfer.

    python bench/coco_check_stats.py --images 20000
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PER_FILE = re.compile(r"^\d+\s+(\w+)\(.*\"(?P<path>[^\"]+)\"")
LISTING = re.compile(r"^\d+\s+getdents64\(\d+<(?P<path>[^>]+)>")

TRIAL_CHECK = """
import sys
from hydra import compose, initialize_config_dir
from xfer.trial.checks import problems
with initialize_config_dir(config_dir=sys.argv[1], version_base=None):
    cfg = compose("config", overrides=sys.argv[2:])
print(problems(cfg))
"""


def layout(root: Path, images: int) -> None:
    """``images`` files in train2017/ and a tenth as many in val2017/, each listed by its JSON, one box each."""
    for split, count in (("train2017", images), ("val2017", max(images // 10, 1))):
        folder = root / "coco" / split
        folder.mkdir(parents=True, exist_ok=True)
        listed, anns = [], []
        for i in range(1, count + 1):
            (folder / f"{i:012d}.jpg").touch()
            listed.append({"id": i, "file_name": f"{i:012d}.jpg", "height": 480, "width": 640})
            anns.append({"id": i, "image_id": i, "category_id": 1 + i % 80, "bbox": [10, 10, 50, 50], "area": 2500,
                         "iscrowd": 0, "segmentation": [[10, 10, 60, 10, 60, 60, 10, 60]]})  # fmt: skip
        cats = [{"id": c, "name": f"c{c}"} for c in range(1, 81)]
        (root / "coco" / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "coco" / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": listed, "annotations": anns, "categories": cats}))


def traced(cmd: list[str], image_dirs: list[Path], log: Path) -> Counter:
    """Run ``cmd`` under strace; count its calls on files inside ``image_dirs``, its listings of them, and its
    opens of the instances JSONs beside them (the first launch parses each; later ones read the kept check)."""
    run = subprocess.run(["strace", "-f", "-y", "-qq", "-o", str(log), "-e",
                          "trace=%%stat,openat,open,access,faccessat,faccessat2,getdents64", *cmd],
                         cwd=REPO, capture_output=True, text=True)  # fmt: skip
    if run.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    counts: Counter = Counter()
    prefixes = tuple(f"{d}/" for d in image_dirs)
    jsons = f"{image_dirs[0].parent}/annotations/"
    for line in log.read_text().splitlines():
        if (m := LISTING.match(line)) and m["path"].rstrip("/") in {str(d) for d in image_dirs}:
            counts["getdents64 calls"] += 1
            counts["folder listings"] += line.rstrip().endswith("= 0")  # a listing ends on an empty read
        elif (m := PER_FILE.match(line)) and m["path"].startswith(prefixes):
            counts["calls on an image file"] += 1
        elif m and m["path"].startswith(jsons) and m[1].startswith("open"):
            counts["opens of an instances JSON"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--benchmark", default="coco_c4_1x")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        layout(tmp / "data", args.images)
        dirs = [tmp / "data" / "coco" / s for s in ("train2017", "val2017")]
        opts = [f"benchmark={args.benchmark}", "benchmark.requires_gpu=false", "pretrain=scratch", "seed=0",
                f"paths.datasets={tmp / 'data'}",
                f"output_root={tmp / 'out'}"]  # fmt: skip
        print(f"{args.images} train2017 images, {args.images // 10} val2017 images, benchmark={args.benchmark}")
        for n in (1, 2):
            got = traced([sys.executable, "launch.py", *opts, "plan=true"], dirs, tmp / f"launch{n}.strace")
            print(f"launch {n} (plan=true): {dict(got) or 'none'}")
        got = traced([sys.executable, "-c", TRIAL_CHECK, str(REPO / "conf"), *opts], dirs, tmp / "trial.strace")
        print(f"a trial's check: {dict(got) or 'none'}")


if __name__ == "__main__":
    main()
