"""detectron2 glue for one trial: the seed's ROI head, a trainer, and train-then-evaluate.

Thin on purpose, like detectron2's ``tools/train_net.py``: the library trains and evaluates; xfer only
adds the MoCo/DenseCL ROI head (res5 followed by one more norm layer), the benchmark's evaluation, and an explicit
final evaluation whose result is returned instead of being left on the trainer.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from pathlib import Path

import torch

from xfer import benchmarks, d2compat
from xfer.store.files import PROGRESS, write_json_atomic
from xfer.trial.checkpoint import SAFETENSORS, read_safetensors

d2compat.ensure()

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.engine import DefaultTrainer, hooks  # noqa: E402
from detectron2.engine import defaults as d2_defaults  # noqa: E402
from detectron2.layers import get_norm  # noqa: E402
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads  # noqa: E402
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


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """Res5 ROI head with an extra norm layer after res5, as in the MoCo paper's detection recipe."""

    @classmethod
    def _build_res5_block(cls, cfg):
        seq, out_channels = super()._build_res5_block(cfg)
        seq.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
        return seq, out_channels


class Trainer(DefaultTrainer):
    """DefaultTrainer evaluated once by the caller (with the benchmark's evaluator), writing metrics.json only,
    reading xfer's converted weights (:class:`Checkpointer`)."""

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
        return [CommonMetricPrinter(self.max_iter), JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"))]


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


class Interrupted(Exception):
    """Training stopped early on request (a preemption warning), after saving a checkpoint."""

    def __init__(self, iteration: int) -> None:
        super().__init__(f"stopped after iteration {iteration}, checkpoint saved")
        self.iteration = iteration


class StopOnRequest(hooks.HookBase):
    """After each iteration, if any rank was asked to stop: save a checkpoint there, then stop.

    The ranks agree through one all-reduce per iteration, so all save and stop at the same iteration.
    """

    def __init__(self, requested) -> None:
        self._requested = requested

    def after_step(self):
        flag = torch.tensor([1.0 if self._requested() else 0.0])
        if comm.get_world_size() > 1:
            import torch.distributed as dist

            if dist.get_backend() == "nccl":
                flag = flag.cuda()
            dist.all_reduce(flag)
        if flag.item() > 0:
            self.trainer.checkpointer.save(f"model_{self.trainer.iter:07d}", iteration=self.trainer.iter)
            comm.synchronize()
            raise Interrupted(self.trainer.iter)


class ProgressFile(hooks.HookBase):
    """Rank 0 keeps ``progress.json`` (iteration, phase, times) current for the launcher's live view
    and ``python -m xfer status``: a few small atomic writes a minute, whatever the iteration speed."""

    def __init__(self, out_dir: str, every_s: float = 2.0) -> None:
        self._path = Path(out_dir) / PROGRESS
        self._every_s = every_s
        self._last = 0.0
        self._started = time.time()

    def write(self, phase: str, done: int) -> None:
        record = {"phase": phase, "iteration": done, "max_iter": self.trainer.max_iter,
                  "start_iter": self.trainer.start_iter, "started_at": self._started, "updated_at": time.time()}  # fmt: skip
        write_json_atomic(self._path, record)
        self._last = record["updated_at"]

    def before_train(self):
        self._started = time.time()
        self.write("training", self.trainer.start_iter)

    def after_step(self):
        if time.time() - self._last >= self._every_s or self.trainer.iter + 1 == self.trainer.max_iter:
            self.write("training", self.trainer.iter + 1)

    def after_train(self):  # also runs when training raised: then iter is where it stopped
        done = self.trainer.iter >= self.trainer.max_iter
        self.write("evaluating" if done else "stopped", min(self.trainer.iter, self.trainer.max_iter))


def train_and_evaluate(cfg, stop=None, evaluator: str = "xfer", fmt: str = "voc") -> dict:
    """Train (resuming from the last checkpoint in OUTPUT_DIR) and evaluate with ``evaluator``, one of the
    dataset format ``fmt``'s (see ``xfer.benchmarks``); the same on every rank. Returns the format's metrics.

    ``stop``: a callable polled after every iteration; when it says True, a checkpoint is saved at that
    iteration and :class:`Interrupted` is raised (the job then requeues and resumes from it)."""
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
    results = Trainer.test(cfg, trainer.model, [benchmark.evaluator(evaluator, name) for name in cfg.DATASETS.TEST])
    return {
        "metrics": benchmark.metrics(results),
        "start_iter": start,
        "iterations_run": trained,
        "max_iter": cfg.SOLVER.MAX_ITER,
    }
