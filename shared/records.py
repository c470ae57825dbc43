"""Run records: the text files of every finished run of a paper × profile, committed beside its results.

``runs/`` is git-ignored and lives on one machine; the tables in ``results/`` are all that a fresh checkout has. So
``repro aggregate`` also writes ``results/<paper>/<profile>/run_records.jsonl.gz``: one JSON line per run (variant,
seed, config hash, and the exact text of its ``meta.json``, ``final.json``, ``metrics.jsonl`` and ``derived.json``;
never weights). It serves two purposes:

- provenance: every number in the tables can be traced to its run's config, device, commit and learning curve;
- extension: with ``--config reuse_runs=True`` the workflow's ``run`` jobs call ``repro run --restore-from`` this
  file, which rewrites a run directory from its record instead of training, when the record's config hash equals the
  run's current one. A profile can then gain seeds, variants or sweep points on another machine (another session)
  and train only those. Off by default: ``snakemake --config profile=tiny`` trains every run itself.

Papers whose own rules analyse saved weights (an ``analysis`` block: landscape, Hessian, permutations) are never
restored, since the weights are not in the record.
"""
from __future__ import annotations

import gzip
import io
import json
import logging
from pathlib import Path

log = logging.getLogger("repro.records")

FILE = "run_records.jsonl.gz"
RUN_FILES = ("meta.json", "metrics.jsonl", "derived.json", "final.json")  # final.json last: it marks a run finished


def write_records(run_dirs: list[Path], out_file: str | Path) -> int:
    """One record per finished run directory (``<variant>/seed<S>``) into ``out_file`` (gzip, byte-stable: no
    timestamp in the header, so an unchanged set of runs rewrites an identical file). Returns the count."""
    lines = []
    for path in sorted(Path(p) for p in run_dirs):
        files = {name: (path / name).read_text() for name in RUN_FILES if (path / name).is_file()}
        meta = json.loads(files.get("meta.json", "{}"))
        lines.append(json.dumps({"variant": path.parent.name, "seed": int(path.name.removeprefix("seed")),
                                 "config_hash": meta.get("config_hash"), "files": files}, sort_keys=True))
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write("".join(line + "\n" for line in lines).encode())
    Path(out_file).write_bytes(buf.getvalue())
    return len(lines)


def read_records(file: str | Path) -> list[dict]:
    with gzip.open(file, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def restore_run(file: str | Path, variant: str, seed: int, config_hash: str, out_dir: str | Path) -> dict | None:
    """Rewrite ``out_dir`` from the record of (variant, seed) in ``file`` if its config hash is ``config_hash``;
    return the record's ``meta.json`` content, or None (no file, no record, or a record of another config)."""
    if not Path(file).is_file():
        return None
    found = [r for r in read_records(file) if r["variant"] == variant and r["seed"] == seed]
    if not found:
        return None
    record = found[0]
    if record["config_hash"] != config_hash:
        log.info("%s: the record of %s seed %d is of another config (%s, now %s); not restored", file, variant, seed,
                 str(record["config_hash"])[:10], config_hash[:10])
        return None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if name in record["files"]:
            (out / name).write_text(record["files"][name])
    return json.loads(record["files"].get("meta.json", "{}"))
