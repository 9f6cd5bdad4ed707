"""Cost of a network: parameters, multiply-accumulates (counted by torch's FLOP counter, not estimated by
hand) and CPU inference latency. Used by the results notebook and ``benchmarks/bench_models.py``.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from matting_lib.networks.losses import alpha_loss
from matting_lib.networks.models import build_model, count_parameters


def count_macs(model: nn.Module, size: int | tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass on a (1, 4, H, W) input (convolutions and matmuls; torch's
    ``FlopCounterMode`` counts 2 FLOPs per MAC). Unpooling, BatchNorm and activations are not counted."""
    h, w = (size, size) if isinstance(size, int) else size
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, 4, h, w))
    return counter.get_total_flops() // 2


def latency_ms(model: nn.Module, size: int | tuple[int, int], repeats: int = 5) -> float:
    """Median wall time (ms) of one forward pass on a (1, 4, H, W) CPU input, after one warm-up pass."""
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(1, 4, h, w)
    model = model.eval()
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def cost_table(width: float = 1.0, size: int = 320, *, repeats: int = 3, latency: bool = True) -> list[dict]:
    """Teacher and student at ``width``: parameters, MACs at size×size and CPU latency, plus the student/teacher
    ratios. Returns one dict per network."""
    rows = []
    for kind in ("teacher", "student"):
        net = build_model(kind, width).eval()
        rows.append({"network": kind, "width": width, "size": size, "params": count_parameters(net),
                     "macs": count_macs(net, size),
                     "latency_ms": latency_ms(net, size, repeats) if latency else float("nan"),
                     "threads": torch.get_num_threads()})
    t, s = rows
    rows.append({"network": "student / teacher", "width": width, "size": size,
                 "params": s["params"] / t["params"], "macs": s["macs"] / t["macs"],
                 "latency_ms": s["latency_ms"] / t["latency_ms"] if latency else float("nan"),
                 "threads": s["threads"]})
    return rows


def train_images_per_s(model: nn.Module, size: int, batch: int, steps: int = 3) -> float:
    """Training throughput (images/s) of plain alpha-loss steps (Adam) on random (batch, 4, size, size) inputs,
    after one warm-up step."""
    x = torch.randn(batch, 4, size, size)
    alpha = torch.rand(batch, 1, size, size)
    mask = torch.ones_like(alpha)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()

    def step():
        opt.zero_grad()
        alpha_loss(model(x), alpha, mask).backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def cost_markdown(rows: list[dict]) -> str:
    """A Markdown table of :func:`cost_table` rows (ratio rows as percentages)."""
    size, threads = rows[0]["size"], rows[0]["threads"]
    lines = [f"| network | width | params | GMACs @ {size}² | CPU latency (ms, {threads} threads) |",
             "|---|---|---|---|---|"]
    for r in rows:
        if r["network"] == "student / teacher":
            lines.append(
                f"| {r['network']} | {r['width']} | {r['params']:.1%} | {r['macs']:.1%} | {r['latency_ms']:.1%} |"
            )
        else:
            lines.append(
                f"| {r['network']} | {r['width']} | {r['params']:,} | {r['macs'] / 1e9:.2f} | {r['latency_ms']:.0f} |"
            )
    return "\n".join(lines) + "\n"
