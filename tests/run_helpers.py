"""Test helper: a training run killed mid-way, as a crash or a cancelled job would leave it."""
import pytest

from shared.train import run


def run_killed_at(cfg: dict, out_dir, batches_cls, step: int, monkeypatch) -> None:
    """Run ``cfg`` into ``out_dir`` until it asks ``batches_cls`` for batch ``step``, then die (KeyboardInterrupt)."""
    original = batches_cls.batch

    def batch_or_die(self, s):
        if s == step:
            raise KeyboardInterrupt("simulated kill")
        return original(self, s)

    with monkeypatch.context() as patch:
        patch.setattr(batches_cls, "batch", batch_or_die)
        with pytest.raises(KeyboardInterrupt):
            run(cfg, out_dir)
