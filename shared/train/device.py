"""Device, precision and seeding: the small decisions every run makes the same way."""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import random

import numpy as np
import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is not available raises."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False; use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device 'mps' requested but MPS is not available; use --device auto or cpu")
    return torch.device(name)


def device_description(device: torch.device) -> str:
    """Human-readable hardware name for provenance (GPU model, or CPU model, the vector instructions torch's kernels
    use, and thread count). Two CPUs both named "AMD EPYC" with AVX2 and with AVX512 kernels round differently, so
    the same seed can end a few ULPs (and, after many steps, more) apart: the ISA says which runs should match."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}: {cpu_description()}, {torch.get_num_threads()} threads"


def cpu_description() -> str:
    """The CPU model and, in parentheses, the vector instructions torch's kernels use, e.g. "AMD EPYC (AVX512)"."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    isa = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return f"{cpu}{f' ({isa})' if isa else ''}"


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 / AMX), where autocast pays off."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
MALLOC_ENV = "REPRO_MALLOC"


def retain_freed_memory() -> str:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the kernel; returns what holds now
    for provenance: ``"retained"``, or ``"system"`` (``$REPRO_MALLOC=system``, or not glibc: nothing changed).

    glibc serves each block above its mmap threshold (128 KiB, rising to at most 32 MiB) with a fresh ``mmap`` and
    unmaps it when freed, and trims the free top of its heap. A convnet's activations at batch 1,024 are ~100 MB each,
    so every training step maps them anew and the kernel zero-fills every page on first touch: measured 0.1-0.8 GB of
    page faults a step for airbench94 on a 2-core EPYC, how much depending on the heap's history, which made the shared
    trainer ~6 % slower than the bare script on the same net (papers/airbench/README.md, benchmark). With ``mmap`` off
    (``M_MMAP_MAX`` 0) and trimming only above 2 GiB of free heap top (``M_TRIM_THRESHOLD``) freed blocks are reused:
    ~0 faults a step, and whole runs 14 % (shared trainer) and 10 % (bare script) faster there. The process keeps its
    peak memory until it exits.
    Results are unchanged: only where tensors live changes, not what is computed (tests/test_train.py).
    """
    if os.environ.get(MALLOC_ENV, "retain") == "system" or platform.system() != "Linux":
        return "system"
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc; musl has no mallopt
    except (OSError, AttributeError):
        return "system"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1  # mallopt: 1 on success
    return "retained" if ok else "system"


def autocast(device: torch.device, precision: str):
    """Autocast context for ``precision`` (fp32: a no-op). fp16 needs CUDA (CPU fp16 autocast is slow and lossy)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"train.precision fp16 needs a CUDA device, got {device.type}; use bf16 or fp32")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices). Data order and augmentation are seeded separately, per step."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
