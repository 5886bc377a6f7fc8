"""Reports at scale: collect and status over a synthetic 2,000-trial sweep, against baselines in the same run.

The sweep is what 40 checkpoints x 2 backbones x 5 benchmarks x 5 seeds leave on disk: each trial in the real
folder layout ``<root>/<benchmark>/<backbone>_<pretrain>/w-<12 hex>/seed<N>/`` with the files a finished trial
holds (``trial.yaml``, ``result.json`` with the fields ``xfer.trial.runner`` writes, its identity among them,
``d2_config.yaml``, ``log.txt``, ``metrics.json`` as detectron2's JSONWriter writes it (``--curve-lines`` lines of
its keys, sorted: 150 by default, ~80 KB, long enough to be sampled as a real run's 1,200-9,000 lines are, see
``xfer.report.metrics_log``), ``last_checkpoint`` and an empty ``model_final.pth``;
``identity.json`` in each weights folder, so ``xfer.store.state`` finds every trial done), the benchmarks
and their metric names real (``conf/benchmark``, ``xfer.benchmarks``), scratch and both supervised pretrains
among the checkpoints, so every group has its baseline. The numbers are drawn from a seeded generator:
nothing here is a measurement.

Printed, as medians of ``--repeats`` runs, each with a ratio against a baseline run in the same call:

1. ``collect`` in process (all five formats, no plots) with the default ``--compare baseline`` against
   ``--compare all`` (every pair of methods: 780 per group of 40) on the same sweep;
2. ``collect`` over the 2,000-trial sweep against a 200-trial one (4 of the 40 checkpoints);
3. ``collect`` with its plots (``xfer.report.plot_groups``: an overview and a figure per group, reading every
   trial's ``metrics.json``) against the same without plots (``--no-plots``);
4. ``python -m xfer status DIR`` as a subprocess, 2,000 trials against 200.

Speed is measured here, by ratios within one call, never by timed assertions in the tests.
:func:`time_plan` is the place for ``launch.py -m ... plan=true`` over the same 2,000 trials.

    python bench/scale.py [--repeats 3] [--keep DIR] [--curve-lines 150]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collect_speed import timed  # noqa: E402  (bench/, this script's folder, is on sys.path)

from xfer.benchmarks import coco, voc  # noqa: E402
from xfer.store import identity  # noqa: E402

# Real benchmarks (conf/benchmark) and their metric names; COCO's results also hold APs/APm/APl per task.
BENCHMARKS = {"voc0712_c4_24k": voc.METRIC_NAMES, "coco_c4_1x": coco.METRIC_NAMES, "coco_fpn_1x": coco.METRIC_NAMES,
              "coco_fpn_2x": coco.METRIC_NAMES, "coco_fpn_1x_densecl": coco.METRIC_NAMES}  # fmt: skip
COCO_OTHER = tuple(f"{task}_{s}" for task in ("box", "mask") for s in ("APs", "APm", "APl"))
BACKBONES = ("r50", "r101")
NAMED = ("scratch", "supervised", "supervised_tv", "moco_v1", "moco_v2_200ep", "moco_v2_800ep", "densecl",
         "regioncl", "regioncl_d", "regioncl_m")  # conf/pretrain; the rest of the 40 are custom checkpoints
SEEDS = 5
MAX_ITER = {"voc0712_c4_24k": 24000, "coco_c4_1x": 90000, "coco_fpn_1x": 90000, "coco_fpn_2x": 180000,
            "coco_fpn_1x_densecl": 90000}  # fmt: skip
CURVE_LINES = 150  # metrics.json lines per trial (a real run logs every 20 iterations: 1,200 to 9,000)
BASE = {"AP50": 82.0, "AP": 57.0, "AP75": 64.0}  # VOC-like; COCO: box ~39, mask ~35


def pretrains(n: int) -> list[str]:
    """``n`` pretrain names: conf/pretrain's first, then custom ``ckpt_NN`` checkpoints."""
    return [*NAMED, *(f"ckpt_{i:02d}" for i in range(n - len(NAMED)))][:n]


def weights_id(pretrain: str, backbone: str) -> str:
    """A 12-hex weights id per checkpoint file (``none`` for scratch, as ``xfer.store.identity`` names it)."""
    return "none" if pretrain == "scratch" else hashlib.sha256(f"{pretrain}_{backbone}".encode()).hexdigest()[:12]


def recipe(bench: str, backbone: str) -> dict[str, object]:
    """A stand-in for a resolved detectron2 recipe as an identity holds it: ~300 flattened keys, a real
    recipe's size (detectron2's defaults plus the benchmark's and backbone's keys)."""
    keys = {f"MODEL.KEY_{i:03d}": (i * 0.5 if i % 3 else [i, i + 1]) for i in range(300)}
    return {**keys, "MODEL.RESNETS.DEPTH": 50 if backbone == "r50" else 101, "DATASETS.TEST": [bench]}


@functools.cache
def trial_identity(bench: str, backbone: str, sha: str) -> identity.Identity:
    """The identity the launcher records for the setting's weights folder (``identity.json``) and the trial copies
    into its result: recipe, weights, data, evaluator (``xfer.store.identity``)."""
    weights = {"sha256": sha} if sha == identity.NO_WEIGHTS else {"sha256": sha, "format": "torchvision", "prefix": None}
    data = {bench + "_train": hashlib.sha256(f"{bench}train".encode()).hexdigest(),
            bench + "_test": hashlib.sha256(f"{bench}test".encode()).hexdigest()}  # fmt: skip
    return identity.Identity(recipe(bench, backbone), weights, data, {"name": "xfer", "libraries": {}})


def _values(rng: random.Random, names: tuple[str, ...], offset: float) -> dict[str, float]:
    """Seeded numbers near a benchmark's usual level (VOC ~82/57/64, COCO box ~39, mask ~35), plus a method offset."""
    out = {}
    for m in names:
        level = BASE.get(m) or (35.0 if m.startswith("mask") else 39.0) + (20.0 if m.endswith("AP50") else 0.0)
        out[m] = round(level + offset + rng.gauss(0, 0.3), 4)
    return out


def metrics_json(max_iter: int, lines: int, rng: random.Random) -> str:
    """``metrics.json`` as detectron2's JSONWriter leaves it after training (keys sorted, one object per logging
    step, the last at ``max_iter - 1``; the keys of a real trial's file): a loss that falls with noise, lr with
    warm-up and a step at 3/4."""
    period, out = max(1, max_iter // lines), []
    for it in range(period - 1, max_iter, period):
        lr = 0.02 * min(1.0, (it + 1) / 1000) * (0.1 if it >= 0.75 * max_iter else 1.0)
        cls, box = 0.2 + 0.6 * 0.9 ** (it / period) + rng.gauss(0, 0.02), 0.25 + rng.gauss(0, 0.02)
        rpn_cls, rpn_loc = 0.05 + rng.gauss(0, 0.005), 0.04 + rng.gauss(0, 0.005)
        out.append(json.dumps({
            "data_time": 0.003 + rng.random() / 1000, "eta_seconds": (max_iter - it) * 0.4,
            "fast_rcnn/cls_accuracy": 0.9, "fast_rcnn/false_negative": 0.3, "fast_rcnn/fg_cls_accuracy": 0.7,
            "iteration": it, "loss_box_reg": box, "loss_cls": cls, "loss_rpn_cls": rpn_cls, "loss_rpn_loc": rpn_loc,
            "lr": lr, "roi_head/num_bg_samples": 384.0, "roi_head/num_fg_samples": 128.0,
            "rpn/num_neg_anchors": 230.0, "rpn/num_pos_anchors": 26.0, "time": 0.4 + rng.random() / 100,
            "total_loss": cls + box + rpn_cls + rpn_loc}, sort_keys=True))  # fmt: skip
    return "\n".join(out) + "\n"


def write_trial(root: Path, bench: str, backbone: str, pretrain: str, seed: int, rng: random.Random,
                offset: float, curve_lines: int = CURVE_LINES) -> None:  # fmt: skip
    """One finished trial's folder as the launcher and ``xfer.trial.runner`` leave it."""
    names, wid = BENCHMARKS[bench], weights_id(pretrain, backbone)
    folder = root / bench / f"{backbone}_{pretrain}" / f"w-{wid}" / f"seed{seed}"
    folder.mkdir(parents=True)
    sha = wid if wid == "none" else wid + "0" * 52
    family = trial_identity(bench, backbone, sha)
    if seed == 0:
        (folder.parent / identity.IDENTITY).write_text(json.dumps(family.record(), indent=2, sort_keys=True))
    metrics = _values(rng, names, offset)
    if names != voc.METRIC_NAMES:
        metrics |= {m: round(rng.uniform(15, 55), 4) for m in COCO_OTHER}
    setting = {"benchmark": bench, "backbone": backbone, "pretrain": pretrain, "overrides": "", "weights": wid}
    cfg = {"seed": seed, "benchmark": {"name": bench, "trials": SEEDS, "published_std": None},
           "backbone": {"name": backbone}, "pretrain": {"name": pretrain, "label": pretrain, "sha256": sha},
           "trial": {"device": "auto", "evaluator": "xfer", "keep_checkpoints": "final"}}  # fmt: skip
    mine = family.of_seed(seed).record()
    job = {"cfg": cfg, "overrides": "", "identity": mine}
    (folder / "trial.yaml").write_text(yaml.dump(job, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False))
    record = {
        "setting": {**setting, "key": f"{bench}/{backbone}_{pretrain}", "label": pretrain},
        "trials_expected": SEEDS, "seed": seed, "published": None, "datasets_root": "datasets",
        "dataset_format": "voc" if names == voc.METRIC_NAMES else "coco",
        "weights": {"source": None if wid == "none" else f"weights/{pretrain}_{backbone}.pth", "sha256": sha,
                    "converted": None, "layout": "none" if wid == "none" else "torchvision", "depth": 50,
                    "tensors": 0 if wid == "none" else 265, "dropped": {}},
        "config_sha256": hashlib.sha256(folder.name.encode()).hexdigest(), "versions": {"python": "3"},
        "metric_names": list(names), "metrics": metrics, "identity": mine,
        "run": {"evaluator": "xfer", "device": "cuda", "device_count": 8, "wall_time_s": 19000.0 + seed,
                "start_iter": 0, "iterations_run": 24000, "max_iter": 24000, "world_size": 8, "amp": False,
                "global_batch": 16, "batch_per_process": 2, "finished_at": "2026-01-01T00:00:00+0000"},
    }  # fmt: skip
    (folder / "result.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    (folder / "d2_config.yaml").write_text("MODEL:\n  WEIGHTS: ''\n")
    (folder / "log.txt").write_text("[xfer] trial done\n")
    noise = random.Random(f"{bench}/{backbone}_{pretrain}/{seed}")  # its own: the metrics stay as before
    (folder / "metrics.json").write_text(metrics_json(MAX_ITER[bench], curve_lines, noise))
    (folder / "last_checkpoint").write_text("model_final.pth")
    (folder / "model_final.pth").touch()


def write_sweep(root: Path, checkpoints: int = 40, backbones: tuple[str, ...] = BACKBONES,
                benchmarks: tuple[str, ...] = tuple(BENCHMARKS), seeds: int = SEEDS,
                curve_lines: int = CURVE_LINES) -> int:  # fmt: skip
    """Write the synthetic sweep under ``root``; returns the number of trials."""
    rng = random.Random(0)
    n = 0
    for bench in benchmarks:
        for backbone in backbones:
            for i, pretrain in enumerate(pretrains(checkpoints)):
                for seed in range(seeds):
                    write_trial(root, bench, backbone, pretrain, seed, rng, offset=0.05 * i, curve_lines=curve_lines)
                    n += 1
    return n


def time_collect(root: Path, repeats: int, compare: str = "baseline", plots: bool = False) -> float:
    """Median seconds of ``collect`` in process (every format; plots only with ``plots``) with the comparisons
    of ``compare``."""
    from xfer.report import collect

    out = root.parent / f"{root.name}-report"
    return timed(lambda: collect.collect([root], out, plots=plots, compare=compare), repeats)


def time_status(root: Path, repeats: int) -> float:
    """Median seconds of ``python -m xfer status DIR`` in a fresh process (as a user runs it)."""
    env = {**os.environ, "COLUMNS": "200"}

    def run() -> None:
        subprocess.run([sys.executable, "-m", "xfer", "status", str(root)], cwd=REPO, env=env, check=True,
                       capture_output=True)  # fmt: skip

    return timed(run, repeats)


def time_plan(root: Path, repeats: int) -> float | None:
    """Median seconds of ``launch.py -m ... plan=true`` over the trials under ``root``: not measured yet (None).
    The hook for it: same sweep, same repeats, printed next to the others by :func:`main`."""
    return None


def report(pairs: list[tuple[str, float | None, str, float | None]]) -> list[str]:
    """One line per measured arm: its median and its ratio against the baseline arm named beside it."""
    lines = []
    for name, seconds, base_name, base in pairs:
        if seconds is None:
            lines.append(f"  {name:34s}      —    not measured yet (the time_plan hook)")
        else:
            ratio = f"   {seconds / base:6.2f}x {base_name} ({base:.3f} s)" if base else ""
            lines.append(f"  {name:34s} {seconds:7.3f} s{ratio}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoints", type=int, default=40, help="of the large sweep (the small one has 4)")
    parser.add_argument("--keep", type=Path, default=None, help="write the sweeps here and keep them")
    parser.add_argument("--curve-lines", type=int, default=CURVE_LINES, help="metrics.json lines per trial")
    args = parser.parse_args()
    from xfer.report import collect

    with tempfile.TemporaryDirectory(prefix="xfer-scale-") as tmp:
        base = args.keep or Path(tmp)
        large, small = base / "large", base / "small"
        t0 = time.perf_counter()
        lines = args.curve_lines
        n_large, n_small = write_sweep(large, args.checkpoints, curve_lines=lines), write_sweep(small, 4, curve_lines=lines)
        print(f"wrote {n_large} + {n_small} trials in {time.perf_counter() - t0:.1f} s; median of {args.repeats} runs:")
        collect.collect([small], base / "warm")  # imports (scipy, matplotlib) and t quantiles, as in any run
        against = time_collect(large, args.repeats)
        drawn = time_collect(large, args.repeats, plots=True)
        every = time_collect(large, args.repeats, "all")
        few = time_collect(small, args.repeats)
        status_few, status_many = time_status(small, args.repeats), time_status(large, args.repeats)
        plan = time_plan(large, args.repeats)
    print("\n".join(report([
        (f"collect {n_large}, compare all", every, "compare baseline", against),
        (f"collect {n_large}, compare baseline", against, f"{n_small} trials", few),
        (f"collect {n_large}, plots", drawn, "no plots", against),
        (f"status {n_large}", status_many, f"{n_small} trials", status_few),
        (f"plan {n_large}", plan, "", None),
    ])))


if __name__ == "__main__":
    main()
