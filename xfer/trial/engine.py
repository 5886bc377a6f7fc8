"""detectron2 glue for one trial: a trainer that reads xfer's converted weights, and train-then-evaluate.

Thin on purpose, like detectron2's ``tools/train_net.py``: the library trains and evaluates; xfer only
adds the MoCo/DenseCL ROI head (``xfer.trial.roi_heads``, registered by importing this module), its hooks
(``xfer.trial.hooks``), the check that every pretrained tensor was loaded, the benchmark's evaluation, and an
explicit final evaluation whose result is returned instead of being left on the trainer.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from pathlib import Path

import torch

from xfer import benchmarks, d2compat
from xfer.trial import roi_heads  # noqa: F401  registers Res5ROIHeadsExtraNorm, which the recipes build
from xfer.trial.checkpoint import SAFETENSORS, read_safetensors
from xfer.trial.events import TrainingEvents, write_final
from xfer.trial.hooks import ProgressFile, StopOnRequest

d2compat.ensure()

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.engine import DefaultTrainer, hooks  # noqa: E402
from detectron2.engine import defaults as d2_defaults  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.env import seed_all_rng  # noqa: E402
from detectron2.utils.events import CommonMetricPrinter, JSONWriter  # noqa: E402

log = logging.getLogger(__name__)


class WeightsNotLoaded(RuntimeError):
    """detectron2 built the model but did not load every pretrained ResNet tensor into it."""


def verify_loaded(model, weights_file: str) -> int:
    """Every converted tensor must now sit, unchanged, in the model's backbone (C4) or its res5 ROI head, or in
    the FPN backbone's bottom-up ResNet (``weights_file``: xfer's converted weights, a safetensors file).

    detectron2 matches names heuristically and only warns about what it could not place; a trial that
    started from random init would report a worse method. Returns the number of tensors checked."""
    model = getattr(model, "module", model)  # unwrap DDP
    state = model.state_dict()
    wrong, weights = [], read_safetensors(Path(weights_file))
    for key, value in weights.items():
        # C4: the trunk in backbone.*, res5 in the ROI head; FPN: the whole ResNet in backbone.bottom_up.*
        places = (f"roi_heads.{key}", f"backbone.bottom_up.{key}") if key.startswith("res5.") else ()
        target = next((t for t in (*places, f"backbone.{key}", f"backbone.bottom_up.{key}") if t in state),
                      f"backbone.{key}")  # fmt: skip
        have = state.get(target)
        if have is None or tuple(have.shape) != value.shape or not torch.equal(have.cpu(), torch.from_numpy(value)):
            wrong.append(target)
    if wrong:
        raise WeightsNotLoaded(
            f"{len(wrong)} pretrained tensors are not in the model after loading {weights_file}: "
            f"{', '.join(wrong[:6])}{' ...' if len(wrong) > 6 else ''}. The trial stops rather than train "
            "from random init."
        )
    return len(weights)


class Checkpointer(DetectionCheckpointer):
    """detectron2's checkpointer, reading xfer's converted weights too: a safetensors file, read as data
    (``xfer.trial.checkpoint``) and handed to detectron2's loader as it hands on its model-zoo ``.pkl`` (same
    names, same name-matching heuristics, so the same model); any other file (a trial's own ``model_*.pth``)
    as detectron2 reads it. (detectron2 hands any other file to torch.load, which recent torch lets read
    safetensors; v0.6 then matches no names and loads nothing: :func:`verify_loaded` would stop the trial.)"""

    def _load_file(self, filename):
        if not str(filename).endswith(SAFETENSORS):
            return super()._load_file(filename)
        return {"model": read_safetensors(Path(filename)), "__author__": "xfer", "matching_heuristics": True}


def reads_converted(trainer: DefaultTrainer) -> None:
    """Make a DefaultTrainer's checkpointer a :class:`Checkpointer`. DefaultTrainer builds its
    DetectionCheckpointer inline and gives that very object to its checkpoint hook, so the object's class is
    changed in place (the subclass adds one method and no state)."""
    trainer.checkpointer.__class__ = Checkpointer


class Trainer(DefaultTrainer):
    """DefaultTrainer evaluated once by the caller (with the benchmark's evaluator), writing metrics.json and
    TensorBoard events (``xfer.trial.events``), reading xfer's converted weights (:class:`Checkpointer`)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        reads_converted(self)

    def build_hooks(self):
        """detectron2's hooks without periodic evaluation, and with its writers every 20 iterations or, for
        short runs, often enough to give ten points of the training curves (logging only: results unchanged)."""
        period = max(1, min(20, self.cfg.SOLVER.MAX_ITER // 10))
        return [hooks.PeriodicWriter(self.build_writers(), period=period) if isinstance(h, hooks.PeriodicWriter) else h
                for h in super().build_hooks() if not isinstance(h, hooks.EvalHook)]  # fmt: skip

    def build_writers(self):
        return [CommonMetricPrinter(self.max_iter), JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json")),
                TrainingEvents(self.cfg.OUTPUT_DIR, lambda: self.start_iter)]  # fmt: skip


@contextlib.contextmanager
def _ddp_for(device: str):
    """DefaultTrainer wraps the model in DDP with ``device_ids=[local rank]``, which torch rejects for
    CPU modules; CPU processes (gloo) need ``device_ids=None``. Scoped to the trainer's construction."""
    original = d2_defaults.create_ddp_model
    if device == "cpu":
        d2_defaults.create_ddp_model = functools.partial(original, device_ids=None)
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = original


def train_and_evaluate(cfg, stop=None, evaluator: str = "xfer", fmt: str = "voc") -> dict:
    """Train (resuming from the last checkpoint in OUTPUT_DIR) and evaluate with ``evaluator``, one of the
    dataset format ``fmt``'s (see ``xfer.benchmarks``); the same on every rank. Returns the format's metrics.

    ``stop``: a callable polled after every iteration; when it says True, a checkpoint is saved at that
    iteration and ``xfer.trial.hooks.Interrupted`` is raised (the job then requeues and resumes from it)."""
    seed_all_rng(cfg.SEED + comm.get_rank())
    with _ddp_for(cfg.MODEL.DEVICE):
        trainer = Trainer(cfg)
    progress = ProgressFile(cfg.OUTPUT_DIR) if comm.is_main_process() else None
    if progress is not None:
        trainer.register_hooks([progress])
    if stop is not None:
        trainer.register_hooks([StopOnRequest(stop)])
    trainer.resume_or_load(resume=True)
    start, trained = trainer.start_iter, 0
    if start == 0 and cfg.MODEL.WEIGHTS.endswith(SAFETENSORS):  # fresh from the pretrained weights
        log.info("verified: all %d pretrained tensors loaded", verify_loaded(trainer.model, cfg.MODEL.WEIGHTS))
    elif start == 0 and not cfg.MODEL.WEIGHTS:  # pretrain.weights null: nothing was loaded, on purpose
        log.info("random init: no pretrained weights (MODEL.WEIGHTS ''), training from detectron2's own initialisation")
    if start >= cfg.SOLVER.MAX_ITER:  # e.g. its result.json was damaged: evaluate the final weights again
        log.info("training already finished (checkpoint at iteration %d); evaluating, 0 iterations to train", start)
        if progress is not None:  # no training hooks run: say so for the launcher's view and status
            progress.write("evaluating", cfg.SOLVER.MAX_ITER)
    else:
        if start > 0:
            log.info("resuming from iteration %d", start)
        trainer.train()
        trained = trainer.iter - start
    benchmark = benchmarks.of(fmt)
    tasks = benchmark.tasks(cfg)
    results = Trainer.test(cfg, trainer.model, [benchmark.evaluator(evaluator, name, tasks) for name in cfg.DATASETS.TEST])
    # the evaluators gather on rank 0 and give the other ranks nothing: only rank 0 has metrics to read
    metrics = benchmark.metrics(results) if comm.is_main_process() else {}
    if comm.is_main_process():
        write_final(cfg.OUTPUT_DIR, {k: v for k, v in metrics.items() if isinstance(v, int | float)}, cfg.SOLVER.MAX_ITER)
    return {
        "metric_names": benchmark.metric_names(tasks),
        "metrics": metrics,
        "start_iter": start,
        "iterations_run": trained,
        "max_iter": cfg.SOLVER.MAX_ITER,
    }
