"""airbench94 as one bare, self-contained script (no ``shared`` imports): the side-by-side reference for the same
recipe run through the shared trainer (``repro run airbench ...``). Keller Jordan, "94% on CIFAR-10 in 3.29 Seconds
on a Single GPU", arXiv:2404.00498; follows KellerJordan/cifar10-airbench ``legacy/airbench94.py``, with three
changes so it runs here: CIFAR-10 is read from the python pickle batches under ``--data-dir`` (no torchvision
download), precision is autocast (``fp32`` | ``bf16`` | ``fp16`` on CUDA) instead of ``net.half()``, and CPU works
(there, as the shared trainer, glibc keeps freed memory for reuse unless ``--malloc system``).

    python benchmarks/airbench94_bare.py --data-dir ../shared/datasets --seeds 0 1 2 --precision fp32
    python benchmarks/airbench94_bare.py --data-dir ../shared/datasets --steps 5     # throughput only

Prints one JSON line per run: accuracy without / with TTA, wall time (training + whitening init + TTA eval, as
airbench times it), img/s over training steps, precision, device and the data files' sha256.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import math
import pickle
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HYP = dict(epochs=9.9, batch_size=1024, lr=11.5, momentum=0.85, weight_decay=0.0153, bias_scaler=64.0,
           label_smoothing=0.2, whiten_bias_epochs=3, translate=2, widths=(64, 256, 256), bn_momentum=0.6,
           scaling_factor=1 / 9, tta_level=2, ema_every=5, ema_decay=0.95, ema_power=3)
MEAN, STD = torch.tensor((0.4914, 0.4822, 0.4465)), torch.tensor((0.2470, 0.2435, 0.2616))
FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]


def load_cifar10(root: Path, subset_per_class: int | None, test_subset: int | None):
    folder, parts, sha = root / "cifar-10-batches-py", [], {}
    for name in FILES:
        raw = (folder / name).read_bytes()
        sha[name] = hashlib.sha256(raw).hexdigest()
        d = pickle.loads(raw, encoding="latin1")
        parts.append((torch.from_numpy(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)),
                      torch.as_tensor(d["labels"])))
    x, y = torch.cat([p[0] for p in parts[:5]]), torch.cat([p[1] for p in parts[:5]])
    if subset_per_class:  # the first n of each class, in file order
        idx = torch.cat([torch.nonzero(y == c).flatten()[:subset_per_class] for c in range(10)]).sort().values
        x, y = x[idx], y[idx]
    tx, ty = parts[5]
    if test_subset:
        tx, ty = tx[:test_subset], ty[:test_subset]
    norm = lambda u8: (u8.float() / 255 - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)  # noqa: E731
    return norm(x), y, norm(tx), ty, sha


def batch_crop(images, r):  # images are pre-padded by r (reflect); random crops back to 32x32
    n, size = len(images), images.shape[-1] - 2 * r
    shifts = torch.randint(0, 2 * r + 1, (n, 2), device=images.device)
    rows = shifts[:, :1] + torch.arange(size, device=images.device)
    cols = shifts[:, 1:] + torch.arange(size, device=images.device)
    ch = torch.arange(images.shape[1], device=images.device)
    return images[torch.arange(n, device=images.device)[:, None, None, None], ch[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


class Conv(nn.Conv2d):
    def __init__(self, c_in, c_out, kernel_size=3, padding="same", bias=False):
        super().__init__(c_in, c_out, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self):
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        torch.nn.init.dirac_(w[:w.size(1)])


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, c, momentum, eps=1e-12):
        super().__init__(c, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad = False


class ConvGroup(nn.Module):
    def __init__(self, c_in, c_out, bn_momentum):
        super().__init__()
        self.conv1, self.pool, self.norm1 = Conv(c_in, c_out), nn.MaxPool2d(2), BatchNorm(c_out, bn_momentum)
        self.conv2, self.norm2, self.activ = Conv(c_out, c_out), BatchNorm(c_out, bn_momentum), nn.GELU()

    def forward(self, x):
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class Mul(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale


def make_net(width: float):
    w = [max(1, round(c * width)) for c in HYP["widths"]]
    net = nn.Sequential(Conv(3, 24, 2, padding=0, bias=True), nn.GELU(), ConvGroup(24, w[0], HYP["bn_momentum"]),
                        ConvGroup(w[0], w[1], HYP["bn_momentum"]), ConvGroup(w[1], w[2], HYP["bn_momentum"]),
                        nn.MaxPool2d(3), nn.Flatten(), nn.Linear(w[2], 10, bias=False), Mul(HYP["scaling_factor"]))
    net[0].weight.requires_grad = False
    return net


def init_whitening_conv(layer, images, eps=5e-4):
    c, (h, w) = images.shape[1], layer.weight.shape[2:]
    patches = images.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w).double()
    eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    eigenvalues, eigenvectors = eigenvalues.flip(0).view(-1, 1, 1, 1), eigenvectors.T.reshape(-1, c, h, w).flip(0)
    scaled = eigenvectors / torch.sqrt(eigenvalues + eps)
    layer.weight.data[:] = torch.cat((scaled, -scaled)).float()


class LookaheadState:
    def __init__(self, net):
        self.net_ema = {k: v.clone() for k, v in net.state_dict().items()}

    def update(self, net, decay):
        for ema_param, net_param in zip(self.net_ema.values(), net.state_dict().values()):
            if net_param.dtype.is_floating_point:
                ema_param.lerp_(net_param, 1 - decay)
                net_param.copy_(ema_param)


def infer(model, images, tta_level, autocast, channels_last):
    def net(x):
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with autocast():
            return model(x).float()

    def mirror(x):
        return 0.5 * net(x) + 0.5 * net(x.flip(-1))

    def mirror_translate(x):
        padded = F.pad(x, (1,) * 4, "reflect")
        shifted = [mirror(padded[:, :, 0:32, 0:32]), mirror(padded[:, :, 2:34, 2:34])]
        return 0.5 * mirror(x) + 0.5 * torch.stack(shifted).mean(0)

    fn = [net, mirror, mirror_translate][tta_level]
    model.eval()
    with torch.no_grad():
        return torch.cat([fn(x) for x in images.split(2000)])


def main_run(args, seed, data, device):
    torch.manual_seed(seed)
    x, y, tx, ty, _ = data
    x, y, tx, ty = x.to(device), y.to(device), tx.to(device), ty.to(device)
    bs, mom = args.batch_size, HYP["momentum"]
    steps_per_epoch = len(x) // bs
    total = args.steps or math.ceil(steps_per_epoch * args.epochs)
    kilostep_scale = 1024 * (1 + 1 / (1 - mom))
    lr, wd = HYP["lr"] / kilostep_scale, HYP["weight_decay"] * bs / kilostep_scale
    lr_biases = lr * HYP["bias_scaler"]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")

    model = make_net(args.width).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    norm_biases = [p for k, p in model.named_parameters() if "norm" in k and p.requires_grad]
    others = [p for k, p in model.named_parameters() if "norm" not in k and p.requires_grad]
    opt = torch.optim.SGD([dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
                           dict(params=others, lr=lr, weight_decay=wd / lr)], momentum=mom, nesterov=True)
    warm = int(total * 0.23)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.2 + 0.8 * s / warm if s < warm
                                              else 1.0 - 0.93 * (s - warm) / (total - warm))
    alpha = HYP["ema_decay"] ** HYP["ema_every"] * (torch.arange(total + 1) / total) ** HYP["ema_power"]
    t0 = time.perf_counter()
    init_whitening_conv(model[0], x[:5000])
    lookahead = LookaheadState(model)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=HYP["label_smoothing"], reduction="none")
    # derandomized flip: a random first-epoch choice per image, all flipped on odd epochs; reflect pre-padding
    flipped = torch.where((torch.rand(len(x), device=device) < 0.5).view(-1, 1, 1, 1), x.flip(-1), x)
    padded = F.pad(flipped, (HYP["translate"],) * 4, "reflect")
    step, train_time, train_images = 0, 0.0, 0
    for epoch in range(math.ceil(total / steps_per_epoch)):
        model[0].bias.requires_grad = epoch < HYP["whiten_bias_epochs"]
        model.train()
        images = batch_crop(padded, HYP["translate"])
        images = images.flip(-1) if epoch % 2 == 1 else images
        perm = torch.randperm(len(images), device=device)
        for i in range(steps_per_epoch):
            t_step = time.perf_counter()
            idx = perm[i * bs:(i + 1) * bs]
            inputs = images[idx].contiguous(memory_format=torch.channels_last) if args.channels_last else images[idx]
            with autocast():
                loss = loss_fn(model(inputs).float(), y[idx]).sum()
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            if step % HYP["ema_every"] == 0:
                lookahead.update(model, decay=alpha[step].item())
            if device.type == "cuda":
                torch.cuda.synchronize()
            train_time += time.perf_counter() - t_step
            train_images += len(idx)
            if step >= total:
                lookahead.update(model, decay=1.0)
                break
        if step >= total:
            break
    t_plain = time.perf_counter()  # the plain evaluation is reported but not timed, as airbench's per-epoch one
    acc = (infer(model, tx, 0, autocast, args.channels_last).argmax(1) == ty).float().mean().item()
    t_plain = time.perf_counter() - t_plain
    tta = (infer(model, tx, args.tta_level, autocast, args.channels_last).argmax(1) == ty).float().mean().item()
    wall = time.perf_counter() - t0 - t_plain
    return {"seed": seed, "steps": step, "test_accuracy": acc, "test_tta_accuracy": tta,
            "wall_time_s": wall, "examples_per_s": train_images / train_time}


def retain_freed_memory() -> str:
    """glibc malloc: reuse freed blocks instead of unmapping them (mmap off, trim above 2 GiB), as the shared trainer
    does on CPU (shared/train/device.py, ``retain_freed_memory``, why); "retained", or "system" where not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "system"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(-4, 0) == 1 and mallopt(-1, 2**31 - 1) == 1  # -4: M_MMAP_MAX, -1: M_TRIM_THRESHOLD; 1: success
    return "retained" if ok else "system"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="data")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=float, default=HYP["epochs"])
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps (throughput checks)")
    p.add_argument("--batch-size", type=int, default=HYP["batch_size"])
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--tta-level", type=int, choices=[0, 1, 2], default=HYP["tta_level"])
    p.add_argument("--subset-per-class", type=int, default=None)
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--malloc", choices=["retain", "system"], default="retain",
                   help="retain: keep freed memory for reuse, as the shared trainer on CPU; system: glibc's defaults")
    args = p.parse_args()
    malloc = retain_freed_memory() if args.malloc == "retain" and torch.device(args.device).type == "cpu" else "system"
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load_cifar10(Path(args.data_dir), args.subset_per_class, args.test_subset)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.machine()) if Path("/proc/cpuinfo").exists() else platform.machine()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu}, {torch.get_num_threads()} threads"
    for seed in args.seeds:
        out = main_run(args, seed, data, device)
        print(json.dumps({**out, "precision": args.precision, "width": args.width, "device": where, "malloc": malloc,
                          "torch": torch.__version__, "data_sha256": data[4]}), flush=True)


if __name__ == "__main__":
    main()
