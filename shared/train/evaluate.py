"""Evaluation on held-out splits: mean loss and accuracy (classification) or perplexity (language modelling).

Test-time augmentation (``train.tta_level``, classification only), as airbench94's ``infer`` (Jordan,
arXiv:2404.00498; KellerJordan/cifar10-airbench ``legacy/airbench94.py``): the logits of several views of each image
are averaged with fixed weights and scored as one prediction, reported as ``tta_loss`` / ``tta_accuracy`` next to
the plain ``loss`` / ``accuracy`` (taken from the identity view, so they cost nothing extra).
  level 1: the image and its mirror, 1/2 each (2 views).
  level 2: 1/2 (level 1 on the image) + 1/2 mean(level 1 on the image translated by one pixel up-left, and
           down-right, from its reflect-padded copy): weights 1/4, 1/4, 1/8 x 4 (6 views).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from shared.data import eval_batches
from shared.train.device import autocast

TTA_LEVELS = (0, 1, 2)


def tta_views(x: Tensor, level: int) -> list[tuple[float, Tensor]]:
    """``[(weight, view), ...]`` of an N×C×H×W batch; the identity view comes first, the weights sum to 1."""
    if level not in TTA_LEVELS:
        raise ValueError(f"tta_level must be one of {TTA_LEVELS}, got {level!r}")
    if level == 0:
        return [(1.0, x)]
    mirror = [(0.5, x), (0.5, x.flip(-1))]
    if level == 1:
        return mirror
    h, w = x.shape[-2:]
    padded = F.pad(x, (1,) * 4, mode="reflect")
    shifted = [padded[..., 0:h, 0:w], padded[..., 2:h + 2, 2:w + 2]]
    return [(wt / 2, v) for wt, v in mirror] + [(1 / 8, v) for s in shifted for v in (s, s.flip(-1))]


@torch.no_grad()
def evaluate(model, data, split: str, task: str, cfg: dict, device: torch.device) -> dict:
    """Metrics for one split, with the model in eval mode (BatchNorm running stats, no dropout)."""
    was_training = model.training
    model.eval()
    tta_level = cfg["train"].get("tta_level", 0) if task == "classification" else 0
    channels_last = task == "classification" and cfg["train"]["channels_last"]
    loss_sum, correct, count, tta_loss_sum, tta_correct = 0.0, 0, 0, 0.0, 0

    def logits_of(x):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, cfg["train"]["precision"]):
            out = model(x)
        return out.float().reshape(-1, out.shape[-1])

    for x, y in eval_batches(data, split, cfg["train"]["eval_batch_size"], device):
        target = y.reshape(-1)
        views = tta_views(x, tta_level)  # level 0 (always for LM): just the batch itself
        logits = logits_of(views[0][1])
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        count += target.numel()
        if task == "classification":
            correct += (logits.argmax(1) == target).sum().item()
        if tta_level:
            avg = views[0][0] * logits
            for weight, view in views[1:]:
                avg += weight * logits_of(view)
            tta_loss_sum += F.cross_entropy(avg, target, reduction="sum").item()
            tta_correct += (avg.argmax(1) == target).sum().item()
    model.train(was_training)
    loss = loss_sum / max(count, 1)
    if task == "classification":
        out = {"loss": loss, "accuracy": correct / max(count, 1)}
        if tta_level:
            out.update(tta_loss=tta_loss_sum / max(count, 1), tta_accuracy=tta_correct / max(count, 1))
        return out
    return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else float("inf")}
