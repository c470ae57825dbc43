"""The real Snakemake workflow: `--lint`, the dry-run plan, and every paper's `smoke` profile end to end in a
temporary directory (STYLE.md rule 24), so the repository's runs/, results/ and READMEs are never touched."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_data import real_datasets_missing
from shared.results.readme import sections_in

REPO = Path(__file__).resolve().parents[1]
SMOKE_CONFIG = REPO / "workflows" / ".test" / "config.yaml"


def snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: int = 2400):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def papers_copy(tmp_path, monkeypatch):
    """A copy of papers/ the workflow may rewrite (README sections), used through $REPRO_PAPERS_DIR."""
    shutil.copytree(REPO / "papers", tmp_path / "papers")
    monkeypatch.setenv("REPRO_PAPERS_DIR", str(tmp_path / "papers"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return tmp_path / "papers"


def test_workflow_lint_is_clean(tmp_path, papers_copy):
    res = snakemake(tmp_path, "--lint")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Congratulations" in res.stdout + res.stderr


@pytest.mark.parametrize("profile", ["smoke", "tiny"])
def test_workflow_dry_run_plans_every_run(tmp_path, papers_copy, profile):
    from shared.config import list_papers, load_paper

    res = snakemake(tmp_path, "-n", "--config", f"profile={profile}")
    assert res.returncode == 0, res.stdout + res.stderr
    from shared.config.sweep import profile_variants

    n_runs = sum(len(profile_variants(cfg, profile)) * len(cfg["profiles"][profile]["seeds"])
                 for cfg in map(load_paper, list_papers()) if profile in cfg["profiles"])
    counts = {line.split()[0]: line.split()[1] for line in res.stdout.splitlines() if len(line.split()) == 2}
    assert counts.get("run") == str(n_runs)
    assert counts.get("ledger") == "1"


@pytest.mark.parametrize("profile, size", [("small", "small"), ("small_deep", "small"), ("cpu", "default")])
def test_run_jobs_take_the_resources_of_the_profile_they_extend(tmp_path, papers_copy, profile, size):
    """`small_deep` has no entry in the workflow config's `resources`: it takes `small`'s (one core per run), and a
    profile with neither its own entry nor a name it extends (`cpu`) the 2-thread default."""
    import yaml

    want = yaml.safe_load((REPO / "workflows" / "config.yaml").read_text())["resources"][size]
    res = snakemake(tmp_path, "-n", "-c2", "--config", f"profile={profile}", "papers=[rezero]")
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = [job.split("\n[")[0] for job in res.stdout.split("rule run:")[1:]]  # each job's block, up to the next
    threads = f"threads: {want['threads']}" if want["threads"] > 1 else None  # Snakemake omits "threads: 1"
    assert jobs and all(f"runtime={want['runtime']}," in job and f"mem_mb={want['mem_mb']}," in job
                        and (threads in job if threads else "threads:" not in job) for job in jobs), jobs[:2]


def test_a_run_of_the_same_config_as_an_earlier_one_is_restored_from_it(tmp_path, papers_copy):
    """small_scale_proxies' `*_high_lr` variants resolve to its lr 3e-2 grid points' configs: each such run waits
    for that run and is restored from its directory (shared.records), so one config is trained once per profile."""
    res = snakemake(tmp_path, "-n", "-p", "--config", "profile=tiny", "papers=[small_scale_proxies]")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    commands = [line.removeprefix("Shell command: ") for line in out.splitlines()
                if line.removeprefix("Shell command: ").startswith("repro run small_scale_proxies")]
    twins = [c for c in commands if "--variant baseline_high_lr " in c or "--variant qk_layernorm_high_lr " in c]
    assert len(commands) == 39 and len(twins) == 6  # z_loss_high_lr has no grid twin: trained
    for command in twins:
        variant, seed = command.split("--variant ")[1].split()[0], command.split("--seed ")[1].split()[0]
        base = variant.removesuffix("_high_lr")
        assert f"--restore-from runs/small_scale_proxies/tiny/{base}.lr0.03/seed{seed} " in command, command
    assert not any("--restore-from" in c for c in commands if c not in twins)
    waits = [block for block in out.split("rule run:")[1:] if "variant=baseline_high_lr, seed=0" in block]
    assert len(waits) == 1 and "runs/small_scale_proxies/tiny/baseline.lr0.03/seed0/final.json" in waits[0]


@pytest.mark.slow
@pytest.mark.data
def test_workflow_smoke_profile_end_to_end(tmp_path, papers_copy):
    reason = real_datasets_missing()
    if reason:
        pytest.skip(reason)
    from shared.config import list_papers, load_paper

    res = snakemake(tmp_path, "-c2", "--configfile", str(SMOKE_CONFIG), "--config", "update_readmes=True")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    ledger = (tmp_path / "results" / "LEDGER.md").read_text()
    for slug in list_papers():
        cfg = load_paper(slug)
        if "smoke" not in cfg["profiles"]:
            continue
        out = tmp_path / "results" / slug / "smoke"
        for name in ("runs.csv", "summary.csv", "claims.csv", "table.md", "claims.png", "curves.png"):
            assert (out / name).is_file(), f"{slug}: {name} missing"
        readme = (papers_copy / slug / "README.md").read_text()
        assert [s for s in sections_in(readme) if s in ("results", "verdict")] == ["results", "verdict"]
        assert "### Profile `smoke`" in readme
        for claim in cfg.get("claims", []):
            if claim.get("profiles") and "smoke" not in claim["profiles"]:
                continue  # a claim limited to other profiles is not judged on smoke
            assert f"| [{slug}](" in ledger and f"`{claim['id']}` | `smoke`" in ledger
    # the repository itself is untouched
    assert "### Profile `smoke`" not in (REPO / "papers" / list_papers()[0] / "README.md").read_text()
    # a second invocation has nothing to do
    again = snakemake(tmp_path, "-n", "--configfile", str(SMOKE_CONFIG), "--config", "update_readmes=True")
    assert "Nothing to be done" in again.stdout + again.stderr

    # a fresh machine (no runs/) with reuse_runs restores every run from the committed records, trains none, and
    # rebuilds the same tables: a profile can be extended elsewhere without retraining what is recorded
    out = tmp_path / "results" / "mish" / "smoke"
    before = {name: (out / name).read_bytes() for name in ("runs.csv", "claims.csv", "run_records.jsonl.gz")}
    shutil.rmtree(tmp_path / "runs" / "mish")
    res = snakemake(tmp_path, "-c2", "--configfile", str(SMOKE_CONFIG), "--config", "reuse_runs=True", "papers=[mish]")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert {name: (out / name).read_bytes() for name in before} == before
    for variant in load_paper("mish")["variants"]:
        log = tmp_path / "runs" / "logs" / "run" / "mish" / "smoke" / variant / "seed0.log"
        assert "restored from" in log.read_text(), variant
        assert not (tmp_path / "runs" / "mish" / "smoke" / variant / "seed0" / "checkpoint.pt").exists()
