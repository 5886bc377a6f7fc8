"""One process of a local trial: ``python -m xfer.trial.rank TRIAL_DIR``, started and owned by ``xfer.launch.local``.

The launcher passes the process's place in the group through the environment (as torchrun does):
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, and
``XFER_LAUNCHER_PID``. The process dies with the launcher, even a ``kill -9``-ed one (Linux's
parent-death signal), so no trial outlives the sweep that started it. SIGTERM asks it to stop: it
saves a checkpoint after its current iteration and exits with :data:`INTERRUPTED`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

INTERRUPTED = 75  # exit status of a trial stopped on request, checkpoint saved (EX_TEMPFAIL: run it again)
_PR_SET_PDEATHSIG = 1


def die_with_launcher() -> None:
    """Get SIGKILL when the launcher dies; exit now if it already has (it died before we got here)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    launcher = os.environ.get("XFER_LAUNCHER_PID")
    if launcher and os.getppid() != int(launcher):
        os._exit(1)


def main(argv: list[str]) -> int:
    started = round(time.time(), 3)
    die_with_launcher()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launcher's to handle; it sends SIGTERM
    env = os.environ
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format=f"[%(asctime)s r{env['RANK']}] %(name)s %(levelname)s: %(message)s")  # fmt: skip
    from xfer.trial import hooks, runner

    me = runner.Rank(
        rank=int(env["RANK"]),
        world_size=int(env["WORLD_SIZE"]),
        local_rank=int(env["LOCAL_RANK"]),
        local_size=int(env["LOCAL_WORLD_SIZE"]),
        address=f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}",
    )
    devices = env.get("XFER_DEVICES", "").split(",")
    try:
        runner.run_rank(Path(argv[1]), me, stop.is_set, {"devices": devices, "started_unix": started})
    except hooks.Interrupted as e:
        print(f"rank {me.rank}: {e}", flush=True)
        return INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
