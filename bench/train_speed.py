"""Training speed of one trial through launch.py vs a bare detectron2 loop on the identical config.

Runs, in one call on one machine:
  1. a trial through ``launch.py`` (Hydra, validation, weights conversion, xfer's trainer);
  2. a bare ``DefaultTrainer`` on the ``d2_config.yaml`` that trial wrote (same data, same weights);
  3. optionally (``--amp``, GPU only) the same trial through ``launch.py`` with ``+experiment=amp``
     (detectron2's AMPTrainer): its s/iter and its ratio to the full-precision trial;
  4. optionally (``--memory 2,8,16``) the bare loop at other global batch sizes, for peak GPU memory.
Both speeds are detectron2's own IterationTimer figure (s/iter after its warm-up iterations); the ratio
launch.py / bare is what matters (goal <= 1.01). ``--repeats`` runs each arm several times; medians.

CPU:  python bench/train_speed.py --benchmark smoke --iters 40
GPU:  python bench/train_speed.py --benchmark voc0712_c4_24k --iters 100 --amp --memory 2,8,16
For voc0712_c4_24k it generates full-size synthetic VOC data (480-800 px) and a random full-width
ResNet-50 in torchvision layout, since the real ones are not on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SPEED = re.compile(r"Overall training speed: (\d+) iterations in \S+ \(([\d.]+) s / it\)")


def speed_of(log: str) -> float:
    found = SPEED.findall(log)
    if not found:
        raise RuntimeError("no 'Overall training speed' line in the log:\n" + log[-3000:])
    return float(found[-1][1])


def synthetic_inputs(root: Path) -> list[str]:
    """Full-size synthetic VOC and a random full-width R50, as overrides for the voc0712 benchmark."""
    from xfer import smoke

    data = smoke.ensure_dataset(
        root / "datasets", {"voc_2007_trainval": 96, "voc_2012_trainval": 96, "voc_2007_test": 32}, (480, 800)
    )
    widths = (64, 256, 64)  # stem, res2 out, width per group: the full R50
    weights = smoke.ensure_weights(root / "weights" / "r50_tv.pth", "torchvision", {"random": [50, *widths]},
                                   lambda: smoke.layouts.torchvision_resnet(50, *widths))  # fmt: skip
    return [f"paths.datasets={data}", "pretrain=supervised_tv", f"pretrain.weights={weights}"]


def via_launch(benchmark: str, iters: int, out: Path, extra: list[str]) -> tuple[float, Path]:
    args = [
        f"benchmark={benchmark}", "seed=0", f"output_root={out}", f"benchmark.d2.SOLVER.MAX_ITER={iters}",
        "++benchmark.d2.TEST.PRECISE_BN.NUM_ITER=20", *extra,
    ]  # fmt: skip
    proc = subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-5000:])
    (result,) = out.rglob("result.json")
    return speed_of((result.parent / "log.txt").read_text()), result.parent


def bare(config: Path, datasets: str, out: Path, ims: int | None, iters: int | None) -> dict:
    """The bare arm, in a fresh process like the launch.py arm."""
    cmd = [sys.executable, __file__, "bare", str(config), datasets, str(out)]
    cmd += [f"--ims={ims}"] if ims else []
    cmd += [f"--bare-iters={iters}"] if iters else []
    env = {"OMP_NUM_THREADS": "1", **os.environ}  # what xfer.launch.local gives each trial process unless told otherwise
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-5000:])
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**stats, "s_per_iter": speed_of(proc.stderr + proc.stdout)}


def bare_main(config: str, datasets: str, out: str, ims: int | None, iters: int | None) -> None:
    """DefaultTrainer on a trial's d2_config.yaml: nothing of xfer's but the ROI head and the data."""
    import logging

    import torch

    from xfer import d2compat
    from xfer.benchmarks import voc as data

    logging.basicConfig(level=logging.INFO)
    d2compat.ensure()
    from detectron2.config import CfgNode
    from detectron2.engine import DefaultTrainer
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.events import CommonMetricPrinter, JSONWriter

    from xfer.trial import engine  # its import registers Res5ROIHeadsExtraNorm (xfer.trial.roi_heads)

    class Bare(DefaultTrainer):
        """detectron2's DefaultTrainer; only its writers match xfer's (no TensorBoard dependency), and it reads
        xfer's converted weights (safetensors), as a trial does."""

        def __init__(self, cfg):
            super().__init__(cfg)
            engine.reads_converted(self)

        def build_writers(self):
            return [CommonMetricPrinter(self.max_iter), JSONWriter(str(Path(self.cfg.OUTPUT_DIR) / "metrics.json"))]

    cfg = CfgNode.load_cfg(Path(config).read_text())
    cfg.defrost()
    cfg.OUTPUT_DIR = out  # everything else exactly as the trial ran it
    if ims:
        cfg.SOLVER.IMS_PER_BATCH = ims
    if iters:
        cfg.SOLVER.MAX_ITER = iters
    data.register(Path(datasets), list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST))
    Path(out).mkdir(parents=True, exist_ok=True)
    seed_all_rng(cfg.SEED)  # as detectron2's default_setup does: same batches, same image sizes
    trainer = Bare(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    print(json.dumps({"ims_per_batch": cfg.SOLVER.IMS_PER_BATCH, "peak_gib": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="smoke")
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--memory", default="", help="global batch sizes to measure peak GPU memory at")
    parser.add_argument("--amp", action="store_true", help="also time the trial with +experiment=amp (GPU only)")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if args.amp:
        from xfer.trial import devices

        if not devices.gpu_count():
            parser.error("--amp needs a GPU: detectron2's AMPTrainer refuses to run on CPU")
    work = args.work or Path(tempfile.mkdtemp(prefix="xfer-bench-"))
    extra = synthetic_inputs(work / "inputs") if not args.benchmark.startswith("smoke") else []
    launch_s, bare_s, amp_s, trial = [], [], [], None
    for i in range(args.repeats):
        s, trial = via_launch(args.benchmark, args.iters, work / f"launch{i}", extra)
        launch_s.append(s)
        datasets = json.loads((trial / "result.json").read_text())["datasets_root"]
        bare_s.append(bare(trial / "d2_config.yaml", datasets, work / f"bare{i}", None, None)["s_per_iter"])
        if args.amp:
            amp_s.append(via_launch(args.benchmark, args.iters, work / f"amp{i}", [*extra, "+experiment=amp"])[0])
        amp = f", AMP launch.py {amp_s[-1]:.4f} s/iter" if amp_s else ""
        print(f"repeat {i}: launch.py {launch_s[-1]:.4f} s/iter, bare {bare_s[-1]:.4f} s/iter{amp}", flush=True)
    a, b = statistics.median(launch_s), statistics.median(bare_s)
    print(f"{args.benchmark}, {args.iters} iterations, median of {args.repeats}:")
    print(f"  launch.py {a:.4f} s/iter | bare detectron2 {b:.4f} s/iter | ratio {a / b:.3f}")
    if amp_s:
        c = statistics.median(amp_s)
        print(f"  AMP (+experiment=amp) launch.py {c:.4f} s/iter | AMP / full precision {c / a:.3f}")
    for ims in [int(x) for x in args.memory.split(",") if x]:
        stats = bare(trial / "d2_config.yaml", datasets, work / f"mem{ims}", ims, 20)
        print(
            f"  IMS_PER_BATCH {ims:>2}: peak GPU memory {stats['peak_gib']:.2f} GiB, {stats['s_per_iter']:.4f} s/iter"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "bare":
        p = argparse.ArgumentParser()
        p.add_argument("cmd"), p.add_argument("config"), p.add_argument("datasets"), p.add_argument("out")
        p.add_argument("--ims", type=int), p.add_argument("--bare-iters", type=int)
        a = p.parse_args()
        bare_main(a.config, a.datasets, a.out, a.ims, a.bare_iters)
    else:
        main()
