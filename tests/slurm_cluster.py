"""A real single-node SLURM cluster (munge, slurmctld, slurmd from Debian) in a temporary folder.

No systemd, no root-owned state outside the folder: every daemon gets its own socket, spool, state, log
and pid file there, and clients find it through SLURM_CONF. The node advertises 16 CPUs so that
multi-task jobs fit on a 2-core machine (SlurmdParameters=config_overrides).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")


def available() -> bool:
    return all(shutil.which(d) or Path(f"/usr/sbin/{d}").exists() for d in DAEMONS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf(root: Path, host: str, extra: tuple[str, ...] = ()) -> str:
    return f"""\
ClusterName=xfertest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket,cred_expire=5
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MailProg=/bin/true
JobRequeue=1
ReturnToService=2
MpiDefault=none
KillWait=5
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=1
NodeName={host} NodeAddr=127.0.0.1 CPUs=16 RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=other Nodes=ALL Default=NO MaxTime=INFINITE State=UP
""" + "".join(f"{line}\n" for line in extra)


class SlurmCluster:
    """Start with :meth:`start`, stop with :meth:`stop`; ``env`` is what clients need. ``extra``: more
    ``slurm.conf`` lines (``MaxArraySize=5``), after the defaults, which they override (slurmctld keeps a
    key's last value)."""

    def __init__(self, root: Path, extra: tuple[str, ...] = ()) -> None:
        self.root = Path(root)
        self.extra = tuple(extra)
        self.conf = self.root / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}

    def _sbin(self, name: str) -> str:
        return shutil.which(name) or f"/usr/sbin/{name}"

    def start(self) -> SlurmCluster:
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        key = self.root / "munge.key"
        subprocess.run([self._sbin("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
        key.chmod(0o600)
        subprocess.run([self._sbin("munged"), f"--socket={self.root}/munge.socket", f"--key-file={key}",
                        f"--pid-file={self.root}/munged.pid", f"--log-file={self.root}/munged.log",
                        f"--seed-file={self.root}/munge.seed", "--force"], check=True)  # fmt: skip
        self.conf.write_text(_conf(self.root, socket.gethostname().split(".")[0], self.extra))
        env = {**os.environ, **self.env}
        subprocess.run([self._sbin("slurmctld"), "-f", str(self.conf)], check=True, env=env)
        subprocess.run([self._sbin("slurmd"), "-f", str(self.conf)], check=True, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env).stdout
            if "idle" in out:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"SLURM did not come up: {out!r}\n{(self.root / 'slurmctld.log').read_text()[-2000:]}")

    def stop(self) -> None:
        env = {**os.environ, **self.env}
        subprocess.run(["scancel", "--full", "-u", "root"], env=env, capture_output=True)
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            path = self.root / pid_file
            if path.exists():
                try:
                    os.kill(int(path.read_text().strip()), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
        time.sleep(0.5)
