"""The trial runner: one Hydra job = convert weights, train, evaluate, write ``result.json``.

A trial's folder is fixed by its setting and seed, so running the same command again finds it:
a ``result.json`` means done (skipped), detectron2's ``last_checkpoint`` means resume from there.
``result.json`` is written last and atomically; it carries the metrics and everything needed to
trust them later (recipe hash, versions, devices, wall time, iterations, weights).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from xfer import d2compat, data, dist, recipe, smoke
from xfer.validate import InputError, problems, weights_of

RESULT = "result.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setting:
    """What a trial measures; trials that differ only by seed share it and are averaged."""

    benchmark: str
    backbone: str
    pretrain: str
    overrides: str = ""

    @property
    def key(self) -> str:
        return f"{self.benchmark}/{self.backbone}_{self.pretrain}" + (f",{self.overrides}" if self.overrides else "")


def setting_of(cfg: DictConfig, overrides: str = "") -> Setting:
    return Setting(cfg.benchmark.name, cfg.backbone.name, cfg.pretrain.name, overrides)


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def prepare(cfg: DictConfig) -> None:
    """Generate what a generated benchmark (smoke) needs: its tiny dataset and this pretrain's weights."""
    if not cfg.benchmark.generate:
        return
    gen = cfg.benchmark.smoke
    smoke.ensure_dataset(Path(cfg.benchmark.datasets_root), gen.images, tuple(gen.image_size))
    layout = gen.layouts.get(cfg.pretrain.name, "torchvision")
    depth = cfg.backbone.d2.MODEL.RESNETS.DEPTH
    seed = zlib.crc32(cfg.pretrain.name.encode())  # each method its own weights, stable across runs
    smoke.ensure_weights(Path(cfg.pretrain.weights), layout, depth, cfg.benchmark.d2.MODEL.RESNETS, seed)


def published(cfg: DictConfig) -> dict | None:
    """The seed's numbers for this pretrain on this benchmark and backbone, if it reports any."""
    entry = OmegaConf.select(cfg, f"pretrain.published.{cfg.benchmark.name}.{cfg.backbone.name}")
    return OmegaConf.to_container(entry) if entry is not None else None


def versions() -> dict:
    import detectron2
    import torchvision

    import xfer

    return {
        "xfer": xfer.__version__,
        "detectron2": detectron2.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: dict) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _rank_main(d2_yaml: str, datasets_root: str, record: dict, stop=None) -> None:
    """Body of every process of a trial; rank 0 writes the result. ``stop``: see engine.train_and_evaluate."""
    d2compat.ensure()  # a spawned process starts bare
    from detectron2.config import CfgNode
    from detectron2.utils import comm

    from xfer import engine  # registers the ROI head in this process

    cfg = CfgNode.load_cfg(d2_yaml)
    if comm.get_world_size() > 1:  # a spawned process: Hydra's logging is not set up here
        from detectron2.utils.logger import setup_logger

        for name in ("detectron2", "fvcore", "xfer"):
            setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name=name, abbrev_name=name[:3])
    data.register(Path(datasets_root), list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST))
    t0 = time.time()
    out = engine.train_and_evaluate(cfg, stop)
    if comm.is_main_process():
        record = {**record, "metrics": {k: out["bbox"].get(k) for k in ("AP50", "AP", "AP75")}}
        record["run"] = {
            **record["run"],
            "wall_time_s": round(time.time() - t0, 3),
            "start_iter": out["start_iter"],
            "iterations_run": out["iterations_run"],
            "max_iter": out["max_iter"],
            "world_size": comm.get_world_size(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json_atomic(Path(cfg.OUTPUT_DIR) / RESULT, record)


@dataclass(frozen=True)
class Prepared:
    """A trial ready to train: its detectron2 config and the record its result will extend."""

    d2_yaml: str
    datasets_root: str
    record: dict
    device: str


def setup(cfg: DictConfig, out_dir: Path, overrides: str = "") -> Prepared:
    """Check the trial's inputs, convert its weights (cached) and write its detectron2 config."""
    d2compat.ensure()
    prepare(cfg)
    found = problems(cfg)
    if found:
        raise InputError(found)
    device = resolve_device(cfg.trial.device)
    weights, report = weights_of(cfg)
    d2cfg = recipe.build(cfg, weights, out_dir, device)
    d2_yaml = d2cfg.dump()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "d2_config.yaml", d2_yaml)
    setting = setting_of(cfg, overrides)
    record = {
        "setting": {**asdict(setting), "key": setting.key},
        "seed": int(cfg.seed),
        "published": published(cfg),
        "datasets_root": str(Path(cfg.benchmark.datasets_root).resolve()),
        "weights": {
            "source": str(cfg.pretrain.weights),
            "converted": str(weights),
            "layout": report.layout,
            "depth": report.depth,
            "tensors": report.converted,
            "dropped": report.dropped,
        },
        "config_sha256": hashlib.sha256(d2_yaml.encode()).hexdigest(),
        "versions": versions(),
        "run": {
            "device": device,
            "device_name": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
            "device_count": torch.cuda.device_count() if device == "cuda" else 0,
        },
    }
    log.info("trial %s seed %d on %s; weights: %s", setting.key, cfg.seed, device, report.summary())
    return Prepared(d2_yaml, str(cfg.benchmark.datasets_root), record, device)


def read_result(out_dir: Path) -> dict | None:
    path = Path(out_dir) / RESULT
    return json.loads(path.read_text()) if path.exists() else None


def run(cfg: DictConfig, out_dir: Path, overrides: str = "") -> dict:
    """Run one trial here into ``out_dir`` (skip if its result exists) and return its result record."""
    out_dir = Path(out_dir)
    done = read_result(out_dir)
    if done is not None:
        log.info("trial done already, skipping: %s", out_dir / RESULT)
        return done
    p = setup(cfg, out_dir, overrides)
    world = dist.resolve_world_size(cfg.trial.world_size, p.device)
    log.info("%d process(es) on %s", world, p.device)
    dist.launch(_rank_main, world, p.device, args=(p.d2_yaml, p.datasets_root, p.record))
    result = read_result(out_dir)
    if result is None:
        raise RuntimeError(f"trial finished without writing {out_dir / RESULT}")
    return result
