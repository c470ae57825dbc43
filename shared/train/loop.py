"""The one training loop: classification and language modelling, from a resolved run config (docs/design.md).

Reproducibility: python/numpy/torch are seeded from ``cfg["seed"]``; each batch (order and augmentation) is a pure
function of (seed, step), and the checkpoint stores model, optimizer, scheduler, scaler and RNG states, so a killed run
resumed with ``resume=True`` finishes with the same final metrics as an uninterrupted one (tests/test_train.py).

Model hooks (docs/design.md), called when the model defines them, whatever the model: ``init_from_data(images)``
once before training with the normalized training images (data-dependent init, e.g. airbench's patch whitening),
and ``on_train_step(step, epoch)`` before every step (e.g. freezing a parameter after some epochs).

Probes (``train.probes``, shared/probes): diagnostics logged as ``{"kind": "probe", ...}`` records at probe steps;
off by default, and then nothing of them is built. z-loss (``train.z_loss``): see ``_z_loss``.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from shared.config import config_hash
from shared.data import ClassificationBatches, ClassificationData, LMBatches, eval_batches, load_data
from shared.data.augment import normalize
from shared.models import create_model
from shared.optim import OPTIMIZERS, create_optimizer, create_scheduler
from shared.probes import FixedBatch, create_probes, state_bytes_per_param
from shared.train.checkpoint import load_checkpoint, save_checkpoint, weights_path
from shared.train.device import (autocast, cpu_supports_bf16, device_description, resolve_device,
                                 retain_freed_memory, rng_state, seed_everything, set_rng_state)
from shared.train.evaluate import evaluate
from shared.train.logger import MetricsLog
from shared.train.lookahead import Lookahead
from shared.train.provenance import git_state, library_versions, now

log_ = logging.getLogger(__name__)


def build(cfg: dict, device: torch.device):
    """Data, model, batch source and step count for a run config."""
    data = load_data(cfg["data"])
    task = "classification" if isinstance(data, ClassificationData) else "lm"
    size_kw = {"num_classes": data.num_classes} if task == "classification" else {"vocab_size": data.vocab_size}
    model = create_model(cfg["model"]["name"], **size_kw, **cfg["model"]["kwargs"]).to(device)
    if task == "classification" and cfg["train"]["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    tr = cfg["train"]
    if task == "classification":
        batches = ClassificationBatches(data, tr["batch_size"], cfg["seed"], device, cfg["data"]["augment"])
    else:
        batches = LMBatches(data.train, tr["batch_size"], cfg["data"]["seq_len"], cfg["seed"], device,
                            mode=cfg["data"]["lm_batching"])
    total = tr["steps"] if tr["steps"] is not None else math.ceil(tr["epochs"] * batches.steps_per_epoch)
    return data, task, model, batches, total


@torch.no_grad()
def init_from_data(model, data, device) -> None:
    """Call the model's ``init_from_data`` hook, if any, with the normalized training images (file order)."""
    hook = getattr(model, "init_from_data", None)
    if callable(hook) and isinstance(data, ClassificationData):
        mean, std = torch.tensor(data.mean, device=device), torch.tensor(data.std, device=device)
        hook(normalize(data.train_x.to(device), mean, std))


def _optimizers(cfg: dict, model, total_steps: int):
    oc, sc = cfg["optimizer"], cfg["schedule"]
    kwargs = dict(oc["kwargs"])
    if OPTIMIZERS.info(oc["name"]).get("needs_batch_size"):  # e.g. sgd_decoupled: hyperparameters per 1,024 examples
        if "batch_size" in kwargs:
            raise ValueError(f"optimizer {oc['name']!r} takes its batch_size from train.batch_size; "
                             "remove optimizer.kwargs.batch_size")
        kwargs["batch_size"] = cfg["train"]["batch_size"]
    opt = create_optimizer(oc["name"], model, lr=oc["lr"], weight_decay=oc["weight_decay"],
                           no_decay_norm_bias=oc["no_decay_norm_bias"], lr_mult=oc.get("lr_mult") or None,
                           **kwargs)
    warmup = sc["warmup_steps"] or round(sc["warmup_frac"] * total_steps)
    sched = create_scheduler(sc["name"], opt, total_steps=total_steps, warmup_steps=warmup, **sc["kwargs"])
    return opt, sched


def _loss(logits, y, label_smoothing: float):
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), label_smoothing=label_smoothing)


def _z_loss(logits):
    """z-loss without its coefficient: mean over predictions of log^2 Z, Z = sum_j exp(logit_j).

    "Small-scale proxies for large-scale Transformer training instabilities", Wortsman et al., arXiv:2309.14322
    §3.1.2 (output logit divergence), from PaLM (arXiv:2204.02311 §5): L = CE + 1e-4 log^2 Z keeps log Z near 0, so
    the output logits cannot drift far from 0 and the softmax stays well conditioned. The trainer adds
    ``train.z_loss * _z_loss(logits)`` to the loss (classification and LM alike).
    """
    # log Z = logsumexp_j(logit_j), in float32 whatever the autocast dtype
    log_z = torch.logsumexp(logits.float().reshape(-1, logits.shape[-1]), dim=-1)
    return log_z.pow(2).mean()


def _probe_batch(model, data, task: str, cfg: dict, device, size: int, batches) -> FixedBatch:
    """The probes' fixed batch: the first ``size`` examples (LM: windows) of the validation split, else of the
    first evaluation split; run with the training precision and memory format. ``train_batch(t)``: the training
    batch of step t (batches are a pure function of the seed and the step)."""
    split = "val" if "val" in data.eval_sets else next(iter(data.eval_sets))
    x, y = next(iter(eval_batches(data, split, size, device)))
    channels_last = task == "classification" and cfg["train"]["channels_last"]

    def forward(inputs):
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast(device, cfg["train"]["precision"]):
            return model(inputs)

    return FixedBatch(x, y, forward, lambda logits, target: _loss(logits, target, 0.0).item(),
                      train_batch=lambda t: batches.batch(t - 1))


class _State:
    """Everything about the run's progress that is not in a torch object; checkpointed as a dict."""

    def __init__(self):
        self.step, self.elapsed, self.diverged, self.steps_to_target = 0, 0.0, False, None
        self.steps_over_divergence_loss = 0  # consecutive steps with the loss above train.divergence_loss
        self.best: dict[str, float] = {}
        self.last_eval: dict[str, dict] = {}


def run(cfg: dict, out_dir: str | Path, *, resume: bool = False, meta: dict | None = None) -> dict:
    """Train one run described by ``cfg`` into ``out_dir``; return (and write) ``final.json``'s content."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final_path, ckpt_path = out / "final.json", out / "checkpoint.pt"
    if resume and final_path.exists():
        return json.loads(final_path.read_text())
    final_path.unlink(missing_ok=True)

    seed_everything(cfg["seed"])
    device = resolve_device(cfg["device"])
    malloc = retain_freed_memory() if device.type == "cpu" else None  # CPU: reuse freed activations (its docstring)
    data, task, model, batches, total = build(cfg, device)
    keep_at = set(cfg["train"]["keep_weights_at"])
    if keep_at and max(keep_at) > total:
        raise ValueError(f"train.keep_weights_at: steps {sorted(s for s in keep_at if s > total)} are past the run's "
                         f"last step {total}")
    st = _State()
    ck = load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    if ck is not None and ck.get("config_hash") != config_hash(cfg):
        log_.warning("%s holds a checkpoint of a different config; starting from scratch", ckpt_path)
        ck = None
    resumed = ck is not None
    if not resumed:  # a resumed run gets its weights from the checkpoint instead
        t_init = time.perf_counter()
        init_from_data(model, data, device)
        st.elapsed = time.perf_counter() - t_init  # init counts as run time, as in airbench
    opt, sched = _optimizers(cfg, model, total)
    needs_closure = OPTIMIZERS.info(cfg["optimizer"]["name"]).get("needs_closure", False)
    tr = cfg["train"]
    if device.type == "cpu" and tr["precision"] == "bf16" and not cpu_supports_bf16():
        log_.warning("train.precision bf16 on a CPU without native bf16 (no avx512_bf16 / amx_bf16 in /proc/cpuinfo): "
                     "autocast emulates it, measured ~15x SLOWER than fp32 for ResNet-20 on an AVX2-only machine. "
                     "Results stay valid; for speed run a profile or config with train.precision: fp32.")
    scaler = torch.amp.GradScaler(device.type, enabled=tr["precision"] == "fp16")
    la_cfg = tr.get("lookahead")
    lookahead = Lookahead(model, total, **la_cfg) if la_cfg else None  # after the init: the EMA starts from it
    on_train_step = getattr(model, "on_train_step", None)
    if resumed:
        model.load_state_dict(ck["model"]), opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"]), scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"])
        st.__dict__.update(ck["state"])
        if lookahead is not None:
            lookahead.load_state_dict(ck["lookahead"])
    pc = tr.get("probes") or {}  # off (every 0): None, so no hook, no batch, no extra forward pass
    probes = create_probes(pc, model, opt, lambda: _probe_batch(model, data, task, cfg, device,
                                                                pc.get("batch_size", 64), batches))
    if probes is not None and resumed and ck.get("probes") is not None:
        probes.load_state_dict(ck["probes"])
    z_coef = tr.get("z_loss", 0.0)
    log = MetricsLog(out / "metrics.jsonl", resume_step=st.step if resumed else None)

    info = dict(meta or {})
    info.update(config=cfg, config_hash=config_hash(cfg), seed=info.get("seed", cfg["seed"]), run_seed=cfg["seed"],
                device=device_description(device), **({"malloc": malloc} if malloc else {}),
                device_type=device.type, precision=tr["precision"], task=task, total_steps=total,
                n_params=sum(p.numel() for p in model.parameters()), data=data.info, versions=library_versions(),
                start_time=now(), resumed_from_step=st.step if resumed else None, **git_state())
    (out / "meta.json").write_text(json.dumps(info, indent=2, default=str))

    def keep_weights():  # the weights after optimizer step st.step (and the lookahead update), before any eval
        if st.step in keep_at:
            save_checkpoint(weights_path(out, st.step), {"model": model.state_dict(), "step": st.step,
                                                         "config_hash": config_hash(cfg)})

    if not resumed:
        keep_weights()  # step 0: the initial weights

    def checkpoint():
        save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                    "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                                    "rng": rng_state(), "state": dict(st.__dict__), "config_hash": config_hash(cfg),
                                    "lookahead": lookahead.state_dict() if lookahead is not None else None,
                                    "probes": probes.state_dict() if probes is not None else None})

    def run_eval():
        for split in data.eval_sets:
            m = evaluate(model, data, split, task, cfg, device)
            st.last_eval[split] = m
            st.best[split] = min(st.best.get(split, math.inf), m["loss"])
            log.write(kind="eval", step=st.step, split=split, **m, wall_time=st.elapsed + time.perf_counter() - t0)
        target_split = "val" if "val" in st.last_eval else "test"
        if (tr["target_loss"] is not None and st.steps_to_target is None
                and st.last_eval[target_split]["loss"] <= tr["target_loss"]):
            st.steps_to_target = st.step

    model.train()
    t0, t_log, n_seen = time.perf_counter(), time.perf_counter(), 0
    bar = tqdm(total=total, initial=st.step, desc=f"{cfg['model']['name']} seed {cfg['seed']}",
               disable=not sys.stderr.isatty(), leave=False)
    while st.step < total and not st.diverged:
        if callable(on_train_step):
            on_train_step(st.step, st.step // batches.steps_per_epoch)
        x, y = batches.batch(st.step)
        if task == "classification" and tr["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)

        parts = {}

        def closure():
            opt.zero_grad(set_to_none=True)
            with autocast(device, tr["precision"]):
                logits = model(x)
                loss_ = parts["ce"] = _loss(logits, y, tr["label_smoothing"])
                if z_coef:  # L = CE + z_loss * mean(log^2 Z)
                    parts["z"] = z_coef * _z_loss(logits)
                    loss_ = loss_ + parts["z"]
            scaler.scale(loss_).backward()
            return loss_

        closure()
        loss, z_term = parts["ce"], parts.get("z")  # of this step's first evaluation (L-BFGS re-evaluates)
        scaler.unscale_(opt)
        probe_now = probes is not None and probes.due(st.step + 1)
        if probes is not None:  # gradients unscaled, before clipping
            probes.on_gradients(st.step + 1)
        log_now = (st.step + 1) % tr["log_every"] == 0 or st.step + 1 == total
        grad_norm = None
        if tr["grad_clip"] is not None or log_now:
            clip = tr["grad_clip"] if tr["grad_clip"] is not None else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip).item()
        lr = opt.param_groups[0]["lr"]
        if probe_now:
            probes.before_step(st.step + 1)
        if needs_closure:  # e.g. L-BFGS re-evaluates the loss itself
            scaler.step(opt, closure)
        else:
            scaler.step(opt)
        scaler.update()
        sched.step()
        st.step += 1
        if lookahead is not None:
            lookahead.update(model, st.step)
        n_seen += x.shape[0]
        bar.update(1)
        keep_weights()
        if probe_now:  # after the step (and lookahead): the weights the next step starts from
            for record in probes.after_step(st.step):
                log.write(kind="probe", **record)

        loss_value = loss.item()
        z_value = {} if z_term is None else {"z_loss": z_term.item()}
        # diverged: a non-finite loss at once; a loss above divergence_loss once it has stayed there for
        # divergence_patience consecutive steps (a patience > 1 lets an early transient spike recover)
        over = tr["divergence_loss"] is not None and loss_value > tr["divergence_loss"]
        st.steps_over_divergence_loss = st.steps_over_divergence_loss + 1 if over else 0
        if (not math.isfinite(loss_value + z_value.get("z_loss", 0.0))
                or st.steps_over_divergence_loss >= tr["divergence_patience"]):
            st.diverged = True
        if log_now or st.diverged:
            now_t = time.perf_counter()
            log.write(kind="train", step=st.step, loss=loss_value, **z_value, lr=lr, grad_norm=grad_norm,
                      examples_per_s=n_seen / max(now_t - t_log, 1e-9), wall_time=st.elapsed + now_t - t0)
            bar.set_postfix(loss=f"{loss_value:.3f}")
            t_log, n_seen = now_t, 0
        if not st.diverged and tr["eval_every"] and st.step % tr["eval_every"] == 0 and st.step < total:
            run_eval()
        if tr["checkpoint_every"] and st.step % tr["checkpoint_every"] == 0 and st.step < total:
            st.elapsed += time.perf_counter() - t0
            t0 = time.perf_counter()
            checkpoint()
    bar.close()

    if not st.diverged:
        if lookahead is not None:
            lookahead.finish(model)  # the model ends at the average, as airbench's final update(decay=1.0)
        run_eval()
    st.elapsed += time.perf_counter() - t0
    checkpoint()
    log.close()
    final = _final(st, data.eval_sets, task, tta=bool(tr.get("tta_level")) and task == "classification",
                   state_bytes_per_param=state_bytes_per_param(opt),
                   probe_metrics=probes.final_metrics() if probes is not None else None)
    info.update(end_time=now(), wall_time_s=st.elapsed, diverged=st.diverged, final_step=st.step)
    (out / "meta.json").write_text(json.dumps(info, indent=2, default=str))
    final_path.write_text(json.dumps(final, indent=2))
    return final


def _final(st: _State, splits, task: str, tta: bool = False, state_bytes_per_param: float | None = None,
           probe_metrics: dict | None = None) -> dict:
    metrics: dict[str, float | int | None] = {}
    keys = ("loss", "accuracy") if task == "classification" else ("loss", "perplexity")
    keys += ("tta_loss", "tta_accuracy") if tta else ()
    for split in splits:
        last = st.last_eval.get(split, {}) if not st.diverged else {}
        for key in keys:
            v = last.get(key)
            metrics[f"{split}_{key}"] = v if v is None or math.isfinite(v) else None
        best = st.best.get(split)
        metrics[f"best_{split}_loss"] = best if best is not None and math.isfinite(best) else None
    metrics["steps_to_target"] = st.steps_to_target
    # bytes of the tensors in optimizer.state / trained parameter entries (shared/probes/optimizer_state.py)
    metrics["optimizer_state_bytes_per_param"] = state_bytes_per_param
    # end-of-run scalars of the probes that are on (Probe.final_metrics); a diverged run has no end of training
    metrics.update({k: None if st.diverged else v for k, v in (probe_metrics or {}).items()})
    metrics["diverged"] = int(st.diverged)
    return {"metrics": metrics, "step": st.step, "diverged": st.diverged, "wall_time_s": st.elapsed}
