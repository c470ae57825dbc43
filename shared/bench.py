"""``repro bench``: throughput of the shared training loop vs a bare hand-written loop, side by side in one process.

Both loops train the same model on the same data with the same batch size, optimizer, precision and (for CIFAR)
the same batched crop+flip augmentation; the bare loops below are deliberately written out by hand, without any
``shared`` code except the model constructor. Throughput is the median examples/s over windows of ``log_every``
steps after the first window (warm-up); the runs alternate shared, bare, shared, bare, ... so drifts in machine
load hit both. Output: ``results/benchmarks/loop_throughput.{csv,md}``.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from shared.config import resolve_run_config
from shared.data import load_data
from shared.models import create_model
from shared.train import run
from shared.train.device import autocast, device_description, resolve_device
from shared.train.provenance import git_state, library_versions, now

LOG_EVERY = 10

TASKS = {
    "resnet20-cifar10": {
        "data": {"dataset": "cifar10", "augment": {"crop_padding": 4, "flip": True}, "test_subset": 500},
        "model": {"name": "resnet20", "kwargs": {}},
        "optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 5e-4, "kwargs": {"momentum": 0.9, "nesterov": True}},
        "train": {"batch_size": 128},
    },
    "gpt-wikitext2": {
        "data": {"dataset": "wikitext2", "tokenizer": "bpe", "bpe_vocab_size": 4096, "seq_len": 64,
                 "eval_tokens": 4096},
        "model": {"name": "gpt", "kwargs": {"n_layer": 2, "n_head": 4, "d_model": 128, "block_size": 64,
                                            "dropout": 0.0}},
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01, "kwargs": {}},
        "train": {"batch_size": 16},
    },
}


def _cfg(task: str, steps: int, precision: str, device: str) -> dict:
    spec = json.loads(json.dumps(TASKS[task]))
    spec["train"].update(steps=steps, log_every=LOG_EVERY, precision=precision,
                         channels_last=task.startswith("resnet") and precision == "bf16", eval_batch_size=500)
    spec["device"] = device
    return resolve_run_config(spec, f"bench:{task}")


def shared_loop_throughput(cfg: dict) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run(cfg, tmp)
        rows = [json.loads(ln) for ln in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    rates = [r["examples_per_s"] for r in rows if r["kind"] == "train"][1:]
    return statistics.median(rates)


def _bare_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    n, c, h, w = x.shape
    x = F.pad(x, (pad,) * 4)
    off = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    rows = off[:, :1] + torch.arange(h)
    cols = off[:, 1:] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    return x[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]


def bare_loop_throughput(cfg: dict) -> float:
    """A hand-written forward/backward/step loop with the same work per step as the shared loop."""
    torch.manual_seed(cfg["seed"])
    device = resolve_device(cfg["device"])
    data = load_data(cfg["data"])
    tr, oc = cfg["train"], cfg["optimizer"]
    classification = hasattr(data, "num_classes")
    size = {"num_classes": data.num_classes} if classification else {"vocab_size": data.vocab_size}
    model = create_model(cfg["model"]["name"], **size, **cfg["model"]["kwargs"]).to(device)
    if tr["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    opt_cls = torch.optim.SGD if oc["name"] == "sgd" else torch.optim.AdamW
    opt = opt_cls(model.parameters(), lr=oc["lr"], weight_decay=oc["weight_decay"], **oc["kwargs"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    bs, rates, t = tr["batch_size"], [], time.perf_counter()
    if classification:
        mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)
    for step in range(tr["steps"]):
        if classification:
            idx = torch.randint(0, len(data.train_y), (bs,), generator=gen)
            x = _bare_crop_flip(data.train_x[idx].to(device).float().div_(255), gen)
            x, y = (x - mean) / std, data.train_y[idx].to(device)
            if tr["channels_last"]:
                x = x.contiguous(memory_format=torch.channels_last)
        else:
            T = cfg["data"]["seq_len"]
            off = torch.randint(0, len(data.train) - T - 1, (bs,), generator=gen)
            win = data.train[off[:, None] + torch.arange(T + 1)].to(device)
            x, y = win[:, :-1], win[:, 1:]
        with autocast(device, tr["precision"]):
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % LOG_EVERY == 0:
            loss.item()
            now_t = time.perf_counter()
            rates.append(bs * LOG_EVERY / (now_t - t))
            t = now_t
    return statistics.median(rates[1:])


def benchmark(tasks: list[str], precisions: list[str], steps: int, repeats: int, device: str = "cpu") -> list[dict]:
    rows = []
    for task in tasks:
        for precision in precisions:
            cfg = _cfg(task, steps, precision, device)
            shared, bare = [], []
            for _ in range(repeats):  # interleaved, so load drift affects both loops alike
                shared.append(shared_loop_throughput(cfg))
                bare.append(bare_loop_throughput(cfg))
            ratios = [s / b for s, b in zip(shared, bare)]
            rows.append({"task": task, "precision": precision, "batch_size": cfg["train"]["batch_size"],
                         "steps": steps, "repeats": repeats,
                         "shared_examples_per_s": round(statistics.median(shared), 1),
                         "bare_examples_per_s": round(statistics.median(bare), 1),
                         "ratio_median": round(statistics.median(ratios), 3),
                         "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3)})
    return rows


def write_results(rows: list[dict], out_dir: Path, device: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "loop_throughput.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    prov = {**git_state(), "date": now(), "device": device_description(resolve_device(device)),
            "torch": library_versions()["torch"]}
    lines = ["| task | precision | batch | shared loop (ex/s) | bare loop (ex/s) | ratio (median, min–max) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['precision']} | {r['batch_size']} | {r['shared_examples_per_s']} | "
                     f"{r['bare_examples_per_s']} | {r['ratio_median']} ({r['ratio_min']}–{r['ratio_max']}) |")
    lines += ["", f"{rows[0]['repeats']} interleaved repeats of {rows[0]['steps']} steps each; median of "
              f"{LOG_EVERY}-step windows after the first. Provenance: `{json.dumps(prov)}`"]
    (out_dir / "loop_throughput.md").write_text("\n".join(lines) + "\n")


def update_readme(readme: Path, table_md: Path) -> None:
    """Put the measured table into the README between its ``benchmark`` markers (never typed by hand)."""
    from shared.results.readme import replace_section

    body = f"Measured by `repro bench` ({table_md.as_posix()}):\n\n" + table_md.read_text()
    readme.write_text(replace_section(readme.read_text(), "benchmark", body, str(readme)))


def cmd_bench(args: argparse.Namespace) -> int:
    rows = benchmark(args.tasks, args.precisions, args.steps, args.repeats, args.device)
    write_results(rows, Path(args.out), args.device)
    if args.readme:
        update_readme(Path(args.readme), Path(args.out) / "loop_throughput.md")
    print((Path(args.out) / "loop_throughput.md").read_text())
    return 0


def add_subcommands(sub) -> None:
    p = sub.add_parser("bench", help="shared training loop vs a bare loop: examples/s side by side")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="results/benchmarks")
    p.add_argument("--readme", help="also write the table into this README's generated 'benchmark' section")
    p.set_defaults(func=cmd_bench)
