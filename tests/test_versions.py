"""The versions pyproject states are the ones the code runs on, and the checkpoint reader degrades where cheap."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from importlib import metadata

import numpy as np
import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import REPO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package (a test extra there)
    import tomli as tomllib


def requirements() -> list[Requirement]:
    """Every requirement pyproject.toml states: the dependencies and each extra (``make setup`` installs all)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def test_installed_versions_satisfy_every_stated_requirement():
    unmet = []
    for req in requirements():
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            unmet.append(f"{req}: not installed")
            continue
        if not req.specifier.contains(Version(installed), prereleases=True):
            unmet.append(f"{req}: {installed} installed")
    assert not unmet, unmet
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    python = Version(".".join(map(str, sys.version_info[:3])))
    assert python in Requirement(f"python{project['requires-python']}").specifier


def test_the_floors_cover_what_the_code_calls():
    """The APIs the floors are stated for exist here; a floor below them would be a false promise."""
    floors = {r.name.lower(): r.specifier for r in requirements()}
    assert hasattr(torch.serialization, "safe_globals")  # torch >= 2.5
    assert not floors["torch"].contains("2.4.1"), floors["torch"]
    # the README pairs a v0.6 source build with NumPy < 1.24: the floor must leave such a NumPy
    assert floors["numpy"].contains("1.23.5"), floors["numpy"]


HIDE_NUMPY_DTYPES = """
import importlib.abc, sys
import numpy

class _Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "numpy.dtypes":
            raise ModuleNotFoundError("No module named 'numpy.dtypes' (hidden, as in NumPy < 1.25)", name=name)
        return None

sys.modules.pop("numpy.dtypes", None)
numpy.__dict__.pop("dtypes", None)
sys.meta_path.insert(0, _Hidden())
"""


@pytest.mark.launch
def test_checkpoint_reader_works_without_numpy_dtypes(tmp_path):
    """Real NumPy with only its ``numpy.dtypes`` module hidden (it appeared in 1.25): a detectron2-style
    ``.pkl`` of arrays and a ``.pth`` holding NumPy values still load, with their values."""
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(HIDE_NUMPY_DTYPES))
    blobs = {"conv1_w": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2), "conv1_b": np.array([0.5, -1.5])}
    (tmp_path / "R-50.pkl").write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    meta = {"epoch": np.int64(200), "hist": np.arange(3, dtype=np.int16)}
    torch.save({"state_dict": {"conv1.weight": torch.ones(2)}, "meta": meta}, tmp_path / "m.pth")
    probe = textwrap.dedent(f"""
        import numpy as np
        try:
            from numpy import dtypes
        except ImportError:
            print("numpy.dtypes hidden")
        from xfer.trial import checkpoint
        pkl = checkpoint.load({str(tmp_path / "R-50.pkl")!r})["blobs"]
        assert pkl["conv1_w"].dtype == np.float32
        assert pkl["conv1_w"].tolist() == np.arange(24).reshape(2, 3, 2, 2).tolist()
        assert pkl["conv1_b"].tolist() == [0.5, -1.5]
        pth = checkpoint.load({str(tmp_path / "m.pth")!r})
        assert pth["meta"]["epoch"] == 200 and pth["meta"]["hist"].dtype == np.int16, pth
        print("read both")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["numpy.dtypes", "hidden", "read", "both"], run.stdout
