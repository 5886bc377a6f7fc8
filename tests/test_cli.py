"""Seed ranges and bad command lines, through the real launch.py: refused before anything runs."""

from __future__ import annotations

import pytest

from tests.conftest import launch
from xfer.cli import UsageError, expand_seed_ranges


def test_seed_range_becomes_hydra_range_with_multirun():
    assert expand_seed_ranges(["launch.py", "-m", "seed=0-4"]) == ["launch.py", "-m", "seed=range(0,5)"]
    assert expand_seed_ranges(["x", "--multirun", "seed=3-3"]) == ["x", "--multirun", "seed=range(3,4)"]


@pytest.mark.parametrize("arg", ["seed=3", "seed=range(0,5)", "seed=0,1,2,3,4", "pretrain=a-b", "seed=choice(1,2)"])
def test_other_arguments_pass_through(arg):
    assert expand_seed_ranges(["x", "-m", arg]) == ["x", "-m", arg]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["x", "-m", "seed=4-0"], "start exceeds the end"),
        (["x", "-m", "seed=a-b"], "START-END with integers"),
        (["x", "-m", "seed=1-"], "START-END with integers"),
        (["x", "seed=0-4"], "add -m"),
    ],
)
def test_bad_ranges_are_refused(argv, message):
    with pytest.raises(UsageError, match=message):
        expand_seed_ranges(argv)


@pytest.mark.parametrize(
    "args,message",
    [
        (["benchmark=smoke_fast", "seed=0-4"], "seed=0-4 is a sweep of 5 trials: add -m"),
        (["-m", "benchmark=smoke_fast", "seed=4-0"], "bad seed range '4-0'"),
        (["-m", "benchmark=smoke_fast", "seed=a-b"], "bad seed range 'a-b'"),
        (["benchmark=smoke_fast", "seed=0,1"], "multirun"),
        (["-m", "benchmark=smoke_fast", "seed=x"], "seed='x': a seed is a non-negative integer"),
        (["-m", "benchmark=smoke_fast", "pretrain=nosuch"], "pretrain=nosuch: no such pretrain; choose one of:"),
    ],
)
@pytest.mark.launch
def test_launch_refuses_bad_command_lines_before_running(tmp_path, smoke_fast_made, args, message):
    smoke_fast_made(tmp_path)
    run = launch(*args, f"output_root={tmp_path}")
    assert run.returncode != 0
    assert message in run.output, run.output[-2000:]
    assert not list(tmp_path.rglob("result.json")) and not list(tmp_path.rglob("metrics.json"))
