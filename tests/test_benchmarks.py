"""The benchmark layer: every dataset format offers the same small interface, and the rest of xfer reaches a
format only through ``xfer.benchmarks.of``."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from tests.conftest import REPO, launch
from xfer import benchmarks

INTERFACE = {"problems", "register", "tasks", "evaluator", "metric_names", "metrics", "EVALUATORS", "METRIC_NAMES"}
# modules that must not know any one format: the launcher, SLURM, results, formats, status
FORMAT_FREE = ["launch/sweep.py", "launch/slurm.py", "launch/local.py", "report/results.py", "report/formats.py",
               "report/plots.py", "report/status.py", "report/collect.py", "launch/plan.py", "store/files.py",
               "store/identity.py", "trial/engine.py", "trial/hooks.py", "trial/roi_heads.py",
               "trial/runner.py", "trial/checks.py"]  # fmt: skip


@pytest.mark.parametrize("fmt", sorted(benchmarks.FORMATS))
def test_every_format_offers_the_interface(fmt):
    module = benchmarks.of(fmt)
    assert INTERFACE <= set(dir(module)), sorted(INTERFACE - set(dir(module)))
    assert list(inspect.signature(module.problems).parameters) == ["root", "names", "num_classes", "cache", "masks"]
    assert list(inspect.signature(module.register).parameters) == ["root", "names"]
    assert module.METRIC_NAMES and all(isinstance(m, str) for m in module.METRIC_NAMES)


def test_voc_metrics_are_taken_from_detectron2s_results_by_name():
    results = {"bbox": {"AP": 50.0, "AP50": 80.0, "AP75": 55.0, "APs": 1.0}}
    assert benchmarks.of("voc").metrics(results) == {"AP50": 80.0, "AP": 50.0, "AP75": 55.0}


@pytest.mark.parametrize("name", FORMAT_FREE)
def test_no_launcher_slurm_or_results_module_imports_a_format(name):
    """Adding a format touches none of these: they import xfer.benchmarks at most, never a format module."""
    tree = ast.parse((REPO / "xfer" / name).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                 for a in n.names}  # fmt: skip
    assert not {m for m in imported if m.startswith("xfer.benchmarks.")}, name


@pytest.mark.launch
def test_an_unknown_format_is_named_before_anything_runs(tmp_path: Path, smoke_fast_made):
    smoke_fast_made(tmp_path)
    run = launch("benchmark=smoke_fast", "benchmark.format=kitti", "seed=0", f"output_root={tmp_path}")
    assert run.returncode == 2, run.output[-2000:]
    assert "benchmark.format='kitti': one of voc, coco" in run.stderr
    assert not list(tmp_path.rglob("metrics.json"))
