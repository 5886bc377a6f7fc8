"""Time ``launch.py -m ... plan=true`` of a 2,000-trial sweep against a 200-trial one, in fresh processes.

The sweep is the issue's: 40 checkpoints x 2 backbones x 5 benchmarks x 5 seeds, written as a user would write it,

    python launch.py -m benchmark=voc0712_c4_24k,coco_c4_1x,coco_fpn_1x,coco_fpn_2x,coco_fpn_1x_densecl
        backbone=r50,r101 pretrain=custom pretrain.name=m00,...,m39 seed=0-4 trial.device=cpu plan=true ...

with the real benchmarks' recipes and checks. Set up here, without GPUs or real data:

- datasets the checks accept: VOC2007/VOC2012 scenes as the smoke makes them (``xfer.smoke.scenes``), and a
  COCO layout: train2017/val2017 instances JSONs with COCO's 80 categories and as many images as COCO's
  (118,287 and 5,000; ``--coco-images`` to change), each image an empty file (the checks look for every file a
  JSON lists; they decode none);
- 80 checkpoints (``<name>_<backbone>.pth`` under ``paths.weights``), torchvision-layout ResNet-50/101 with random
  weights, each its own content. They are narrow (the smoke's widths: stem 16, res2 32, 8 per group), and the
  sweep says so with ``+d2.MODEL.RESNETS...`` (the same three overrides in every job), so the checks find
  the widths they expect: 80 full-size checkpoints would be 11 GB here, twice with their conversions. What a
  plan does per trial is the same; only the first launch's conversion and hashing (cached under
  ``paths.cache``, out of the timings) would take longer.

A warm-up plan of the large sweep converts and hashes every checkpoint once, as a first real launch would.
Then each arm runs ``--repeats`` times (medians), the 200-trial sweep (4 of the 40 checkpoints) and the
2,000-trial one, and prints their ratio. ``--repo`` times another checkout's launcher (a ``git worktree`` of
an older commit) on the same inputs, for before/after figures measured back to back.

    python bench/plan_scale.py [--repeats 3] [--checkpoints 40] [--repo PATH] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BENCHMARKS = ("voc0712_c4_24k", "coco_c4_1x", "coco_fpn_1x", "coco_fpn_2x", "coco_fpn_1x_densecl")
BACKBONES = ("r50", "r101")
SEEDS = 5
WIDTHS = {"STEM_OUT_CHANNELS": 16, "RES2_OUT_CHANNELS": 32, "WIDTH_PER_GROUP": 8}  # the smoke's narrow ResNets
COCO_SPLITS = {"train2017": 118_287, "val2017": 5_000}  # images per split, as COCO 2017 has them


def names(n: int) -> list[str]:
    return [f"m{i:02d}" for i in range(n)]


def write_voc(root: Path) -> None:
    """VOC2007 trainval/test and VOC2012 trainval, a few generated scenes each (the smoke's generator)."""
    from xfer.smoke import scenes

    scenes.ensure_dataset(root, {"voc_2007_trainval": 2, "voc_2012_trainval": 2, "voc_2007_test": 2}, (64, 96))


def write_coco(root: Path, splits: dict[str, int]) -> None:
    """coco/{train2017,val2017}/ and their instances JSONs: COCO's 80 category ids (1-90 with gaps), the images
    present as empty files, a box on each of the first few."""
    skipped = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}  # the ids COCO leaves out of 1..90
    categories = [{"id": i, "name": f"class{i}", "supercategory": "thing"} for i in range(1, 91) if i not in skipped]
    assert len(categories) == 80
    for split, count in splits.items():
        folder = root / "coco" / split
        folder.mkdir(parents=True, exist_ok=True)
        images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 64, "height": 48} for i in range(1, count + 1)]
        for image in images:
            (folder / image["file_name"]).touch()
        annotations = [{"id": i, "image_id": i, "category_id": categories[i % 80].get("id"), "iscrowd": 0,
                        "bbox": [4.0, 4.0, 20.0, 16.0], "area": 320.0, "segmentation": [[4, 4, 24, 4, 24, 20, 4, 20]]}
                       for i in range(1, min(count, 10) + 1)]  # fmt: skip
        ann = root / "coco" / "annotations" / f"instances_{split}.json"
        ann.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"images": images, "annotations": annotations, "categories": categories})
        if not ann.is_file() or ann.read_text() != text:  # unchanged: its state, and what is cached by it, stays
            ann.write_text(text)


def write_weights(folder: Path, checkpoints: list[str]) -> None:
    """``<name>_<backbone>.pth``: a narrow torchvision ResNet of the backbone's depth, each seeded differently."""
    import torch

    from xfer.smoke import layouts

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(checkpoints):
        for backbone in BACKBONES:
            path = folder / f"{name}_{backbone}.pth"
            if not path.exists():
                depth = int(backbone[1:])
                torch.save(layouts.torchvision_resnet(depth, *WIDTHS.values(), seed=1000 * i + depth), path)


def sweep(base: Path, checkpoints: list[str], out: Path) -> list[str]:
    """The launch's arguments: every job of benchmarks x backbones x checkpoints x seeds, planned only."""
    return ["-m", f"benchmark={','.join(BENCHMARKS)}", f"backbone={','.join(BACKBONES)}", "pretrain=custom",
            f"pretrain.name={','.join(checkpoints)}", f"seed=0-{SEEDS - 1}", "trial.device=cpu",
            *(f"+d2.MODEL.RESNETS.{k}={v}" for k, v in WIDTHS.items()),
            f"paths.datasets={base / 'datasets'}", f"paths.weights={base / 'weights'}",
            f"paths.cache={base / 'cache'}", f"output_root={out}", "plan=true"]  # fmt: skip


def launch(repo: Path, args: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stdout) of ``python launch.py ARGS`` in a fresh process, as a user runs it. The
    CPU seconds (user + system) are the figure to compare on a machine other jobs share: its wall time is
    whatever share of the cores the launch got."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(repo / "launch.py"), *args], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})  # fmt: skip
    took = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode or "no problems found" not in proc.stdout:
        raise RuntimeError(f"launch failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return took, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, proc.stdout


def planned(stdout: str) -> int:
    """How many trials the plan's table shows (one ``to run`` cell per trial: nothing has run)."""
    return sum(line.count("| to run") for line in stdout.splitlines() if line.startswith("| "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoints", type=int, default=40, help="of the large sweep (the small one has 4)")
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose launch.py is timed")
    parser.add_argument("--keep", type=Path, default=None, help="make the inputs here and keep them (reused)")
    parser.add_argument("--coco-images", type=int, nargs=2, default=list(COCO_SPLITS.values()),
                        metavar=("TRAIN", "VAL"), help="images listed in train2017 and val2017")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xfer-plan-scale-") as tmp:
        base = args.keep or Path(tmp)
        t0 = time.perf_counter()
        large, small = names(args.checkpoints), names(4)
        write_voc(base / "datasets")
        write_coco(base / "datasets", dict(zip(COCO_SPLITS, args.coco_images, strict=True)))
        write_weights(base / "weights", large)
        made = time.perf_counter() - t0
        first, _, _ = launch(args.repo, sweep(base, large, base / "out"))  # converts and hashes every checkpoint once
        print(f"inputs made in {made:.1f} s; the first plan (converts and hashes {2 * len(large)} checkpoints) "
              f"{first:.1f} s; median of {args.repeats} runs ({args.repo}):")  # fmt: skip
        arms = {}
        for label, checkpoints in (("small", small), ("large", large)):
            runs = []
            for i in range(args.repeats):
                took, cpu, stdout = launch(args.repo, sweep(base, checkpoints, base / f"out-{label}{i}"))
                runs.append((took, cpu))
            n = len(BENCHMARKS) * len(BACKBONES) * len(checkpoints) * SEEDS
            if planned(stdout) != n:
                raise RuntimeError(f"the plan shows {planned(stdout)} trials, not {n}:\n{stdout[-3000:]}")
            arms[label] = (statistics.median(t for t, _ in runs), statistics.median(c for _, c in runs), n)
        (few, few_cpu, n_few), (many, many_cpu, n_many) = arms["small"], arms["large"]
        print(f"  plan {n_few:5d} trials {few:7.2f} s wall {few_cpu:7.2f} s CPU")
        extra = f" ({(many_cpu - few_cpu) / (n_many - n_few) * 1000:.1f} ms CPU per extra trial)" if n_many > n_few else ""
        print(f"  plan {n_many:5d} trials {many:7.2f} s wall {many_cpu:7.2f} s CPU   {many_cpu / few_cpu:5.2f}x {n_few} "
              f"trials' CPU{extra}")  # fmt: skip


if __name__ == "__main__":
    main()
