"""tests/xdist_groups.py: under `make test`'s pytest-xdist, a wide fixture shared by tests is made once."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO
from tests.xdist_groups import groups_of


def test_tests_linked_through_shared_fixtures_form_one_group():
    uses = {"a": ["m::f"], "b": ["m::f", "m::g"], "c": ["m::g"], "d": ["n::h"], "e": []}
    assert groups_of(uses) == {"a": "m::f", "b": "m::f", "c": "m::f", "d": "n::h"}  # e: no group


@pytest.mark.launch
def test_a_module_fixture_is_made_once_across_two_workers(tmp_path):
    """A real pytest with two xdist workers on a suite of its own: six tests share a module fixture, six do not.
    xdist 3.8's own loadgroup made it on both workers under pytest 9 (its group suffix no longer reaches the
    node id)."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").write_text("")
    shutil.copy(REPO / "tests" / "xdist_groups.py", tmp_path / "tests" / "xdist_groups.py")
    (tmp_path / "tests" / "conftest.py").write_text(textwrap.dedent("""
        import os
        import pytest
        from tests.xdist_groups import (pytest_collection_modifyitems, pytest_configure, pytest_unconfigure,
                                        pytest_xdist_make_scheduler)

        @pytest.fixture(scope="module")
        def made():
            with open(os.environ["MADE_LOG"], "a") as f:
                f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
    """))
    (tmp_path / "tests" / "test_it.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.parametrize("i", range(6))
        def test_shares(made, i):
            pass

        @pytest.mark.parametrize("i", range(6))
        def test_alone(i):
            pass
    """))
    log = tmp_path / "made.log"
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup",
                          "-q", "tests"], cwd=tmp_path, capture_output=True, text=True,
                         env={"MADE_LOG": str(log), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "12 passed" in run.stdout
    assert len(log.read_text().split()) == 1, log.read_text()  # one worker made it
