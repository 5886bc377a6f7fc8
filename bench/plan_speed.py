"""Time to plan a 2 backbones x 6 pretrains x 5 seeds sweep (60 trials) and to submit it to SLURM.

Each arm runs ``launch.py`` in a fresh process, as a user would, ``--repeats`` times (medians):
  1. the baseline: ``plan=true`` of a 1-trial sweep (Python, Hydra and the checks, for one trial);
  2. ``plan=true`` of the 60-trial sweep (compose every trial, check them, print the plan);
  3. with ``--slurm`` (needs Debian's munge/slurmctld/slurmd): submitting the same sweep to a throwaway
     single-node SLURM started by tests/slurm_cluster.py; jobs are cancelled right after.
Every run shares one ``paths.cache``, so the smoke data, its checkpoints and their conversions are made once,
by a warm-up run, and stay out of the timings (with real weights: converted once, on the first launch).

    python bench/plan_speed.py --repeats 3 [--slurm]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWEEP = ["-m", "benchmark=smoke_fast", "backbone=r50,r101",
         "pretrain=supervised,moco_v1,moco_v2_200ep,moco_v2_800ep,densecl,regioncl_d", "seed=0-4"]  # fmt: skip


def timed_launch(args: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})  # fmt: skip
    took = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-3000:])
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slurm", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xfer-plan-") as tmp:
        out = [f"output_root={tmp}", f"paths.cache={tmp}/cache"]
        timed_launch([*SWEEP, "plan=true", *out])  # warm-up: generates the smoke data and weights once
        one = statistics.median(timed_launch(["-m", "benchmark=smoke_fast", "seed=0", "plan=true", *out])
                                for _ in range(args.repeats))  # fmt: skip
        plan = statistics.median(timed_launch([*SWEEP, "plan=true", *out]) for _ in range(args.repeats))
        print(f"median of {args.repeats}: plan of 1 trial {one:.2f} s | plan of 60 trials {plan:.2f} s "
              f"({(plan - one) / 59 * 1000:.0f} ms per extra trial)")  # fmt: skip
        if args.slurm:
            sys.path.insert(0, str(REPO))
            from tests import slurm_cluster

            cluster = slurm_cluster.SlurmCluster(Path(tmp) / "slurm").start()
            try:
                submit = []
                for i in range(args.repeats):
                    submit.append(timed_launch([*SWEEP, "cluster=slurm", "cluster.gpus_per_node=0",
                                                f"output_root={tmp}/s{i}", f"paths.cache={tmp}/cache"],
                                               cluster.env))  # fmt: skip
                    subprocess.run(["scancel", "-u", os.environ.get("USER", "root")], env={**os.environ, **cluster.env})
                print(f"median of {args.repeats}: submit 60 trials to SLURM {statistics.median(submit):.2f} s")
            finally:
                cluster.stop()


if __name__ == "__main__":
    main()
