"""What collect leaves on disk when it cannot finish: a paper's README is replaced whole or not at all (the
operating system's own file-size limit stands in for a full disk), a README without the table block is refused
before anything is written, and figures an earlier collect drew that no longer apply are removed."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_results import DENSE_VALUES, DENSECL, REGION_VALUES, REGIONCL, trial
from xfer import __main__ as cli

BLOCK = "<!-- START TABLE -->\n<table><tbody>\n<tr><td>old</td></tr>\n</tbody></table>"


def sweep_of_two(root: Path) -> Path:
    for seed in (0, 1):
        trial(root, DENSECL, seed, DENSE_VALUES[seed])
        trial(root, REGIONCL, seed, REGION_VALUES[seed])
    return root


def _limit_file_size(limit: int):
    def apply() -> None:  # in the child: writes past the limit fail with EFBIG, as a full disk fails with ENOSPC
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.launch
def test_a_readme_that_cannot_be_written_whole_keeps_every_byte(tmp_path):
    """The README is larger than what may be written: collect fails in one line, naming the file, and the README
    is byte for byte what it was (written in place, it was cut at the limit)."""
    sweep = sweep_of_two(tmp_path / "sweep")
    readme = tmp_path / "paper.md"
    before = ("# My paper\n\n" + BLOCK + "\n\n" + "A long discussion.\n" * 12_000 + "THE END\n").encode()
    readme.write_bytes(before)
    proc = subprocess.run([sys.executable, "-m", "xfer", "collect", str(sweep), "--no-plots", "--readme", str(readme)],
                          cwd=REPO, capture_output=True, text=True, preexec_fn=_limit_file_size(100_000))  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not write" in lines[0] and "paper.md" in lines[0], proc.stderr
    assert readme.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".paper.md")]  # no temporary file left


def test_a_readme_without_the_table_block_is_refused_before_anything_is_written(tmp_path, capsys):
    sweep = sweep_of_two(tmp_path / "sweep")
    readme = tmp_path / "paper.md"
    readme.write_text("# My paper\n\nno table here\n")
    assert cli.main(["collect", str(sweep), "--no-plots", "--readme", str(readme), "--out", str(tmp_path / "t")]) == 2
    assert "<!-- START TABLE -->" in capsys.readouterr().err
    assert not (tmp_path / "t").exists() or not any((tmp_path / "t").iterdir())


def test_a_readme_link_stays_a_link_and_its_file_keeps_its_mode(tmp_path):
    sweep = sweep_of_two(tmp_path / "sweep")
    real = tmp_path / "real.md"
    real.write_text("# My paper\n\n" + BLOCK + "\n\nthe end\n")
    real.chmod(0o640)
    link = tmp_path / "paper.md"
    link.symlink_to(real)
    assert cli.main(["collect", str(sweep), "--no-plots", "--readme", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    text = real.read_text()
    assert "old" not in text and "82.6" in text and text.endswith("the end\n")  # densecl's AP50 mean: 82.64
    assert real.stat().st_mode & 0o777 == 0o640


def test_figures_of_an_earlier_collect_that_no_longer_apply_are_removed(tmp_path, capsys):
    """Plots drawn, then the results gone (all stale, or moved away): the new table has no finished trial, and the
    old figures, which show the old numbers, go with a line that says so; so do they under --no-plots."""
    sweep = sweep_of_two(tmp_path / "sweep")
    assert cli.main(["collect", str(sweep)]) == 0
    figures = [sweep / "ap.png", sweep / "ap.svg"]  # no training curves in these folders: no curves.*
    assert all(p.is_file() for p in figures)
    capsys.readouterr()
    assert cli.main(["collect", str(sweep), "--no-plots"]) == 0
    assert not any(p.exists() for p in figures)
    assert "removed 2 figure(s) of an earlier collect" in capsys.readouterr().out
    (sweep / "notes.png").write_bytes(b"mine")  # not a figure collect draws: kept
    assert cli.main(["collect", str(sweep), "--no-plots"]) == 0
    assert (sweep / "notes.png").read_bytes() == b"mine"
    assert "removed" not in capsys.readouterr().out
