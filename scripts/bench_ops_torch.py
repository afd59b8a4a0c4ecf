"""PyTorch timings of the ops in examples/kernel_bench.rs (same shapes, f32, CPU, 2 threads).

Run: /opt/ref/bin/python scripts/bench_ops_torch.py [FILTER] [--reps N]
Versions used: torch 2.12.1 (CPU, oneDNN), numpy 1.26, Python from /opt/ref.
Prints best of N runs after a warm-up, ms and GFLOP/s, and the 1-minute load average before each measurement.
"""

import sys
import time

import torch
import torch.nn.functional as F


def load_average():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def best_ms(reps, fn):
    load = load_average()
    fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3, load


def report(name, flop, ms, load):
    print(f"{name:<34} {'torch':<8} {ms:>9.2f} ms {flop / ms / 1e6:>7.1f} GFLOP/s  load {load}")


def main():
    args = sys.argv[1:]
    reps = 3
    if "--reps" in args:
        i = args.index("--reps")
        reps = int(args[i + 1])
        del args[i : i + 2]
    wanted = args[0] if args else None
    torch.set_num_threads(2)
    torch.manual_seed(0)
    print(f"torch {torch.__version__} threads {torch.get_num_threads()} {torch.backends.cpu.get_cpu_capability()}")
    with torch.inference_mode():
        for batch, channels, size in [(2, 320, 32), (2, 640, 16), (2, 1280, 8), (1, 128, 256), (1, 512, 64), (2, 320, 64)]:
            name = f"conv3x3 b{batch} {channels}ch {size}x{size}"
            if wanted and wanted not in name:
                continue
            x = torch.randn(batch, channels, size, size)
            w = torch.randn(channels, channels, 3, 3) * 0.02
            b = torch.randn(channels)
            flop = 2.0 * batch * channels * size * size * channels * 9
            ms, load = best_ms(reps, lambda: F.conv2d(x, w, b, stride=1, padding=1))
            report(name, flop, ms, load)
        for lq, lk, d in [(1024, 1024, 40), (4096, 4096, 40), (4096, 77, 40), (1024, 77, 80), (256, 77, 160)]:
            batch, heads = 2, 8
            name = f"attention b{batch} h{heads} {lq}x{lk} d{d}"
            if wanted and wanted not in name:
                continue
            q = torch.randn(batch, heads, lq, d)
            k = torch.randn(batch, heads, lk, d)
            v = torch.randn(batch, heads, lk, d)
            flop = 4.0 * batch * heads * lq * lk * d
            ms, load = best_ms(reps, lambda: F.scaled_dot_product_attention(q, k, v))
            report(name, flop, ms, load)


if __name__ == "__main__":
    main()
