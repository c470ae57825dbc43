"""Forgetting probe: the loss on one training batch B, seen once at step t_B, as training goes on.

"The AdEMAMix Optimizer: Better, Faster, Older", Pagliardini, Ablin & Grangier, arXiv:2409.03050 §5 ("AdEMAMix
models forget the training data at a slower pace"): the loss L_B(t) on the batch B used by optimizer step t_B drops
when the model trains on it and then rises again as later steps overwrite what B taught; AdEMAMix, whose slow EMA
keeps old gradients for ~1 / (1 - beta3) steps, forgets B more slowly than AdamW. The probe records, at every probe
step t (before t_B too, for the level of an unseen batch),
  loss           = L_B(t)     (mean cross-entropy on B, eval mode, no label smoothing or z-loss)
  reference_loss = L_R(t)     (the same on the probes' fixed held-out batch R)
and adds to ``final.json`` (so a claim can name them; t_B must be a probe step: ``at_step`` a multiple of
``train.probes.every``)
  forgetting_loss_before  L_B with the weights before step t_B (what one step on B starts from)
  forgetting_loss_after   L_B(t_B)
  forgetting_loss_end     L_B at the last probe step
  forgetting_dip          after - before                          (what the one step on B taught, < 0)
  forgetting_rise         end - after                             (raw: also holds the run's overall progress)
  forgetting_excess_rise  (L_B - L_R)(end) - (L_B - L_R)(t_B)     (the rise net of progress on held-out data)
A small model trained on small batches improves on every batch between t_B and the end, so ``forgetting_rise`` is
mostly that progress; ``forgetting_excess_rise`` compares B with held-out text at the same two steps instead.
Differences from the paper: B is the run's own step-t_B batch (here also drawn, by chance, by later steps only as
often as any window of the training split is), not a batch held out of the rest of training.
"""
from __future__ import annotations

import math

from shared.probes.base import PROBES, Probe, frozen_forward


@PROBES.register("forgetting")
class Forgetting(Probe):
    """``loss`` on the training batch of step ``at_step`` and ``reference_loss`` on the fixed held-out batch at every
    probe step; final ``forgetting_*`` scalars (module docstring)."""

    needs_batch = True

    def __init__(self, model, optimizer=None, batch=None, at_step: int = 1):
        super().__init__(model, optimizer, batch)
        if batch.train_batch is None:
            raise ValueError("forgetting probe: the fixed batch has no train_batch(step) (the trainer provides it)")
        if at_step < 1:
            raise ValueError(f"forgetting probe: at_step must be >= 1, got {at_step}")
        self.at_step, self.step, self._batch = at_step, 0, None
        self.values = {"before": math.nan, "after": math.nan, "end": math.nan, "excess_after": math.nan,
                       "excess_end": math.nan}

    def check_every(self, every: int) -> None:
        if self.at_step % every:
            raise ValueError(f"forgetting probe: at_step {self.at_step} is not a probe step (train.probes.every "
                             f"{every}); pick a multiple of {every}")

    def _loss_on_b(self, batch) -> float:
        if self._batch is None:
            self._batch = batch.train_batch(self.at_step)
        x, y = self._batch
        return batch.loss(batch.forward(x), y)

    def before_step(self, step: int) -> None:
        if step == self.at_step:  # weights w_{t_B - 1}: the step on B has not been taken yet
            with frozen_forward(self.model):
                self.values["before"] = self._loss_on_b(self.batch)

    def after_step(self, step: int) -> None:
        self.step = step  # on_fixed_batch follows at the same probe step

    def on_fixed_batch(self, batch):
        loss = self._loss_on_b(batch)
        reference = batch.loss(batch.forward(batch.x), batch.y)
        if self.step == self.at_step:
            self.values.update(after=loss, excess_after=loss - reference)
        if self.step >= self.at_step:
            self.values.update(end=loss, excess_end=loss - reference)
        return {"loss": loss, "reference_loss": reference}

    def final_metrics(self) -> dict:
        v = self.values
        return {"forgetting_loss_before": v["before"], "forgetting_loss_after": v["after"],
                "forgetting_loss_end": v["end"], "forgetting_dip": v["after"] - v["before"],
                "forgetting_rise": v["end"] - v["after"],
                "forgetting_excess_rise": v["excess_end"] - v["excess_after"]}

    def state_dict(self) -> dict:
        return dict(self.values)

    def load_state_dict(self, state: dict) -> None:
        self.values.update(state)
