"""Evaluation on held-out splits: mean loss and accuracy (classification) or perplexity (language modelling)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from shared.data import eval_batches
from shared.train.device import autocast


@torch.no_grad()
def evaluate(model, data, split: str, task: str, cfg: dict, device: torch.device) -> dict:
    """Metrics for one split, with the model in eval mode (BatchNorm running stats, no dropout)."""
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in eval_batches(data, split, cfg["train"]["eval_batch_size"], device):
        if task == "classification" and cfg["train"]["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, cfg["train"]["precision"]):
            logits = model(x)
        logits = logits.float().reshape(-1, logits.shape[-1])
        target = y.reshape(-1)
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        count += target.numel()
        if task == "classification":
            correct += (logits.argmax(1) == target).sum().item()
    model.train(was_training)
    loss = loss_sum / max(count, 1)
    if task == "classification":
        return {"loss": loss, "accuracy": correct / max(count, 1)}
    return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else float("inf")}
