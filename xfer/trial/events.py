"""TensorBoard event files of a trial, beside its ``metrics.json``: detectron2's own writer, opened late.

``tensorboard --logdir outputs/<benchmark>`` then shows one run per trial, named by its folder
(``<setting>/w-<weights id>/seed<N>``, see ``xfer.store.identity.trial_dir``).

A trial that resumes from a checkpoint logs again the iterations after that checkpoint which its killed run
had already logged. TensorBoard's answer is the ``purge_step`` of its writer: a restart marker at the
iteration training resumes from, which hides every earlier event at or after that step. The iteration is
known only once detectron2 has loaded the checkpoint, after its writers are built, so the writer opens its
file at the first write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from xfer import d2compat

d2compat.ensure()

from detectron2.utils.events import EventWriter, TensorboardXWriter  # noqa: E402

FINAL_PREFIX = "final/"  # the tag of each measured metric, at step max_iter: final/AP50, final/box_AP, ...


class TrainingEvents(EventWriter):
    """detectron2's :class:`TensorboardXWriter` (losses, lr, timings, smoothed as ``metrics.json``'s), created at
    its first write with ``purge_step`` = the iteration training started from (``start_iter()``)."""

    def __init__(self, log_dir: str, start_iter: Callable[[], int], window_size: int = 20) -> None:
        self._log_dir, self._start_iter, self._window_size = log_dir, start_iter, window_size
        self._writer: TensorboardXWriter | None = None

    def write(self) -> None:
        if self._writer is None:
            self._writer = TensorboardXWriter(self._log_dir, self._window_size, purge_step=self._start_iter())
        self._writer.write()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def write_final(log_dir: str, metrics: Mapping[str, float], step: int) -> None:
    """The trial's measured metrics as scalars ``final/<name>`` at ``step`` (its max_iter, after the last training
    step). An evaluation run again (a damaged result) purges the earlier one's, so each shows once."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir, purge_step=step)
    try:
        for name, value in metrics.items():
            writer.add_scalar(f"{FINAL_PREFIX}{name}", float(value), step)
    finally:
        writer.close()
