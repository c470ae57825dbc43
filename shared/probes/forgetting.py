"""Forgetting probe: the loss on one training batch B, seen once at step t_B, as training goes on.

"The AdEMAMix Optimizer: Better, Faster, Older", Pagliardini, Ablin & Grangier, arXiv:2409.03050 §5 ("AdEMAMix
models forget the training data at a slower pace"): the loss L_B(t) on the batch B used by optimizer step t_B drops
when the model trains on it and then rises again as later steps overwrite what B taught; AdEMAMix, whose slow EMA
keeps old gradients for ~1 / (1 - beta3) steps, forgets B more slowly than AdamW. The probe records, at every probe
step t (before t_B too, for the level of an unseen batch),
  loss = L_B(t)     (mean cross-entropy on B, eval mode, no label smoothing or z-loss)
and adds to ``final.json`` (so a claim can name them)
  forgetting_loss_after  L_B at t_B (t_B must be a probe step: ``at_step`` a multiple of ``train.probes.every``)
  forgetting_loss_end    L_B at the last probe step
  forgetting_rise        forgetting_loss_end - forgetting_loss_after   (how much of B was forgotten)
Differences from the paper: B is the run's own step-t_B batch (here also drawn, by chance, by later steps only as
often as any window of the training split is), not a batch held out of the rest of training.
"""
from __future__ import annotations

import math

from shared.probes.base import PROBES, Probe


@PROBES.register("forgetting")
class Forgetting(Probe):
    """``loss`` on the training batch of step ``at_step`` at every probe step; final ``forgetting_*`` scalars."""

    needs_batch = True

    def __init__(self, model, optimizer=None, batch=None, at_step: int = 1):
        super().__init__(model, optimizer, batch)
        if batch.train_batch is None:
            raise ValueError("forgetting probe: the fixed batch has no train_batch(step) (the trainer provides it)")
        if at_step < 1:
            raise ValueError(f"forgetting probe: at_step must be >= 1, got {at_step}")
        self.at_step, self.step, self._batch = at_step, 0, None
        self.after, self.end = math.nan, math.nan

    def check_every(self, every: int) -> None:
        if self.at_step % every:
            raise ValueError(f"forgetting probe: at_step {self.at_step} is not a probe step (train.probes.every "
                             f"{every}); pick a multiple of {every}")

    def after_step(self, step: int) -> None:
        self.step = step  # on_fixed_batch follows at the same probe step

    def on_fixed_batch(self, batch):
        if self._batch is None:
            self._batch = batch.train_batch(self.at_step)
        x, y = self._batch
        loss = batch.loss(batch.forward(x), y)
        if self.step == self.at_step:
            self.after = loss
        if self.step >= self.at_step:
            self.end = loss
        return {"loss": loss}

    def final_metrics(self) -> dict:
        return {"forgetting_loss_after": self.after, "forgetting_loss_end": self.end,
                "forgetting_rise": self.end - self.after}

    def state_dict(self) -> dict:
        return {"after": self.after, "end": self.end}

    def load_state_dict(self, state: dict) -> None:
        self.after, self.end = state["after"], state["end"]
