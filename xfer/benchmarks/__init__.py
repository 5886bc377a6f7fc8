"""Benchmarks as a layer: what a dataset format brings to a trial, behind one small interface.

A benchmark is a conf file (``conf/benchmark/<name>.yaml``: the recipe, its datasets, ``format``) plus the
module of its dataset format here (``voc``, ``coco``), which provides:

- ``problems(root, names, num_classes, cache, masks) -> list[str]``: what would stop detectron2 loading those
  datasets from ``root`` or the recipe (``NUM_CLASSES``; ``masks``: ``MODEL.MASK_ON``) training on them and
  scoring them, one message each, checked by the launcher before anything runs (``cache``: ``paths.cache``, for
  what is slow to read);
- ``evaluation_notes(root, names, evaluator, cache) -> list[str]``: what the launch says about how those test
  datasets will be scored (COCO: hotcoco or the NumPy engine, and why), before anything runs;
- ``register(root, names)``: (re-)register them with detectron2 under ``root``, in every trial process;
- ``tasks(cfg)``: what a model of the detectron2 config is evaluated on (COCO: boxes, and masks where
  ``MODEL.MASK_ON``);
- ``EVALUATORS`` and ``evaluator(kind, dataset_name, tasks)``: the ``trial.evaluator`` choices and the detectron2
  ``DatasetEvaluator`` each builds;
- ``METRIC_NAMES`` (all of the format's), ``metric_names(tasks)`` and ``metrics(results)``: the names a trial's
  ``result.json`` carries, and their values from what detectron2's ``inference_on_dataset`` returned.

The launcher, SLURM and results code only ever call :func:`of`; adding a format touches none of them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from omegaconf import DictConfig, OmegaConf

FORMATS = {"voc": "xfer.benchmarks.voc", "coco": "xfer.benchmarks.coco"}  # ``benchmark.format`` -> its module
DEFAULT = "voc"  # a benchmark conf without ``format`` (older custom confs) is VOC, as every benchmark was


def format_of(cfg: DictConfig) -> str:
    return str(OmegaConf.select(cfg, "benchmark.format", default=DEFAULT) or DEFAULT)


def of(fmt: str | DictConfig) -> ModuleType:
    """The module of a dataset format (a name, or a composed config's ``benchmark.format``)."""
    name = format_of(fmt) if isinstance(fmt, DictConfig) else fmt
    if name not in FORMATS:
        raise ValueError(f"benchmark.format={name!r}: one of {', '.join(FORMATS)}")
    return importlib.import_module(FORMATS[name])
