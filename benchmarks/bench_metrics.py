"""Benchmark of vslrepro.metrics against official-style per-sample / per-threshold loops.

Prints one table: (a) batched `ciou` (relative binarization) and `confidence(topk_mean)` vs the
official per-sample NumPy code (min–max normalize, np.sort threshold, cIoU; np.sort top quarter mean);
(b) `summarize` (official and exact modes) vs the official Python loops over ~200 AP thresholds and
~10 F1 thresholds; (c) the peak memory of `ciou` beyond its inputs, measured as the peak-RSS growth of a
fresh subprocess, beside the analytic working set; (d) a 1000-replicate bootstrap.

The loops are timed on a subset (`--loop-n`) and extrapolated per sample: the printout says so.

    python benchmarks/bench_metrics.py                  # N = 10,316 maps of 224×224 (extended VGG-SS)
    python benchmarks/bench_metrics.py --smoke          # a tiny run for CI
    python benchmarks/bench_metrics.py --device cuda    # batched side on the GPU
"""

from __future__ import annotations

import os

# Idle OpenMP threads must sleep, not spin, or process CPU time would count their busy-waiting
# (set before torch starts its thread pool).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from vslrepro import metrics

# ------------------------------------------------------------------------------------------------
# Official-style references (written from stoneMo/EZ-VSL utils.py:Evaluator, test.py and
# stoneMo/SLAVC utils.py:EvaluatorFull)
# ------------------------------------------------------------------------------------------------

def loop_ciou(pred: np.ndarray, gt: np.ndarray, pred_size: float = 0.5) -> np.ndarray:
    """Per sample: min–max normalize, t = np.sort(P)[int(n·pred_size)], B = P >= t, cIoU."""
    out = np.empty(len(pred))
    for i in range(len(pred)):
        p = pred[i]
        if p.max() - p.min() != 0:
            p = (p - p.min()) / (p.max() - p.min())
        thr = np.sort(p.flatten())[int(p.size * pred_size)]
        infer = np.zeros(p.shape)
        infer[p >= thr] = 1
        out[i] = np.sum(infer * gt[i]) / (np.sum(gt[i]) + np.sum(infer * (gt[i] == 0)))
    return out


def loop_confidence(maps: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per sample: fixed-bounds rescale, mean of the top n//4 values after np.sort."""
    return np.array([np.sort(((m - lo) / (hi - lo)).flatten())[-m.size // 4:].mean() for m in maps])


def _pr(positive, ciou, conf, thr, iou_thr=0.5):
    tp = fp = fn = 0
    for pos, u, d in zip(positive, ciou, conf):
        if not pos:
            fp += d >= thr
        elif d >= thr:
            if u >= iou_thr:
                tp += 1
            else:
                fp += 1
        else:
            fn += 1
    return (1.0 if tp + fp == 0 else tp / (tp + fp)), (1.0 if tp + fn == 0 else tp / (tp + fn))


def loop_statistics(positive, ciou, conf):
    """AP, F1 list and Precision the way the official evaluator loops over thresholds and samples."""
    positive, ciou, conf = list(positive), list(ciou), list(conf)
    precision, recall = [], []
    for thr in np.sort(np.array(conf))[:-1][::-max(1, len(conf) // 200)]:
        p, r = _pr(positive, ciou, conf, thr)
        precision.append(p)
        recall.append(r)
    env = [np.max(precision[i:]) for i in range(len(precision))]
    ap = sum(env[i] * (recall[i + 1] - recall[i]) for i in range(len(env) - 1))
    f1 = [2 * r * p / (r + p) if r + p > 0 else 0.0
          for p, r in (_pr(positive, ciou, conf, t) for t in sorted(conf)[::max(1, len(conf) // 10)])]
    vis = [i for i, pos in enumerate(positive) if pos]
    prec, _ = _pr([True] * len(vis), [ciou[i] for i in vis], [conf[i] for i in vis], -1000)
    return ap, f1, prec


# ------------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------------

def timed(fn, repeat: int = 1):
    """(result, wall seconds, process CPU seconds), the best of `repeat` runs."""
    wall = cpu = float("inf")
    out = None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return out, wall, cpu


def make_maps(n: int, size: int, seed: int, kind: str = "smooth") -> tuple[torch.Tensor, torch.Tensor]:
    """Random prediction maps and Flickr-like consensus maps ({0, .5, 1}), float32, made in place.

    kind "smooth": random 7×7 maps upsampled bilinearly (align_corners=True), like the maps of the
    EZ-VSL/SLAVC test code; kind "noise": i.i.d. normal pixels (the worst case for top-k selection).
    """
    gen = torch.Generator().manual_seed(seed)
    pred = torch.empty(n, size, size)
    if kind == "noise":
        pred.normal_(generator=gen)
    else:
        for start in range(0, n, 256):
            low = torch.randn(min(256, n - start), 1, 7, 7, generator=gen)
            pred[start:start + 256] = F.interpolate(low, size=(size, size), mode="bilinear",
                                                    align_corners=True)[:, 0]
    gt = torch.empty(n, size, size).uniform_(generator=gen).mul_(3).floor_().mul_(0.5).clamp_(max=1)
    return pred, gt


def peak_rss_child(n: int, size: int, chunk: int, device: str, kind: str) -> dict:
    """Run `ciou` in a fresh interpreter; report its peak-RSS growth beyond the inputs (Linux, MiB).

    The peak is the kernel's VmHWM, reset to the current RSS just before the call through
    /proc/self/clear_refs (`getrusage` max RSS would not do: it is inherited across fork/exec).
    """
    code = f"""
import json, torch
from vslrepro import metrics
import benchmarks.bench_metrics as b
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
pred, gt = b.make_maps({n}, {size}, 0, {kind!r})
metrics.ciou(pred[:2], gt[:2], device={device!r})           # warm up lazy initialization
open("/proc/self/clear_refs", "w").write("5")               # peak RSS := current RSS
before = status("VmRSS")
metrics.ciou(pred, gt, chunk_size={chunk}, device={device!r})
print(json.dumps({{"inputs_mib": 2 * pred.numel() * 4 / 2**20, "delta_mib": status("VmHWM") - before}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10316, help="number of samples (extended VGG-SS: 10,316)")
    parser.add_argument("--size", type=int, default=224, help="map side in pixels")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--maps", default="smooth", choices=["smooth", "noise"], help="see make_maps")
    parser.add_argument("--loop-n", type=int, default=500, help="samples timed in the per-sample loops")
    parser.add_argument("--chunk", type=int, default=256, help="ciou/confidence chunk size")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.size, args.loop_n, args.n_boot = 64, 32, 16, 20
    loop_n = min(args.loop_n, args.n)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, device "
          f"{args.device}; N = {args.n} {args.maps} maps {args.size}x{args.size} float32, "
          f"chunk {args.chunk}; "
          f"load average {os.getloadavg()[0]:.1f}")
    pred, gt = make_maps(args.n, args.size, args.seed, args.maps)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    scale = args.n / loop_n
    rows = []  # (step, wall, cpu, reference wall, reference cpu, note)

    # (a) per-sample scores from maps
    def batched_ciou():
        out = metrics.ciou(pred, gt, chunk_size=args.chunk, device=args.device)
        sync()
        return out
    ours, *t_ours = timed(batched_ciou)
    ref, *t_loop = timed(lambda: loop_ciou(pred[:loop_n].numpy(), gt[:loop_n].numpy()))
    diff = float(np.nanmax(np.abs(ours[:loop_n] - ref)))
    rows.append(("ciou (relative)", *t_ours, *(t * scale for t in t_loop), f"max |diff| {diff:.1e}"))
    lo, hi = -1 / 0.03, 1 / 0.03
    conf, *t_conf = timed(lambda: metrics.confidence(pred, "topk_mean", bounds=(lo, hi),
                                                     chunk_size=args.chunk, device=args.device))
    ref_conf, *t_conf_loop = timed(lambda: loop_confidence(pred[:loop_n].numpy(), lo, hi))
    rel = float(np.max(np.abs(conf[:loop_n] / ref_conf - 1)))
    rows.append(("confidence (topk_mean)", *t_conf, *(t * scale for t in t_conf_loop),
                 f"max rel diff {rel:.1e}"))

    # (b) dataset statistics from per-sample arrays
    rng = np.random.default_rng(args.seed)
    positive = np.arange(args.n) < args.n // 2
    u = np.where(positive, rng.random(args.n), 0.0)
    d = np.round(rng.random(args.n) + 0.3 * positive, 3)                     # with ties
    (loop_ap, loop_f1, _), *t_stats_loop = timed(lambda: loop_statistics(positive, u, d))
    official, *t_official = timed(lambda: metrics.summarize(u, d, positive, mode="official"), repeat=5)
    _, *t_exact = timed(lambda: metrics.summarize(u, d, positive, mode="exact"), repeat=5)
    same = official["ap"] == loop_ap and official["f1_list"] == loop_f1
    rows.append(("summarize official", *t_official, *t_stats_loop, f"AP/F1 bit-identical: {same}"))
    rows.append(("summarize exact", *t_exact, *t_stats_loop, "vs the official loop"))

    # (d) bootstrap
    samples = pd.DataFrame({"positive": positive, "ciou": u, "confidence": d})
    _, *t_boot = timed(lambda: metrics.bootstrap(samples, n_boot=args.n_boot, seed=args.seed))
    rows.append((f"bootstrap x{args.n_boot} (exact)", *t_boot, np.nan, np.nan, "locacc, ap, max_f1"))

    print(f"\nSeconds for all N = {args.n} samples, wall and process CPU time (CPU time is robust to other "
          f"jobs on the machine).\nThe per-sample loops ran on the first {loop_n} samples and are "
          f"extrapolated linearly to N; the statistics loop ran on all N.")
    print(f"{'step':<26}{'ours wall':>10}{'cpu':>9}{'loop wall':>11}{'cpu':>9}"
          f"{'speed-up wall':>15}{'cpu':>8}  check")
    for name, wall, cpu, ref_wall, ref_cpu, note in rows:
        speed = (f"{ref_wall / wall:14.1f}x{ref_cpu / cpu:7.1f}x" if np.isfinite(ref_wall)
                 else f"{'-':>15}{'-':>8}")
        ref_txt = f"{ref_wall:11.3f}{ref_cpu:9.3f}" if np.isfinite(ref_wall) else f"{'-':>11}{'-':>9}"
        print(f"{name:<26}{wall:10.4f}{cpu:9.4f}{ref_txt}{speed}  {note}")

    # (c) memory of ciou beyond its inputs
    n_mem = min(args.n, 1024)
    mem = peak_rss_child(n_mem, args.size, args.chunk, args.device, args.maps)
    hw = args.size * args.size
    keep = hw - hw // 2
    # 3 float32 work maps + top-k float32 values and int64 indices per chunk row
    analytic = min(args.chunk, n_mem) * (3 * 4 * hw + 12 * keep) / 2**20
    print(f"\nciou memory beyond inputs (fresh process, N = {n_mem}, inputs {mem['inputs_mib']:.0f} MiB): "
          f"peak-RSS growth {mem['delta_mib']:.0f} MiB; analytic work buffers {analytic:.0f} MiB "
          f"(chunk {args.chunk}; independent of N). Load average at the end {os.getloadavg()[0]:.1f}.")


if __name__ == "__main__":
    main()
