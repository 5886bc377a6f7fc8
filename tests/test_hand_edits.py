"""A trial folder edited by hand, or copied where it does not belong: each reader (collect, status, the state a
launch plans from) says which file holds what and goes on with the rest, never a traceback. The edits are the
ones a user makes (a field retyped, a result copied into another seed's folder); what each must give is written
out here, not read from the code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.test_results import DENSE_VALUES, DENSECL, trial
from xfer import __main__ as cli
from xfer.store import state

# (a field of result.json as a dotted path, the value put there by hand, the field the cause must name)
EDITS = [
    ("seed", "zero", "seed"),
    ("seed", -1, "seed"),
    ("identity", "x", "identity"),
    ("identity.recipe", 5, "identity.recipe"),
    ("identity.seed", "0", "identity.seed"),
    ("setting.overrides", 5, "setting.overrides"),
    ("run", None, "run"),
    ("run.wall_time_s", "x", "run.wall_time_s"),
    ("published", 5, "published"),
    ("published.AP50", "82.7", "published"),
    ("published.std", [0.2], "published"),
    ("trials_expected", "x", "trials_expected"),
    ("trials_expected", 0, "trials_expected"),
    ("metrics.AP50", float("inf"), "AP50"),
]


def edit(result: Path, dotted: str, value: object) -> None:
    record = json.loads(result.read_text())
    *path, last = dotted.split(".")
    node = record
    for key in path:
        node = node.setdefault(key, {})
    node[last] = value
    result.write_text(json.dumps(record))


@pytest.mark.parametrize(("field", "value", "named"), EDITS, ids=[f"{f}={v!r}" for f, v, _ in EDITS])
def test_a_result_field_edited_to_another_type_is_one_damaged_trial(tmp_path, capsys, field, value, named):
    sweep = tmp_path / "sweep"
    edited = trial(sweep, DENSECL, 0, DENSE_VALUES[0])
    trial(sweep, DENSECL, 1, DENSE_VALUES[1])
    result = edited / "result.json"
    record = json.loads(result.read_text())
    record["identity"] = {"recipe": {"SOLVER.BASE_LR": 0.02}, "weights": {"sha256": "none"}, "data": {},
                          "evaluator": {"name": "xfer"}, "seed": 0}  # fmt: skip
    result.write_text(json.dumps(record))
    edit(result, field, value)

    found = state.of(edited, launched={"recipe": {"SOLVER.BASE_LR": 0.02}, "weights": {"sha256": "none"}})
    assert found.state == "damaged" and named in found.cause, found
    assert cli.main(["status", str(sweep)]) == 0
    shown = capsys.readouterr().out
    assert "damaged" in shown and "1 done" in shown, shown
    assert cli.main(["collect", str(sweep), "--no-plots"]) == 0
    printed = capsys.readouterr()
    assert "| voc0712_c4_24k/r50_densecl | 1/5 |" in printed.out, printed
    rows = {line.split(",")[6]: line for line in (sweep / "trials.csv").read_text().splitlines()[1:]}
    assert "damaged" in rows["0"] and named in rows["0"], rows


def test_a_result_copied_into_another_seeds_folder_is_stale_not_that_seed_done(tmp_path, capsys):
    """``cp -r seed1 seed3``: seed 3 has not run. Its folder reads stale (kept, not pooled), naming both seeds, and
    the seed's own trial counts once."""
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        trial(sweep, DENSECL, seed, DENSE_VALUES[seed])
    copy = sweep / "voc0712_c4_24k" / "r50_densecl" / "seed3"
    shutil.copytree(copy.parent / "seed1", copy)

    found = state.of(copy)
    assert found.state == "stale" and "seed 1 → 3" in found.cause, found
    assert state.of(copy.parent / "seed1").state == "done"
    assert cli.main(["collect", str(sweep), "--no-plots"]) == 0
    assert "| voc0712_c4_24k/r50_densecl | 2/5 |" in capsys.readouterr().out


@pytest.mark.parametrize("content", ['"abc"', '{"cause": 5}', "[1, 2]", '{"cause": "x", "detail": 7}'])
def test_a_failure_record_edited_by_hand_is_shown_as_it_says(tmp_path, capsys, content):
    sweep = tmp_path / "sweep"
    trial(sweep, DENSECL, 0, DENSE_VALUES[0])
    failed = trial(sweep, DENSECL, 1)
    (failed / "failure.json").write_text(content)
    assert cli.main(["status", str(sweep)]) == 0
    assert "failed" in capsys.readouterr().out
    assert cli.main(["collect", str(sweep)]) == 0
    assert (sweep / "report.html").is_file()


def test_a_setting_linked_in_from_another_sweep_is_read_once_and_a_link_loop_ends(tmp_path, capsys):
    """``ln -s other/voc0712_c4_24k/r50_densecl sweep/voc0712_c4_24k/``: collect and status read its trials as the
    launch does (they did not follow the link: "no trial"), each once, and a link back up the tree ends there."""
    other = tmp_path / "other"
    for seed in (0, 1):
        trial(other, DENSECL, seed, DENSE_VALUES[seed])
    sweep = tmp_path / "sweep" / "voc0712_c4_24k"
    sweep.mkdir(parents=True)
    (sweep / "r50_densecl").symlink_to(other / "voc0712_c4_24k" / "r50_densecl")
    (sweep / "loop").symlink_to(tmp_path / "sweep")
    assert cli.main(["status", str(tmp_path / "sweep")]) == 0
    assert "2 done" in capsys.readouterr().out
    assert cli.main(["collect", str(sweep), str(other), "--no-plots"]) == 0
    assert "| voc0712_c4_24k/r50_densecl | 2/5 |" in capsys.readouterr().out
