"""The shared training loop (``run``) and its parts: device/precision/seeding, checkpoints, provenance, logging."""
from shared.train.loop import build, run

__all__ = ["build", "run"]
