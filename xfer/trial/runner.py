"""The trial runner: one Hydra job = convert weights, train, evaluate, write ``result.json``.

The launcher writes the composed config as ``trial.yaml`` into the trial's folder; every process of
the trial (started by ``xfer.launch.local`` or by SLURM) reads it there and runs :func:`run_rank`.

A trial's folder is fixed by its setting, its weights' content and its seed (``xfer.store.identity``), so running
the same command again finds it:
a ``result.json`` means done (skipped), detectron2's ``last_checkpoint`` means resume from there.
``result.json`` is written last and atomically; it carries the metrics and everything needed to
trust them later (recipe hash, versions, devices, wall time, iterations, weights).

The launcher uses this module's hand-over half (:func:`write_job`) and imports no torch
(see ``xfer.trial.devices``); torch is imported where a trial process needs it.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from xfer import benchmarks, d2compat
from xfer.store import handover, identity, state
from xfer.store.digests import file_sha256
from xfer.store.files import RESULT, write_json_atomic, write_text_atomic
from xfer.store.identity import no_weights
from xfer.store.records import Setting, published_record
from xfer.store.redo import prune_checkpoints, set_aside_damaged
from xfer.trial import devices, dist, recipe
from xfer.trial.checks import InputError, problems, weights_of

log = logging.getLogger(__name__)


def setting_of(cfg: DictConfig, overrides: str = "", sha256: str | None = None) -> Setting:
    """What the trial measures: its setting (overrides as ``xfer.store.identity`` derives them) and weights."""
    return Setting(cfg.benchmark.name, cfg.backbone.name, cfg.pretrain.name, overrides, identity.weights_id(sha256))


def weights_sha256(cfg: DictConfig, cached: bool = True) -> str:
    """The content hash of the trial's weights; OSError when unreadable. ``cached``: as kept under
    ``paths.cache`` (the launcher plans with it); else read from the file now (the trial job checks its
    weights against the launcher's plan so, trusting no cache). A trial without weights (random init)
    reads no file: its id is ``identity.NO_WEIGHTS``."""
    if no_weights(cfg):
        return identity.NO_WEIGHTS
    if not cached:
        return file_sha256(Path(cfg.pretrain.weights), reread=True)
    return file_sha256(Path(cfg.pretrain.weights), Path(cfg.paths.cache) / identity.DIGESTS)


def published(cfg: DictConfig) -> dict | None:
    """The seed's numbers for this pretrain on this benchmark and backbone, if it reports any, with the spread
    the benchmark states for them (``published_std``, and ``trials`` as the n of each mean): collect tests our
    trials against them with that spread (see ``results.published_record``)."""
    entry = OmegaConf.select(cfg, f"pretrain.published.{cfg.benchmark.name}.{cfg.backbone.name}")
    if entry is None:
        return None
    std = OmegaConf.select(cfg, "benchmark.published_std", default=None)
    trials = OmegaConf.select(cfg, "benchmark.trials", default=None)
    return published_record(OmegaConf.to_container(entry), OmegaConf.to_container(std) if std is not None else None,
                            trials)  # fmt: skip


def versions(libraries: Sequence[str] = ()) -> dict:
    """The versions the trial's numbers depend on: xfer, detectron2, torch, torchvision, Python, and the
    evaluator's ``libraries`` (hotcoco, pycocotools where used)."""
    import importlib.metadata

    import detectron2
    import torch
    import torchvision

    import xfer

    found = {
        "xfer": xfer.__version__,
        "detectron2": detectron2.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }
    for lib in libraries:
        try:
            found.setdefault(lib, importlib.metadata.version(lib))
        except importlib.metadata.PackageNotFoundError:
            found.setdefault(lib, "not installed")
    return found

def metrics_record(names: Sequence[str], metrics: dict) -> dict:
    """What ``result.json`` says the trial measured: ``metric_names`` (which metrics, in the order its tables
    show them: collect, the formats and status go by it, see ``xfer.store.files.metric_names``), the benchmark's own
    (``xfer.benchmarks``), and ``metrics``, which may hold more (COCO's APs/APm/APl, kept for JSON readers)."""
    return {"metric_names": list(names), "metrics": dict(metrics)}


def _rank_main(d2_yaml: str, datasets_root: str, record: dict, stop=None, keep: str = "final") -> None:
    """Body of every process of a trial; rank 0 writes the result, then drops the checkpoints ``keep``
    (``trial.keep_checkpoints``) does not keep. ``stop``: see engine.train_and_evaluate."""
    d2compat.ensure()
    from detectron2.config import CfgNode
    from detectron2.utils import comm
    from detectron2.utils.logger import setup_logger

    from xfer.trial import engine  # its import registers the ROI head (xfer.trial.roi_heads) in this process

    cfg = CfgNode.load_cfg(d2_yaml)
    for name in ("detectron2", "fvcore", "xfer"):  # log.txt (rank 0), log.txt.rankN, and rank 0's stdout
        setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name=name, abbrev_name=name[:3])
    fmt = record.get("dataset_format", benchmarks.DEFAULT)
    benchmarks.of(fmt).register(Path(datasets_root), list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST))
    t0 = time.time()
    out = engine.train_and_evaluate(cfg, stop, record["run"].get("evaluator", "xfer"), fmt)
    if comm.is_main_process():
        record = {**record, **metrics_record(out["metric_names"], out["metrics"])}
        world = comm.get_world_size()
        record["run"] = {
            **record["run"],
            "wall_time_s": round(time.time() - t0, 3),
            "start_iter": out["start_iter"],
            "iterations_run": out["iterations_run"],
            "max_iter": out["max_iter"],
            "world_size": world,
            "amp": bool(cfg.SOLVER.AMP.ENABLED),
            "global_batch": cfg.SOLVER.IMS_PER_BATCH,  # fixed by the recipe, whatever the process count
            "batch_per_process": cfg.SOLVER.IMS_PER_BATCH // world,
            "started_unix": record["run"].get("started_unix") or round(t0, 3),  # when its process started
            "finished_unix": round(time.time(), 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json_atomic(Path(cfg.OUTPUT_DIR) / RESULT, record)
        gone = prune_checkpoints(Path(cfg.OUTPUT_DIR), keep)
        if gone:
            log.info("trial.keep_checkpoints=%s: deleted %s", keep, ", ".join(gone))


@dataclass(frozen=True)
class Prepared:
    """A trial ready to train: its detectron2 config and the record its result will extend."""

    d2_yaml: str
    datasets_root: str
    record: dict
    device: str


def setup(cfg: DictConfig, out_dir: Path, overrides: str = "", launched: dict | None = None) -> Prepared:
    """Check the trial's inputs, convert its weights (cached) and write its detectron2 config. ``launched``: the
    identity the launcher worked out for the trial (``trial.yaml``), recorded in its result; the recipe
    detectron2 builds here must be the one it names."""
    import torch

    d2compat.ensure()
    found = problems(cfg)
    if found:
        raise InputError(found)
    sha256 = weights_sha256(cfg, cached=False)
    planned = cfg.pretrain.get("sha256")
    if planned and sha256 != planned:  # the folder was chosen for other content: training here would mix them
        raise InputError([f"pretrain {cfg.pretrain.name}: {cfg.pretrain.weights} changed since the launch (sha256 "
                          f"{identity.weights_id(planned)} then, {identity.weights_id(sha256)} now), and this "
                          f"trial's folder is for the old content; launch again to run the new weights."])  # fmt: skip
    device = devices.resolve(cfg.trial.device)
    weights, described, summary = _weights(cfg, sha256)
    d2cfg = recipe.build(cfg, weights, out_dir, device)
    d2_yaml = d2cfg.dump()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "d2_config.yaml", d2_yaml)
    if launched is not None:
        differ = recipe_differences(launched.get("recipe") or {}, identity.flatten(d2cfg))
        if differ:
            raise InputError([f"the recipe detectron2 built differs from the one the launcher recorded as this "
                              f"trial's identity ({'; '.join(differ[:5])}): launch again with this detectron2."])  # fmt: skip
    setting = setting_of(cfg, overrides, sha256)
    record = {
        "setting": {**asdict(setting), "key": setting.key, "label": str(cfg.pretrain.get("label", ""))},
        "trials_expected": int(cfg.benchmark.trials),
        "seed": int(cfg.seed),
        "published": published(cfg),
        "datasets_root": str(Path(cfg.benchmark.datasets_root).resolve()),
        "dataset_format": benchmarks.format_of(cfg),
        "weights": described,
        "identity": launched,  # what decides the result: xfer.store.identity; collect pools only one identity
        "versions": versions(benchmarks.of(cfg).EVALUATOR_LIBRARIES.get(str(cfg.trial.evaluator), ())),
        "run": {
            "evaluator": str(cfg.trial.evaluator),
            "device": device,
            "device_name": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
            "device_count": torch.cuda.device_count() if device == "cuda" else 0,
        },
    }
    log.info("trial %s seed %d on %s; weights: %s", setting.key, cfg.seed, device, summary)
    return Prepared(d2_yaml, str(cfg.benchmark.datasets_root), record, device)


def recipe_differences(recorded: dict, built: dict) -> list[str]:
    """Recipe keys whose value the launcher recorded differently from what detectron2 built (keys one side lacks,
    and what only says where or how the trial runs, aside)."""
    return [f"{k} {identity.show(recorded[k])} vs {identity.show(v)}" for k, v in sorted(built.items())
            if k in recorded and k not in identity.RUN_ONLY and recorded[k] != v]  # fmt: skip


def _weights(cfg: DictConfig, sha256: str) -> tuple[Path | None, dict, str]:
    """The trial's converted weights (None: random init), their record in ``result.json`` and a log summary.

    Without weights the record still says what was measured, unmistakably: no source, digest
    ``identity.NO_WEIGHTS``, layout ``none`` and 0 tensors (collect reads the weights id from it)."""
    if no_weights(cfg):
        record = {"source": None, "sha256": sha256, "converted": None, "layout": identity.NO_WEIGHTS, "depth": None,
                  "tensors": 0, "dropped": {}}  # fmt: skip
        return None, record, "none, random init (detectron2's own initialisation, MODEL.WEIGHTS '')"
    weights, report = weights_of(cfg)
    record = {
        "source": str(cfg.pretrain.weights),
        "sha256": sha256,  # the content measured; its first 12 digits are setting.weights and the folder's w-
        "converted": str(weights),
        "layout": report.layout,
        "depth": report.depth,
        "tensors": report.converted,
        "dropped": report.dropped,
    }
    return weights, record, report.summary()


@dataclass(frozen=True)
class Rank:
    """Where one process sits in its trial's process group (from SLURM's or xfer.launch.local's environment)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_size: int = 1
    address: str = ""  # tcp://host:port of rank 0's store; unused for one process


def run_rank(out_dir: Path, me: Rank, stop=None, run_info: dict | None = None) -> None:
    """One process of a trial, however it was started: read the job, set up (conversion is cached and
    shared), join the process group, train and evaluate; rank 0 writes ``result.json``."""
    job = handover.read(Path(out_dir))
    if me.rank == 0:  # launchers set a damaged result aside first; a job started otherwise must not lose it
        found = state.read_result(Path(out_dir))
        redo = set_aside_damaged(Path(out_dir), found.cause) if found.kind == "damaged" else None
        if redo:
            log.warning("%s", redo.describe(str(out_dir)))
    cfg = OmegaConf.create(job.cfg)
    p = setup(cfg, Path(out_dir), job.overrides, job.identity)
    record = {**p.record, "run": {**p.record["run"], **(run_info or {}), "rendezvous": me.address or None}}
    keep = str(OmegaConf.select(cfg, "trial.keep_checkpoints", default="final"))
    args = (p.d2_yaml, p.datasets_root, record, stop, keep)
    dist.join(_rank_main, me.rank, me.world_size, me.local_rank, me.local_size, p.device, me.address, args)
