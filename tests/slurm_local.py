"""A real single-node Slurm for the tests (../shared/SPEC.md section 8): munged, slurmctld and slurmd
started by hand in a scratch folder, on free ports, and stopped by the pids this module started.

Needs Debian's slurm-wlm and munge (``apt-get install -y slurm-wlm munge``; .ci/run installs them) and
root (munged runs as the munge user, the Slurm daemons as root). Without accounting, ``sacct`` (which
submitit polls) fails; a stand-in on PATH prints ``JobID|State|NodeList`` from ``squeue -t all``
(finished jobs stay listed for MinJobAge = 1 h).

    python tests/slurm_local.py   # start one, run a job, stop it (a smoke check)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BINARIES = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel")

SACCT = """#!/bin/sh
# sacct stand-in for a Slurm without accounting storage: JobID|State|NodeList from squeue
ids=""
while [ $# -gt 0 ]; do
  case "$1" in
    -j) ids="$ids,$2"; shift 2 ;;
    -j*) ids="$ids,${1#-j}"; shift ;;
    *) shift ;;
  esac
done
echo "JobID|State|NodeList"
[ -n "$ids" ] && squeue -t all -h -o "%i|%T|%N" -j "${ids#,}" 2>/dev/null
exit 0
"""


def unavailable() -> str | None:
    """Why a local Slurm cannot start here, or None."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"Slurm/munge not installed ({', '.join(missing)} missing; apt-get install -y slurm-wlm munge)"
    if os.geteuid() != 0:
        return "starting munged and the Slurm daemons needs root"
    if not Path("/etc/munge/munge.key").exists():
        return "no /etc/munge/munge.key (reinstall munge)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    """``with LocalSlurm(folder) as slurm:`` a running single-node cluster; ``slurm.env`` holds the
    SLURM_CONF and PATH (with the sacct stand-in) that clients need; they are also set in os.environ
    while it runs, so submitit in this process finds them."""

    def __init__(self, root: Path, cpus: int = 2):
        self.root, self.cpus = Path(root), cpus
        self.procs: list[subprocess.Popen] = []
        self._old_env: dict = {}

    def conf(self) -> str:
        r = self.root
        return "\n".join([
            "ClusterName=benchtest", "SlurmctldHost=localhost",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            "SlurmUser=root", "AuthType=auth/munge", f"AuthInfo=socket={self.munge}/sock", "CredType=cred/munge",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none", "MpiDefault=none", "ReturnToService=2",
            "SchedulerType=sched/backfill", "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
            "KillWait=2", "MinJobAge=3600",
            f"StateSaveLocation={r}/state", f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/slurmctld.pid", f"SlurmdPidFile={r}/slurmd.pid",
            f"SlurmctldLogFile={r}/slurmctld.log", f"SlurmdLogFile={r}/slurmd.log",
            f"NodeName=localhost CPUs={self.cpus} RealMemory=8000 State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP", ""])

    def start(self, timeout: float = 30.0) -> "LocalSlurm":
        why = unavailable()
        if why:
            raise RuntimeError(why)
        r = self.root
        for d in ("state", "spool", "bin"):
            (r / d).mkdir(parents=True, exist_ok=True)
        # munged runs as the munge user, which must reach its folder: not under a 0700 pytest tmp folder
        munge = self.munge = Path(tempfile.mkdtemp(prefix="bench-munge-"))
        munge.chmod(0o755)
        shutil.chown(munge, "munge", "munge")
        (r / "slurm.conf").write_text(self.conf())   # after self.munge: the conf names its socket
        sacct = r / "bin" / "sacct"
        sacct.write_text(SACCT)
        sacct.chmod(0o755)
        env = {"SLURM_CONF": str(r / "slurm.conf"), "PATH": f"{r / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        self._old_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        self.env = env
        log = open(r / "daemons.log", "w")
        self.procs.append(subprocess.Popen(
            ["munged", "-F", "--socket", f"{munge}/sock", "--pid-file", f"{munge}/pid", "--log-file",
             f"{munge}/log", "--seed-file", f"{munge}/seed"], user="munge", group="munge", stdout=log,
            stderr=subprocess.STDOUT))
        self._wait(lambda: (munge / "sock").exists(), timeout, "munged")
        conf = str(r / "slurm.conf")
        self.procs.append(subprocess.Popen(["slurmctld", "-D", "-f", conf], stdout=log, stderr=subprocess.STDOUT))
        self.procs.append(subprocess.Popen(["slurmd", "-D", "-N", "localhost", "-f", conf], stdout=log,
                                           stderr=subprocess.STDOUT))
        self._wait(lambda: self._sinfo() == "idle", timeout, "the node to become idle")
        return self

    def _sinfo(self) -> str:
        res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
        return res.stdout.strip()

    def _wait(self, ok, timeout: float, what: str) -> None:
        t0 = time.monotonic()
        while not ok():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() - t0 > timeout:
                self.stop()
                tail = (self.root / "daemons.log").read_text()[-2000:]
                raise RuntimeError(f"local Slurm did not start (waiting for {what}; exited: {dead}):\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Cancel this cluster's jobs, then stop the daemons this object started (by pid)."""
        if any(p.poll() is None for p in self.procs[1:]):
            subprocess.run(["scancel", "--full", "--quiet", "--user", "root"], capture_output=True)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 10:
                res = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
                if res.returncode != 0 or not res.stdout.strip():
                    break
                time.sleep(0.3)
        for p in reversed(self.procs):   # slurmd, slurmctld, then munged
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        self.procs = []
        if getattr(self, "munge", None) is not None:
            shutil.rmtree(self.munge, ignore_errors=True)
            self.munge = None
        for k, v in self._old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._old_env = {}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp, LocalSlurm(Path(tmp)) as slurm:
        t0 = time.monotonic()
        out = Path(tmp) / "job.out"
        subprocess.run(["sbatch", "--wait", "-o", str(out), "--wrap", "hostname"], check=True)
        print(f"job done in {time.monotonic() - t0:.1f} s: {out.read_text().strip()}")
