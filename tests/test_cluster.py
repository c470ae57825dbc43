"""The workflow on a real SLURM (issue 10): a throw-away single-node cluster from scripts/local_slurm.sh, Snakemake's
SLURM executor plugin and the repository's profile (workflows/profiles/slurm), in temporary directories.

- the smoke DAG of a few papers (``CLUSTER_PAPERS``: plain classification runs, an LM, an lr sweep and a paper's own
  rule) through SLURM gives final metrics identical to the same DAG run locally (same seeds, CPU); every paper's
  smoke DAG runs locally in tests/test_workflow.py;
- every submitted job asks SLURM for its rule's threads, mem_mb and runtime;
- a run cancelled with `scancel` fails the workflow; the rerun resumes it from its checkpoint, reaches the metrics of
  an uninterrupted run and recomputes nothing that had finished.

Opt-in (REPRO_CLUSTER_TESTS=1, set by .ci/run) and only as root where apt can install slurm-wlm and munge: skipped
with the reason otherwise. A few minutes on 2 cores, most of it the two smoke DAGs.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from fixtures_data import real_datasets_missing
from cluster_helpers import (LocalSlurm, final_results, mem_mb, minutes, skip_reason, slurm_jobs, snakemake,
                             snakemake_slurm, submitted_jobs, timed)

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.data]

REPO = Path(__file__).resolve().parents[1]
SMOKE_CONFIG = REPO / "workflows" / ".test" / "config.yaml"
# a run long enough to cancel mid-way, checkpointing every 2 steps: a test-only profile in a copy of papers/mish
CANCEL_PROFILE = {
    "description": "tests/test_cluster.py: a run to cancel mid-way; checkpoints every 2 steps",
    "seeds": [0],
    "overrides": {"data": {"subset_per_class": 20, "test_subset": 200},
                  "train": {"steps": 20, "batch_size": 32, "eval_batch_size": 200, "log_every": 1,
                            "checkpoint_every": 2}},
}
# CPU on any machine; the cancelled run asks for 2 CPUs, so the resource check is not the default of 1
TEST_CONFIG = {"device": "cpu", "resources": {"cancel": {"threads": 2, "mem_mb": 3000, "runtime": 15, "gpu": 0}}}
CANCEL_RUN = "runs/mish/cancel/relu/seed0"
CLUSTER_PAPERS = ("mish", "pre_ln_transformer", "amsgrad")


@pytest.fixture(scope="module")
def base_env(tmp_path_factory):
    """The environment of every workflow call: a papers/ copy with the cancel profile, the repository importable."""
    root = tmp_path_factory.mktemp("cluster")
    for slug in CLUSTER_PAPERS:
        shutil.copytree(REPO / "papers" / slug, root / "papers" / slug)
    cfg_path = root / "papers" / "mish" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["profiles"]["cancel"] = CANCEL_PROFILE
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (root / "test_config.yaml").write_text(yaml.safe_dump(TEST_CONFIG))
    env = dict(os.environ, REPRO_PAPERS_DIR=str(root / "papers"),
               REPRO_CACHE_DIR=str(tmp_path_factory.getbasetemp() / "cache"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return root, env


@pytest.fixture(scope="module")
def cluster(base_env):
    root, env = base_env
    # short: the munge socket lives in it (unix socket paths are limited to 107 bytes)
    slurm = LocalSlurm(Path(f"/tmp/repro-slurm-test-{os.getpid()}"), env)
    reason = skip_reason(slurm.env) or real_datasets_missing()
    if reason:
        pytest.skip(reason)
    try:
        yield slurm.up()
    finally:
        slurm.down()


@pytest.fixture(scope="module")
def smoke_through_slurm(base_env, cluster):
    """The CLUSTER_PAPERS' smoke DAG through SLURM, once for the module: (workdir, snakemake result, seconds)."""
    root, _ = base_env
    res, seconds = timed(snakemake_slurm, root / "slurm", "--configfile", str(SMOKE_CONFIG),
                         str(root / "test_config.yaml"), env=cluster)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-6000:]
    return root / "slurm", res, seconds


def test_cluster_smoke_dag_matches_local_run(base_env, smoke_through_slurm):
    root, env = base_env
    slurm_dir, _, slurm_s = smoke_through_slurm
    local, local_s = timed(snakemake, root / "local", "-c2", "--configfile", str(SMOKE_CONFIG),
                           str(root / "test_config.yaml"), env=env)
    assert local.returncode == 0, local.stdout[-4000:] + local.stderr[-4000:]
    print(f"\nsmoke DAG wall time: local -c2 {local_s:.0f} s, through SLURM {slurm_s:.0f} s")
    through_slurm, locally = final_results(slurm_dir), final_results(root / "local")
    papers = {run.split("/")[1] for run in locally}
    assert len(papers) >= 2 and len(locally) >= 2, locally
    assert through_slurm == locally  # every run, every metric, exactly


def test_cluster_jobs_request_their_rule_resources(cluster, smoke_through_slurm):
    _, res, _ = smoke_through_slurm
    expected = submitted_jobs(res.stdout + res.stderr)
    recorded = {job["JobId"]: job for job in slurm_jobs(cluster)}
    assert {job["rule"] for job in expected.values()} >= {"prepare_data", "run", "aggregate", "ledger"}
    for slurm_id, job in expected.items():
        got = recorded[slurm_id]
        what = f"SLURM job {slurm_id} ({job['rule']} {job['wildcards']})"
        assert got["JobState"] == "COMPLETED", what
        assert int(got["NumCPUs"]) == job["threads"], what
        assert mem_mb(got["MinMemoryNode"]) == int(job["resources"]["mem_mb"]), what
        assert minutes(got["TimeLimit"]) == int(job["resources"]["runtime"]), what


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"Snakemake exited while waiting for {what}:\n{proc.stdout.read()[-4000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _running_job(env: dict, comment: str) -> str | None:
    res = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True, text=True, env=env)
    return next((line.split()[0] for line in res.stdout.splitlines() if line.split()[1:] == [comment]), None)


def test_cluster_cancelled_run_resumes_to_uninterrupted_result(base_env, cluster, smoke_through_slurm):
    root, env = base_env
    workdir, _, _ = smoke_through_slurm
    configs = ("--configfile", str(SMOKE_CONFIG), str(root / "test_config.yaml"))  # nargs: after the targets
    # the smoke DAG (finished) and the long run: only the long run and its data step are new
    targets = ("results/LEDGER.md", f"{CANCEL_RUN}/final.json")
    finished = sorted(workdir.glob("runs/*/smoke/**/*.json")) + sorted(workdir.glob("results/**/*.*"))
    assert finished
    proc = snakemake_slurm(workdir, *targets, *configs, env=cluster, background=True)
    try:
        job = _wait_for(lambda: _running_job(cluster, "rule_run_wildcards_mish_cancel_relu_0"), 300, "the SLURM job",
                        proc)
        ckpt = workdir / CANCEL_RUN / "checkpoint.pt"
        _wait_for(ckpt.exists, 300, f"{ckpt} (the run's first checkpoint)", proc)
        subprocess.run(["scancel", job], check=True, env=cluster)
        recorded = next(j for j in slurm_jobs(cluster) if j["JobId"] == job)
        assert int(recorded["NumCPUs"]) == TEST_CONFIG["resources"]["cancel"]["threads"]
        assert mem_mb(recorded["MinMemoryNode"]) == TEST_CONFIG["resources"]["cancel"]["mem_mb"]
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out[-4000:]
    assert "CANCELLED" in out and "Error in rule run" in out, out[-4000:]
    assert not (workdir / CANCEL_RUN / "final.json").exists()
    data_step = workdir / "runs/mish/cancel/data.json"
    before = {p: p.stat().st_mtime_ns for p in [*finished, data_step]}

    again = snakemake_slurm(workdir, *targets, *configs, env=cluster)
    log = again.stdout + again.stderr
    assert again.returncode == 0, log[-6000:]
    # nothing that had finished is recomputed: one job, the cancelled run, and every other output untouched
    rerun = list(submitted_jobs(log).values())
    assert [(j["rule"], j["wildcards"]) for j in rerun] == \
        [("run", "paper=mish, profile=cancel, variant=relu, seed=0")], log[-4000:]
    assert {p: p.stat().st_mtime_ns for p in before} == before
    meta = json.loads((workdir / CANCEL_RUN / "meta.json").read_text())
    assert meta["resumed_from_step"] and 0 < meta["resumed_from_step"] < meta["total_steps"], meta

    reference = root / "uninterrupted"
    ref = subprocess.run([sys.executable, "-m", "shared.cli", "run", "mish", "--variant", "relu", "--profile", "cancel", "--seed", "0",
                          "--threads", str(TEST_CONFIG["resources"]["cancel"]["threads"]), "--device", "cpu",
                          "--out", str(reference)], capture_output=True, text=True, env=env, timeout=600,
                         cwd=root)
    assert ref.returncode == 0, ref.stdout[-2000:] + ref.stderr[-2000:]
    resumed = json.loads((workdir / CANCEL_RUN / "final.json").read_text())
    uninterrupted = json.loads((reference / "final.json").read_text())
    assert {k: v for k, v in resumed.items() if k != "wall_time_s"} == \
        {k: v for k, v in uninterrupted.items() if k != "wall_time_s"}
