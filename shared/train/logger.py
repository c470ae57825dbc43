"""``metrics.jsonl`` writer: one JSON object per line, flushed per line so a killed run keeps its log."""
from __future__ import annotations

import json
import math
from pathlib import Path


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; null means "not a number" in every file this project writes
    return value


class MetricsLog:
    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = path
        if resume_step is not None and path.exists():
            # drop lines logged after the checkpoint: the resumed run writes them again, identically
            keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= resume_step]
            path.write_text("".join(ln + "\n" for ln in keep))
        elif path.exists():
            path.unlink()
        self._file = open(path, "a")

    def write(self, **record) -> None:
        self._file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
