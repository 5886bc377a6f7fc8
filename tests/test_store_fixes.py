"""Three drill findings, each against an oracle from outside xfer.

- A trial killed between checkpoints stands where detectron2 resumes it, in ``status``, ``plan`` and the store
  alike. Oracle: detectron2 itself, which writes the folder (its ``PeriodicCheckpointer`` hook in a real
  ``SimpleTrainer`` loop) and says where it resumes (``DefaultTrainer.resume_or_load``); by hand from its naming,
  ``model_0000019.pth`` (saved after iteration 19, 0-based) resumes at 20.
- A stale trial set aside keeps its ``trial.yaml``: the bytes the launcher wrote for it.
- A failure's cause reaches the console and ``table.md`` as the text Python's own exception holds (yacs's type
  check, the drill's very message), while the HTML page escapes it (Python's HTML parser reads the text back), and
  rich shows markup in it literally.
"""

from __future__ import annotations

import io
import json
import time
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.test_results import DENSECL, trial
from xfer.launch import plan
from xfer.report import collect, status
from xfer.store import handover, locks, queue, redo, state

MAX_ITER, PERIOD, KILLED_AT = 60, 10, 25  # the drill: a 60-iteration trial, kill -9 once progress.json said 25


def detectron2_trains_until_killed(folder: Path) -> int:
    """Train a one-weight model with detectron2's own loop and checkpoint hook (every ``PERIOD`` iterations, as
    ``SOLVER.CHECKPOINT_PERIOD``) into ``folder`` until ``KILLED_AT`` iterations are done, then die as a killed
    process would (no hook of xfer's runs); return the iteration detectron2 resumes that folder from."""
    import torch

    from xfer import d2compat

    d2compat.ensure()
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.engine import DefaultTrainer, HookBase, SimpleTrainer, hooks

    class Weight(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, batch):
            return {"loss": (self.w * batch).sum()}

    class Killed(Exception):
        pass

    class KillAfter(HookBase):
        def after_step(self):  # after the checkpoint hook, as a kill -9 after iteration index KILLED_AT - 1
            if self.trainer.iter + 1 == KILLED_AT:
                raise Killed

    def trainer() -> SimpleTrainer:
        model = Weight()
        t = SimpleTrainer(model, iter([torch.ones(1)] * MAX_ITER), torch.optim.SGD(model.parameters(), lr=0.0))
        t.checkpointer = DetectionCheckpointer(model, str(folder), trainer=t)
        t.cfg = SimpleNamespace(MODEL=SimpleNamespace(WEIGHTS=""))
        return t

    first = trainer()
    first.register_hooks([hooks.PeriodicCheckpointer(first.checkpointer, PERIOD), KillAfter()])
    with pytest.raises(Killed):
        first.train(0, MAX_ITER)
    again = trainer()
    DefaultTrainer.resume_or_load(again, resume=True)  # detectron2's own resume, on a trainer of the same kind
    return again.start_iter


@pytest.fixture
def killed(tmp_path, monkeypatch):
    """A trial folder as a launch killed at iteration 25 leaves it: detectron2's checkpoints, and xfer's
    ``progress.json`` (written by its ``ProgressFile`` hook: iterations done, of max_iter)."""
    monkeypatch.chdir(tmp_path)
    folder = trial(Path("sweep"), DENSECL, 0)
    resumes = detectron2_trains_until_killed(folder)
    now = time.time()
    (folder / "progress.json").write_text(json.dumps({"phase": "training", "iteration": KILLED_AT,
                                                      "max_iter": MAX_ITER, "start_iter": 0,
                                                      "started_at": now - 25, "updated_at": now}))  # fmt: skip
    return folder, resumes


@pytest.mark.launch  # imports detectron2's engine (seconds)
def test_a_killed_trial_is_where_detectron2_resumes_it_in_status_plan_and_the_store(killed):
    folder, resumes = killed
    assert (folder / "last_checkpoint").read_text() == "model_0000019.pth"  # detectron2's naming
    assert resumes == 19 + 1 == 20  # by hand: the checkpoint after iteration 19; detectron2 agrees

    s = state.of(folder, max_iter=MAX_ITER)
    assert (s.state, s.iteration, s.max_iter, s.describe()) == ("partial", 20, MAX_ITER, "partial 20/60")
    assert state.resumes_at(folder, MAX_ITER) == 20
    entry = plan.Entry("voc0712_c4_24k/r50_densecl", "r50", 0, folder, MAX_ITER, None)
    assert entry.progress() == ("partial", 20)
    (row,) = status.scan([Path("sweep")])
    assert (row.state, row.iteration, row.max_iter) == ("partial", 20, MAX_ITER)
    assert status.describe(row) == "partial at 20/60 (resumable)"

    # nothing runs it: stopped by the local launcher, or queued again by SLURM, it is where it resumes
    stopped = status.refresh(status.TrialStatus("t", state="stopped"), folder)
    assert status.describe(stopped) == "stopped at 20/60 (resumable)"
    requeued = state.of(folder, job=queue.JobState("PENDING", restarts=1))
    assert (requeued.state, requeued.iteration) == ("requeued", 20)
    assert status.describe(status.refresh(status.TrialStatus("t", state="requeued"), folder)) == \
        "requeued at 20/60 (resumable)"  # fmt: skip

    lock = locks.take(folder)  # something runs it: how far it is now, from progress.json
    try:
        assert (state.of(folder).state, state.of(folder).iteration) == ("running", KILLED_AT)
        (running,) = status.scan([Path("sweep")])
        assert status.describe(running).startswith("25/60")
    finally:
        lock.release()


OLD = {"digest": "a" * 64, "recipe": {"SOLVER.BASE_LR": 0.01}, "seed": 0}
NEW = {"digest": "b" * 64, "recipe": {"SOLVER.BASE_LR": 0.02}, "seed": 0}


def stale_trial(root: Path) -> Path:
    """A finished trial of identity OLD, with the hand-over the launcher wrote for it."""
    folder = root / "seed0"
    handover.write(folder, {"seed": 0, "solver": {"base_lr": 0.01}}, "", OLD)
    record = {"setting": {"benchmark": "b", "backbone": "r50", "pretrain": "p"}, "metrics": {"AP50": 1.0, "AP": 1.0,
              "AP75": 1.0}, "identity": OLD}  # fmt: skip
    (folder / "result.json").write_text(json.dumps(record))
    (folder / "model_final.pth").write_bytes(b"weights")
    (folder / "last_checkpoint").write_text("model_final.pth")
    return folder


def test_a_stale_trial_set_aside_keeps_its_hand_over(tmp_path):
    folder = stale_trial(tmp_path)
    written = (folder / "trial.yaml").read_bytes()
    kept = redo.set_aside_stale(folder)
    assert (kept / "trial.yaml").read_bytes() == written  # as the launcher wrote it for the old trial
    assert handover.read(kept).identity == json.loads((kept / "result.json").read_text())["identity"] == OLD
    assert {p.name for p in kept.iterdir()} == {"trial.yaml", "result.json", "model_final.pth", "last_checkpoint"}
    assert (folder / "trial.yaml").read_bytes() == written  # still a trial folder until the launcher hands over
    handover.write(folder, {"seed": 0, "solver": {"base_lr": 0.02}}, "", NEW)  # the launcher's next step
    assert (kept / "trial.yaml").read_bytes() == written


def test_a_hand_over_already_written_for_the_new_identity_is_not_kept_as_the_old_trials(tmp_path):
    folder = stale_trial(tmp_path)
    handover.write(folder, {"seed": 0, "solver": {"base_lr": 0.02}}, "", NEW)
    new = (folder / "trial.yaml").read_bytes()
    kept = redo.set_aside_stale(folder)
    assert not (kept / "trial.yaml").exists() and (folder / "trial.yaml").read_bytes() == new
    assert json.loads((kept / "result.json").read_text())["identity"] == OLD  # the old identity is kept there


def yacs_type_mismatch() -> str:
    """The drill's cause, as the library that raises it words it (detectron2's config is a yacs CfgNode)."""
    from yacs.config import CfgNode

    cfg = CfgNode({"SOLVER": CfgNode({"MAX_ITER": 1})})
    try:
        cfg.merge_from_list(["SOLVER.MAX_ITER", "'x'"])
    except ValueError as e:
        return f"{type(e).__name__}: {e}"
    raise AssertionError("yacs merged a str into an int key")


class Text(HTMLParser):
    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.text = ""
        self.feed(page)

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.add(tag)

    def handle_data(self, data) -> None:
        self.text += data


def test_a_failures_cause_is_shown_as_it_is_in_the_console_and_table_md_and_escaped_in_html(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cause = yacs_type_mismatch()
    assert "<class 'int'>" in cause and "<class 'str'>" in cause  # what Python prints for the types
    markup = f"{cause} [bold]x[/bold] | y"
    trial(Path("sweep"), DENSECL, 0, (82.64, 58.32, 64.60))
    trial(Path("sweep"), DENSECL, 1, failed=markup)
    report = collect.collect([Path("sweep")], plots=False)
    line = f"- voc0712_c4_24k/r50_densecl seed1: failed: {cause} [bold]x[/bold] \\| y (sweep/voc0712_c4_24k/"
    table_md = Path("sweep/table.md").read_text()
    assert line in report.markdown and line in table_md  # what launch and collect print, and the file
    assert "&lt;" not in table_md

    page = Text(Path("sweep/report.html").read_text())
    assert markup in page.text and "class" not in page.tags  # escaped for HTML, read back as the text

    out = io.StringIO()
    rows = status.show([Path("sweep")], out=status.console(out))
    assert [r.cause for r in rows if r.state == "failed"] == [markup]
    printed = " ".join(out.getvalue().split())  # rich folds long cells: compare the words
    assert " ".join(markup.split()) in printed


def test_a_folder_name_with_brackets_is_not_rich_markup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = Path("runs[bold]")
    trial(root, DENSECL, 0, (82.64, 58.32, 64.60))
    out = io.StringIO()
    status.show([root], out=status.console(out))
    assert "runs[bold]: 1 done" in out.getvalue()


def test_the_plan_and_status_agree_on_a_checkpoint_named_by_hand(tmp_path, monkeypatch):
    """The same without detectron2: ``model_0000499.pth`` holds 500 iterations (499 + 1), whatever progress.json
    last said, and a trial whose ``last_checkpoint`` names its final weights has only its evaluation left."""
    monkeypatch.chdir(tmp_path)
    folder = trial(Path("sweep"), DENSECL, 0)
    (folder / "last_checkpoint").write_text("model_0000499.pth\n")
    (folder / "progress.json").write_text(json.dumps({"phase": "training", "iteration": 731, "max_iter": 24000,
                                                      "start_iter": 0, "started_at": 0.0, "updated_at": 1.0}))  # fmt: skip
    entry = plan.Entry("k", "r50", 0, folder, 24000, None)
    (row,) = status.scan([Path("sweep")])
    assert entry.progress() == ("partial", 500) and (row.iteration, row.max_iter) == (500, 24000)
    (folder / "last_checkpoint").write_text("model_final.pth")
    (row,) = status.scan([Path("sweep")])
    assert entry.progress() == ("partial", 24000) and status.describe(row) == "partial at 24000/24000 (resumable)"
    assert yaml.safe_load((folder / "trial.yaml").read_text())["cfg"]["seed"] == 0
