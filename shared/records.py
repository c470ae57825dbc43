"""Run records: the text files of every finished run of a paper × profile, committed beside its results.

``runs/`` is git-ignored and lives on one machine; the tables in ``results/`` are all that a fresh checkout has. So
``repro aggregate`` also writes ``results/<paper>/<profile>/run_records.jsonl.gz``: one JSON line per run (variant,
seed, config hash, and the exact text of its ``meta.json``, ``final.json``, ``metrics.jsonl`` and ``derived.json``;
never weights). It serves two purposes:

- provenance: every number in the tables can be traced to its run's config, device, commit and learning curve;
- extension: with ``--config reuse_runs=True`` the workflow's ``run`` jobs call ``repro run --restore-from`` with
  this file first and then every paper's records under ``results/``; a run directory is rewritten from the first
  record whose config hash equals the run's current one (the resolved config: model, data, optimizer, schedule,
  training, seed) and whose data files still have the recorded checksums, instead of training. A profile can then
  gain seeds, variants or sweep points on another machine (another session) and train only those, and a run that
  another paper already trained under the same config (a shared SGD baseline, say) is not trained twice; its
  ``meta.json`` then names the run it came from (``restored_from``). Off by default: ``snakemake --config
  profile=tiny`` trains every run itself.

Papers whose own rules analyse saved weights (an ``analysis`` block: landscape, Hessian, permutations) are never
restored, since the weights are not in the record.

Within one profile, two variants can resolve to the same config (small_scale_proxies' ``*_high_lr`` variants are
its lr 3e-2 grid points). The workflow trains the first and restores the other from the first's run directory
(``--restore-from runs/.../<variant>/seed<S>``; a finished run directory is a source of one record), always, not
only with ``reuse_runs``.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import re
from pathlib import Path

log = logging.getLogger("repro.records")

FILE = "run_records.jsonl.gz"
RUN_FILES = ("meta.json", "metrics.jsonl", "derived.json", "final.json")  # final.json last: it marks a run finished
HASH_AT_START = re.compile(r'\{"config_hash": "([^"]+)"')  # write_records sorts keys: the hash comes first


def write_records(run_dirs: list[Path], out_file: str | Path) -> int:
    """One record per finished run directory (``<variant>/seed<S>``) into ``out_file`` (gzip, byte-stable: no
    timestamp in the header, so an unchanged set of runs rewrites an identical file). Returns the count."""
    lines = [json.dumps(run_record(path), sort_keys=True) for path in sorted(Path(p) for p in run_dirs)]
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write("".join(line + "\n" for line in lines).encode())
    Path(out_file).write_bytes(buf.getvalue())
    return len(lines)


def run_record(path: str | Path) -> dict:
    """The record of one run directory (``<variant>/seed<S>``): variant, seed, config hash and its files' text."""
    path = Path(path)
    files = {name: (path / name).read_text() for name in RUN_FILES if (path / name).is_file()}
    meta = json.loads(files.get("meta.json", "{}"))
    return {"variant": path.parent.name, "seed": int(path.name.removeprefix("seed")),
            "config_hash": meta.get("config_hash"), "files": files}


def read_records(file: str | Path) -> list[dict]:
    with gzip.open(file, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def restore_sources(paper_cfg: dict, results_dir: str | Path, paper: str, profile: str) -> list[Path]:
    """Where a run of ``paper`` × ``profile`` looks for a record to restore (``reuse_runs``): the profile's own
    records, then every paper's under ``results_dir``; none for a paper whose own rules analyse saved weights (an
    ``analysis`` block), as records hold no weights."""
    if paper_cfg.get("analysis"):
        return []
    return [Path(results_dir) / paper / profile / FILE, Path(results_dir)]


def earlier_twins(runs) -> dict[tuple[str, int], tuple[str, int]]:
    """For runs given in order as ``(variant, seed, config hash)``: ``{(variant, seed): (variant, seed)}`` naming,
    for each run whose config hash equals an earlier run's, the first run with it. The workflow restores such a run
    from that run's directory instead of training it again; ``repro plan`` reports it as a copy."""
    first: dict[str, tuple[str, int]] = {}
    twins: dict[tuple[str, int], tuple[str, int]] = {}
    for variant, seed, run_hash in runs:
        earlier = first.setdefault(run_hash, (variant, int(seed)))
        if earlier != (variant, int(seed)):
            twins[(variant, int(seed))] = earlier
    return twins


def is_run_dir(path: Path) -> bool:
    """A finished run directory (``<variant>/seed<S>`` with ``meta.json`` and ``final.json``)."""
    return path.name.startswith("seed") and (path / "final.json").is_file() and (path / "meta.json").is_file()


def record_files(sources: str | Path | list[str | Path]) -> list[Path]:
    """Records in search order: each source is a ``run_records.jsonl.gz``, a finished run directory (one record:
    the workflow restores a run whose config equals an earlier run's of the same profile from that run's directory)
    or a folder searched for records files (sorted); absent sources are skipped and each is listed once."""
    found: list[Path] = []
    seen: set[Path] = set()
    for source in [sources] if isinstance(sources, (str, Path)) else sources:
        source = Path(source)
        if is_run_dir(source):
            files = [source]
        elif source.is_dir():
            files = sorted(source.rglob(FILE))
        else:
            files = [source] if source.is_file() else []
        for file in files:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                found.append(file)
    return found


def data_mismatch(meta: dict, data_root: str | Path) -> str | None:
    """Why the data files under ``data_root`` are not the ones the recorded run read (``meta["data"]["files"]``:
    relative path -> sha256), or None if all still have the recorded checksums."""
    from shared.data import file_hashes

    for rel, sha in ((meta.get("data") or {}).get("files") or {}).items():
        path = Path(data_root) / rel
        if not path.is_file():
            return f"{path} is absent"
        now = file_hashes(path)["sha256"]
        if now != sha:
            return f"{path} has changed since (sha256 {now[:10]}, recorded {sha[:10]})"
    return None


def find_records(sources: str | Path | list[str | Path], config_hashes: set[str],
                 data_root: str | Path | None = None) -> dict[str, tuple[Path, dict]]:
    """For each hash in ``config_hashes``, the first record in ``sources`` (see ``record_files``) with it whose data
    files, given ``data_root``, are unchanged there: ``{hash: (records file, record)}``; hashes with none are absent.
    Each file is read once, and only lines of a wanted hash are parsed (a record line opens with its hash)."""
    found: dict[str, tuple[Path, dict]] = {}
    for file in record_files(sources):
        with _record_lines(file) as lines:
            for line in lines:
                head = HASH_AT_START.match(line)
                if not head or head[1] not in config_hashes or head[1] in found:
                    continue
                record = json.loads(line)
                meta = json.loads(record["files"].get("meta.json", "{}"))
                why = data_mismatch(meta, data_root) if data_root is not None else None
                if why:
                    log.info("%s: the record of %s seed %d has this config, but %s; not restored", file,
                             record["variant"], record["seed"], why)
                    continue
                found[head[1]] = (file, record)
    return found


def _record_lines(file: Path):
    """A context manager over the record lines of a records file or of one run directory."""
    if file.is_dir():
        return contextlib.nullcontext([json.dumps(run_record(file), sort_keys=True)])
    return gzip.open(file, "rt")


def restore_run(sources: str | Path | list[str | Path], config_hash: str, out_dir: str | Path, *,
                target: dict | None = None, data_root: str | Path | None = None) -> dict | None:
    """Rewrite ``out_dir`` from the first record in ``sources`` (see ``record_files``) whose config hash is
    ``config_hash`` and, given ``data_root``, whose data files are unchanged there; return the written ``meta.json``
    content, or None (no file, no record of this config, or changed data).

    The hash covers the whole resolved run config, seed included, so a record of another paper, profile or variant
    name with this hash is the same training. ``target`` holds the run's own ``paper``, ``variant``, ``profile`` and
    ``seed``: where the record's differ, ``meta.json`` takes the target's and names the source in ``restored_from``.
    """
    hit = find_records(sources, {config_hash}, data_root).get(config_hash)
    if hit is None:
        return None
    file, record = hit
    files = dict(record["files"])
    meta = json.loads(files.get("meta.json", "{}"))
    source = {"paper": meta.get("paper"), "profile": meta.get("profile"), "variant": record["variant"],
              "seed": record["seed"]}
    log.info("record of this config: %s, %s %s %s seed %s", file, *source.values())
    if target and any(source[k] != target.get(k) for k in source):
        meta.update({k: target[k] for k in source if k in target}, restored_from={**source, "records": str(file)})
        files["meta.json"] = json.dumps(meta, indent=2)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if name in files:
            (out / name).write_text(files[name])
    return meta
