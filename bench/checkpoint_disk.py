"""Disk per trial of the real recipe: the size of one detectron2 checkpoint, times the files each
``trial.keep_checkpoints`` value keeps.

    python bench/checkpoint_disk.py [--backbone r50 r101]

Builds the voc0712_c4_24k model on the CPU exactly as a trial does (``xfer.trial.recipe.build``, detectron2's
``build_model``, ``build_optimizer`` and ``build_lr_scheduler``), gives every parameter its SGD momentum
buffer (one optimizer step on zero gradients, as after the first real iteration), and saves it with
detectron2's ``DetectionCheckpointer`` twice: the model with the optimizer (SGD momentum) and scheduler
state, as current detectron2's ``DefaultTrainer`` checkpoints hold them, and the model alone, as v0.6's do
(its ``DefaultTrainer.state_dict`` leaves out the inner trainer's optimizer). Nothing is trained; no GPU or
data is needed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from xfer import d2compat  # noqa: E402
from xfer.trial import recipe  # noqa: E402


def checkpoint_bytes(backbone: str, out: Path) -> tuple[int, int, int, int]:
    """(bytes of one checkpoint with the optimizer, bytes without it, MAX_ITER, CHECKPOINT_PERIOD) of the
    voc0712_c4_24k recipe."""
    d2compat.ensure()
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model
    from detectron2.solver import build_lr_scheduler, build_optimizer

    import xfer.trial.roi_heads  # noqa: F401  registers Res5ROIHeadsExtraNorm

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["benchmark=voc0712_c4_24k", f"backbone={backbone}"])
    d2 = recipe.build(cfg, Path("unused.pkl"), out, "cpu")
    model = build_model(d2)
    optimizer = build_optimizer(d2, model)
    scheduler = build_lr_scheduler(d2, optimizer)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    optimizer.step()  # creates every momentum buffer, as the first iteration does
    DetectionCheckpointer(model, str(out), optimizer=optimizer, scheduler=scheduler).save("full", iteration=4999)
    DetectionCheckpointer(model, str(out)).save("model_only", iteration=4999)
    sizes = [(out / f"{name}.pth").stat().st_size for name in ("full", "model_only")]
    return sizes[0], sizes[1], d2.SOLVER.MAX_ITER, d2.SOLVER.CHECKPOINT_PERIOD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", nargs="+", default=["r50"], choices=("r50", "r101"))
    args = parser.parse_args()
    for backbone in args.backbone:
        with tempfile.TemporaryDirectory() as tmp:
            full, model_only, max_iter, period = checkpoint_bytes(backbone, Path(tmp))
        periodic = max_iter // period  # detectron2 saves after every `period` iterations ...
        files = periodic + 1  # ... and model_final.pth after the last one
        print(f"{backbone}: MAX_ITER {max_iter}, CHECKPOINT_PERIOD {period}: {periodic} periodic checkpoints + "
              "model_final.pth")  # fmt: skip
        kinds = (("current detectron2 (model + SGD momentum)", full), ("detectron2 v0.6 (model)", model_only))
        for what, size in kinds:
            print(f"  {what}: one checkpoint {size:,} bytes ({size / 2**20:.1f} MiB)")
            for keep, n in (("all", files), ("final", 1), ("none", 0)):
                print(f"    trial.keep_checkpoints={keep}: {n} file(s), {n * size / 1e9:.2f} GB per trial, "
                      f"{60 * n * size / 1e9:.0f} GB for 60 trials")  # fmt: skip

if __name__ == "__main__":
    main()
