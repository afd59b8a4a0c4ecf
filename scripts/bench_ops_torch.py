"""PyTorch timings of the ops in examples/kernel_bench.rs (same shapes, f32, CPU, 2 threads).

Run: [TORCH_THREADS=1] /opt/ref/bin/python scripts/bench_ops_torch.py [FILTER] [--reps N]
     /opt/ref/bin/python scripts/bench_ops_torch.py --model unet|vae [--size PIXELS] [--reps N]
(the second form: whole SD1.5 models as in scripts/bench_torch.py, wall and CPU seconds of every run, like
`kernel_bench --model`; diffusers 0.42.1).
Versions used: torch 2.12.1 (CPU, oneDNN), numpy 1.26, Python from /opt/ref.
Prints best of N runs after a warm-up: wall ms and GFLOP/s, process CPU ms and the rate that would give on idle
threads (CPU time is what to compare on a loaded machine), and the 1-minute load average before each measurement.
"""

import os
import sys
import time

import torch
import torch.nn.functional as F


def load_average():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def best_ms(reps, fn):
    """Best wall ms and best process CPU ms (all threads; robust on a loaded machine) after a warm-up."""
    load = load_average()
    fn()
    best, best_cpu = float("inf"), float("inf")
    for _ in range(reps):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    return best * 1e3, best_cpu * 1e3, load


def report(name, flop, timing):
    ms, cpu_ms, load = timing
    threads = torch.get_num_threads()
    print(
        f"{name:<34} {'torch':<8} {ms:>9.2f} ms {flop / ms / 1e6:>7.1f} GFLOP/s | cpu {cpu_ms:>9.2f} ms = "
        f"{flop / (cpu_ms / threads) / 1e6:>7.1f} GFLOP/s per {threads} thr  load {load}"
    )


def take_option(args, name, default):
    if name not in args:
        return default
    i = args.index(name)
    value = args[i + 1]
    del args[i : i + 2]
    return value


def bench_model(model, size, reps):
    """Wall and CPU seconds of each of `reps` runs of a whole model, after a warm-up."""
    from bench_torch import sd15_unet, sd15_vae

    latent = size // 8
    if model == "unet":
        net = sd15_unet()
        x, context = torch.randn(2, 4, latent, latent), torch.randn(2, 77, 768)
        run = lambda: net(x, 500.5, context)
    else:
        net = sd15_vae()
        z = torch.randn(1, 4, latent, latent)
        run = lambda: net.decode(z)
    run()
    for _ in range(reps):
        load = load_average()
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        print(f"torch {model} {size}: wall {wall:.3f} s  cpu {cpu:.3f} s  load {load}")


def main():
    args = sys.argv[1:]
    reps = int(take_option(args, "--reps", 3))
    model = take_option(args, "--model", None)
    size = int(take_option(args, "--size", 256))
    wanted = args[0] if args else None
    threads = int(os.environ.get("TORCH_THREADS", "2"))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__} threads {torch.get_num_threads()} {torch.backends.cpu.get_cpu_capability()}")
    with torch.inference_mode():
        if model:
            bench_model(model, size, reps)
            return
        for batch, channels, size in [(2, 320, 32), (2, 640, 16), (2, 1280, 8), (2, 1280, 16), (1, 128, 256), (1, 512, 64), (2, 320, 64)]:
            name = f"conv3x3 b{batch} {channels}ch {size}x{size}"
            if wanted and wanted not in name:
                continue
            x = torch.randn(batch, channels, size, size)
            w = torch.randn(channels, channels, 3, 3) * 0.02
            b = torch.randn(channels)
            flop = 2.0 * batch * channels * size * size * channels * 9
            report(name, flop, best_ms(reps, lambda: F.conv2d(x, w, b, stride=1, padding=1)))
        for lq, lk, d in [(1024, 1024, 40), (4096, 4096, 40), (4096, 77, 40), (1024, 77, 80), (256, 77, 160)]:
            batch, heads = 2, 8
            name = f"attention b{batch} h{heads} {lq}x{lk} d{d}"
            if wanted and wanted not in name:
                continue
            q = torch.randn(batch, heads, lq, d)
            k = torch.randn(batch, heads, lk, d)
            v = torch.randn(batch, heads, lk, d)
            flop = 4.0 * batch * heads * lq * lk * d
            report(name, flop, best_ms(reps, lambda: F.scaled_dot_product_attention(q, k, v)))
        for rows, in_dim, out_dim in [(8192, 320, 320), (8192, 320, 2560), (8192, 1280, 320), (2048, 640, 640),
                                      (2048, 640, 5120), (512, 1280, 1280)]:
            name = f"linear {rows}x{in_dim} -> {out_dim}"
            if wanted and wanted not in name:
                continue
            x, w, b = torch.randn(rows, in_dim), torch.randn(out_dim, in_dim), torch.randn(out_dim)
            report(name, 2.0 * rows * in_dim * out_dim, best_ms(reps, lambda: F.linear(x, w, b)))


if __name__ == "__main__":
    main()
