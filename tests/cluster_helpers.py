"""Helpers for tests/test_cluster.py: when the throw-away SLURM may run here, bringing it up and down through
scripts/local_slurm.sh, running the workflow locally or through workflows/profiles/slurm, and reading what SLURM
recorded of each job (`scontrol show job`)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCAL_SLURM = REPO / "scripts" / "local_slurm.sh"
SLURM_PROFILE = REPO / "workflows" / "profiles" / "slurm"
# No slurmdbd on the throw-away cluster: status from squeue (its MinJobAge keeps finished jobs listed), no account.
# Frequent status checks keep the test short; a real cluster keeps the plugin's default.
LOCAL_CLUSTER_ARGS = ("--slurm-status-command", "squeue", "--slurm-no-account",
                      "--slurm-init-seconds-before-status-checks", "2")
OPT_IN = "REPRO_CLUSTER_TESTS"


def skip_reason(env: dict) -> str | None:
    """Why the cluster tests cannot run here (None: they can). Opt-in, because they install packages as root."""
    if os.environ.get(OPT_IN) != "1":
        return (f"cluster tests are opt-in: set {OPT_IN}=1 (.ci/run does) to bring up a throw-away single-node SLURM "
                "with scripts/local_slurm.sh (root; installs slurm-wlm and munge with apt if missing)")
    if not sys.platform.startswith("linux"):
        return "cluster tests need Linux"
    res = subprocess.run(["bash", str(LOCAL_SLURM), "check"], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return f"no throw-away SLURM on this machine: {(res.stdout + res.stderr).strip()}"
    return None


class LocalSlurm:
    """scripts/local_slurm.sh with its own state directory; `env` is what clients and Snakemake need."""

    def __init__(self, state_dir: Path, base_env: dict):
        self.env = dict(base_env, REPRO_SLURM_DIR=str(state_dir))
        self.log = ""

    def _script(self, cmd: str, timeout: int) -> subprocess.CompletedProcess:
        res = subprocess.run(["bash", str(LOCAL_SLURM), cmd], capture_output=True, text=True, env=self.env,
                             timeout=timeout)
        self.log += res.stdout + res.stderr
        return res

    def up(self) -> dict:
        res = self._script("up", timeout=900)  # apt-get install on a fresh machine takes a minute or two
        if res.returncode != 0:
            raise RuntimeError(f"local_slurm.sh up failed:\n{self.log}")
        # what a user gets from `eval "$(bash scripts/local_slurm.sh env)"`
        shell = f'eval "$(bash {LOCAL_SLURM} env)" && printf "%s\\0%s" "$SLURM_CONF" "$PATH"'
        conf, path = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, env=self.env,
                                    check=True).stdout.split("\0")
        self.env.update(SLURM_CONF=conf, PATH=path)
        return self.env

    def down(self) -> None:
        self._script("down", timeout=120)


def snakemake(workdir: Path, *args: str, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def snakemake_slurm(workdir: Path, *args: str, env: dict, background: bool = False, timeout: int = 900):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--profile", str(SLURM_PROFILE), *LOCAL_CLUSTER_ARGS, *args]
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def final_results(workdir: Path) -> dict[str, dict]:
    """Every finished run under workdir/runs: its final.json without the wall time (which no executor repeats)."""
    out = {}
    for path in sorted((workdir / "runs").glob("*/*/*/seed*/final.json")):
        final = json.loads(path.read_text())
        final.pop("wall_time_s", None)
        out[str(path.parent.relative_to(workdir))] = final
    return out


def slurm_jobs(env: dict) -> list[dict]:
    """Every job slurmctld still remembers (MinJobAge), as `scontrol show job --oneliner` key=value dicts."""
    res = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, env=env,
                         check=True)
    jobs = []
    for line in res.stdout.splitlines():
        # values may not contain spaces except Comment/Command, which come last enough not to matter here
        jobs.append(dict(re.findall(r"(\S+?)=(\S*)", line)))
    return jobs


def submitted_jobs(snakemake_output: str) -> dict[str, dict]:
    """SLURM job id -> the job's rule, wildcards, threads and resources, as Snakemake printed them when it submitted
    the job (a job block lists `threads:` only when above 1)."""
    blocks, jobs = {}, {}
    for block in re.split(r"\n(?=\[\w{3} \w{3} +\d+ [\d:]+ \d{4}\]\n)", snakemake_output):
        rule = re.search(r"^(?:local)?rule (\w+):", block, flags=re.M)
        jobid = re.search(r"^\s+jobid: (\d+)", block, flags=re.M)
        if rule and jobid:
            res = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
            threads = re.search(r"^\s+threads: (\d+)", block, flags=re.M)
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, flags=re.M)
            blocks[jobid.group(1)] = {
                "rule": rule.group(1),
                "wildcards": wildcards.group(1) if wildcards else "",
                "threads": int(threads.group(1)) if threads else 1,
                "resources": dict(re.findall(r"(\w+)=([^,\s]+)", res.group(1))) if res else {},
            }
    for sm_id, slurm_id in re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", snakemake_output):
        jobs[slurm_id] = blocks[sm_id]
    return jobs


def minutes(limit: str) -> int:
    """SLURM's [days-]hh:mm:ss (or mm:ss) time limit in minutes."""
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return (int(days or 0) * 24 + h) * 60 + m + (1 if s else 0)


def mem_mb(value: str) -> int:
    """scontrol's MinMemoryNode (e.g. 4000M, 8G) in MB."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", value).groups()
    return round(float(number) * {"K": 1 / 1024, "M": 1, "": 1, "G": 1024, "T": 1024 ** 2}[unit])
