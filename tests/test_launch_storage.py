"""A launch whose output folder cannot be: a file where ``output_root`` or the sweep's folder would be, or storage
that fails every write (the operating system's file-size limit, which fails a write with EFBIG where a full disk
fails it with ENOSPC). Each is one line naming the path and its fix, no traceback, and nothing already there is
lost."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.test_bad_options import refused

SWEEP = ("-m", "benchmark=smoke_fast", "pretrain=scratch", "seed=0")


def run(*args: str, preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=REPO, capture_output=True, text=True,
                          preexec_fn=preexec, timeout=300)  # fmt: skip


class Run:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.returncode, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        self.output = proc.stdout + proc.stderr


@pytest.mark.launch
@pytest.mark.parametrize("where", ["root", "under_root", "sweep_folder"])
def test_a_file_where_the_output_folder_would_be_is_one_line(tmp_path, where):
    file = tmp_path / "afile"
    file.write_text("mine\n")
    root = {"root": file, "under_root": file / "out", "sweep_folder": tmp_path}[where]
    if where == "sweep_folder":
        file.rename(tmp_path / "smoke_fast")  # <output_root>/<benchmark> is a file
        file = tmp_path / "smoke_fast"
    lines = refused(Run(run(*SWEEP, f"output_root={root}")), tmp_path)
    assert len(lines) == 1 and str(file) in lines[0] and ("not a folder" in lines[0] or "cannot be made" in lines[0]), lines
    assert file.read_text() == "mine\n"


@pytest.mark.launch
def test_storage_that_fails_every_write_is_one_line_and_keeps_what_is_there(tmp_path):
    kept = tmp_path / "smoke_fast" / "r50_scratch" / "w-none" / "seed0" / "result.json"
    kept.parent.mkdir(parents=True)
    kept.write_text('{"a finished trial": true}\n')

    def no_room() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    proc = run(*SWEEP, f"output_root={tmp_path}", preexec=no_room)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0] and str(tmp_path / "smoke_fast") in lines[0], lines
    assert kept.read_text() == '{"a finished trial": true}\n'


SIGINT_ON_IMPORT = """
import importlib.abc, os, signal, sys
class _Ctrl_C(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "xfer.launch.sweep":  # the launch is composing: Ctrl-C now
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, _Ctrl_C())
"""


@pytest.mark.launch
def test_ctrl_c_before_any_trial_runs_is_one_line(tmp_path):
    """Ctrl-C while the launch composes and checks (a real SIGINT, sent by the launch to itself as it starts its
    sweep): one line, status 130, not KeyboardInterrupt's traceback."""
    (tmp_path / "sitecustomize.py").write_text(SIGINT_ON_IMPORT)
    proc = subprocess.run([sys.executable, str(REPO / "launch.py"), *SWEEP, f"output_root={tmp_path / 'out'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})  # fmt: skip
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("interrupted:"), proc.stderr
