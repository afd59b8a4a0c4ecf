//! Times `model::kernels` (conv2d, fused attention) against candle's ops on the SD1.5 shapes of docs/perf.md.
//!
//! `cargo run --release --example kernel_bench [-- FILTER] [--reps N] [--tile COLS | --direct | --winograd]
//! [--blocks BQ,BK] [--ours]`
//! prints one line per op: best of N runs after a warm-up, ms and GFLOP/s, with the 1-minute load average read
//! before each measurement (the development machine is shared, so compare only lines taken at low load). The first
//! lines name the threads and the kernels' instruction-set path (`LORAEVAL_KERNELS=portable|avx2|avx512` selects
//! another one the CPU runs). `--ours` skips the candle baselines; `--tile`/`--blocks` override the kernels' tile
//! sizes for tuning; `--tile` forces the im2col convolution, `--direct` the direct AVX-512 one, `--winograd` the
//! Winograd one (default: the automatic choice). Conv GFLOP/s always count the direct method's FLOPs (`2·9·c_in`
//! per output value). Compare with `scripts/bench_ops_torch.py` (PyTorch, same shapes).
//!
//! `--model unet|vae --size PIXELS` instead times whole SD1.5 models with random weights (UNet: one CFG step,
//! batch 2; VAE: one decode): every run's wall and process CPU time, so figures can be compared on a loaded machine;
//! with `LORAEVAL_KERNEL_TIMES=1` also the wall time spent in each kernel. `--save FILE` makes the model's inputs
//! deterministic and writes its output to FILE (safetensors, tensor `output`), to compare two builds'
//! numbers with `scripts/compare_outputs.py`.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use loraeval::model::attention as unfused;
use loraeval::model::config::{UNetConfig, VaeConfig};
use loraeval::model::kernels::attention::{
    default_blocks, scaled_dot_product_attention_tokens, scaled_dot_product_attention_with_blocks,
};
use loraeval::model::kernels::conv::{
    conv2d, conv2d_add, conv2d_with_tile, ConvAdd, ConvAlgorithm, PackedConvWeight,
};
use loraeval::model::kernels::isa;
use loraeval::model::kernels::linear::linear;
use loraeval::model::kernels::take_kernel_times;
use loraeval::model::random_weights::RandomWeights;
use loraeval::model::unet::UNet2DConditionModel;
use loraeval::model::vae::AutoEncoderKL;

struct Options {
    filter: Option<String>,
    reps: usize,
    tile: Option<usize>,
    direct: bool,
    winograd: bool,
    blocks: (usize, usize),
    ours_only: bool,
    model: Option<String>,
    size: usize,
    save: Option<String>,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        filter: None,
        reps: 3,
        tile: None,
        direct: false,
        winograd: false,
        blocks: default_blocks(),
        ours_only: false,
        model: None,
        size: 256,
        save: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--reps" => options.reps = args.next().unwrap_or_default().parse()?,
            "--tile" => options.tile = Some(args.next().unwrap_or_default().parse()?),
            "--direct" => options.direct = true,
            "--winograd" => options.winograd = true,
            "--blocks" => {
                let value = args.next().unwrap_or_default();
                let (bq, bk) = value.split_once(',').unwrap_or(("64", "256"));
                options.blocks = (bq.parse()?, bk.parse()?);
            }
            "--ours" => options.ours_only = true,
            "--model" => options.model = args.next(),
            "--size" => options.size = args.next().unwrap_or_default().parse()?,
            "--save" => options.save = args.next(),
            _ => options.filter = Some(arg),
        }
    }
    Ok(options)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().next().unwrap_or("?").to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// CPU time of the whole process in ns: the sum over its threads of `/proc/self/task/*/schedstat` (first field).
fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// One measurement: best wall ms, best process CPU ms (all threads, robust to a loaded machine), load average.
struct Timing {
    wall_ms: f64,
    cpu_ms: f64,
    load: String,
}

/// Best of `reps` runs after one warm-up.
fn best_ms(reps: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<Timing> {
    let load = load_average();
    f()?;
    let (mut wall_ms, mut cpu_ms) = (f64::MAX, f64::MAX);
    for _ in 0..reps.max(1) {
        let cpu = process_cpu_ns();
        let start = Instant::now();
        let out = f()?;
        wall_ms = wall_ms.min(start.elapsed().as_secs_f64() * 1e3);
        cpu_ms = cpu_ms.min((process_cpu_ns() - cpu) as f64 / 1e6);
        drop(out);
    }
    Ok(Timing {
        wall_ms,
        cpu_ms,
        load,
    })
}

fn report(name: &str, impl_name: &str, flop: f64, t: &Timing) {
    let threads = rayon::current_num_threads() as f64;
    println!(
        "{name:<34} {impl_name:<8} {:>9.2} ms {:>7.1} GFLOP/s | cpu {:>9.2} ms = {:>7.1} GFLOP/s per {threads} thr  load {}",
        t.wall_ms,
        flop / t.wall_ms / 1e6,
        t.cpu_ms,
        flop / (t.cpu_ms / threads) / 1e6,
        t.load
    );
}

fn random(shape: &[usize]) -> Result<Tensor> {
    Ok(Tensor::randn(0f32, 1f32, shape, &Device::Cpu)?)
}

fn bench_conv(options: &Options, batch: usize, channels: usize, size: usize) -> Result<()> {
    let name = format!("conv3x3 b{batch} {channels}ch {size}x{size}");
    if !wanted(options, &name) {
        return Ok(());
    }
    let x = random(&[batch, channels, size, size])?;
    let w = (random(&[channels, channels, 3, 3])? * 0.02)?;
    let b = random(&[channels])?;
    let packed = PackedConvWeight::new(&w)?;
    let flop = 2.0 * (batch * channels * size * size * channels * 9) as f64;
    let t = best_ms(options.reps, || {
        Ok(match options.tile {
            Some(tile) => conv2d_with_tile(&x, &packed, Some(&b), 1, 1, tile)?,
            None if options.direct || options.winograd => {
                let add = ConvAdd {
                    bias: Some(&b),
                    ..ConvAdd::default()
                };
                let algorithm = if options.winograd {
                    ConvAlgorithm::Winograd
                } else {
                    ConvAlgorithm::Direct
                };
                conv2d_add(&x, &packed, 1, 1, add, algorithm)?
            }
            None => conv2d(&x, &packed, Some(&b), 1, 1)?,
        })
    })?;
    report(&name, "ours", flop, &t);
    if !options.ours_only {
        let t = best_ms(options.reps, || {
            let y = x.conv2d(&w, 1, 1, 1, 1)?;
            Ok(y.broadcast_add(&b.reshape((1, (), 1, 1))?)?)
        })?;
        report(&name, "candle", flop, &t);
    }
    Ok(())
}

fn bench_attention(
    options: &Options,
    batch: usize,
    heads: usize,
    lq: usize,
    lk: usize,
    d: usize,
) -> Result<()> {
    let name = format!("attention b{batch} h{heads} {lq}x{lk} d{d}");
    if !wanted(options, &name) {
        return Ok(());
    }
    let q = random(&[batch, heads, lq, d])?;
    let k = random(&[batch, heads, lk, d])?;
    let v = random(&[batch, heads, lk, d])?;
    let flop = 4.0 * (batch * heads * lq * lk * d) as f64;
    let (bq, bk) = options.blocks;
    let t = best_ms(options.reps, || {
        Ok(scaled_dot_product_attention_with_blocks(
            &q, &k, &v, bq, bk,
        )?)
    })?;
    report(&name, "ours", flop, &t);
    // The layout the UNet's attention layers hand over: token-major `[B, L, H·d]`, heads side by side.
    let tokens = |t: &Tensor| t.transpose(1, 2)?.flatten_from(2)?.contiguous();
    let (qt, kt, vt) = (tokens(&q)?, tokens(&k)?, tokens(&v)?);
    let t = best_ms(options.reps, || {
        Ok(scaled_dot_product_attention_tokens(&qt, &kt, &vt, heads)?)
    })?;
    report(&name, "ours tokens", flop, &t);
    if !options.ours_only {
        let t = best_ms(options.reps, || {
            Ok(unfused::scaled_dot_product_attention(&q, &k, &v)?)
        })?;
        report(&name, "unfused", flop, &t);
    }
    Ok(())
}

fn wanted(options: &Options, name: &str) -> bool {
    options
        .filter
        .as_ref()
        .is_none_or(|f| name.contains(f.as_str()))
}

/// Times `reps` runs of a whole model (after one warm-up), printing wall and CPU seconds of each.
/// A deterministic stand-in for `randn` (values in [-1.7, 1.7]), for `--save`.
fn pattern(shape: &[usize]) -> Result<Tensor> {
    let count: usize = shape.iter().product();
    let values: Vec<f32> = (0..count)
        .map(|i| (1.7 * (i as f64 * 0.618_034 + 0.25).sin()) as f32)
        .collect();
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

fn bench_model(options: &Options, model: &str) -> Result<()> {
    let device = Device::Cpu;
    let latent = options.size / 8;
    let random = |shape: &[usize]| match options.save {
        Some(_) => pattern(shape),
        None => random(shape),
    };
    let mut run: Box<dyn FnMut() -> Result<Tensor>> = match model {
        "unet" => {
            let config = UNetConfig::sd15();
            let unet = UNet2DConditionModel::load(RandomWeights::var_builder(1, &device), &config)?;
            let x = random(&[2, 4, latent, latent])?;
            let context = random(&[2, 77, config.cross_attention_dim])?;
            Box::new(move || Ok(unet.forward(&x, 500.5, &context)?))
        }
        "vae" => {
            let vae =
                AutoEncoderKL::load(RandomWeights::var_builder(2, &device), &VaeConfig::sd15())?;
            let z = random(&[1, 4, latent, latent])?;
            Box::new(move || Ok(vae.decode(&z)?))
        }
        other => anyhow::bail!("--model must be unet or vae, got {other}"),
    };
    let output = run()?;
    if let Some(path) = &options.save {
        output.save_safetensors("output", path)?;
        println!("saved {model} output {:?} to {path}", output.dims());
    }
    take_kernel_times();
    for _ in 0..options.reps.max(1) {
        let load = load_average();
        let cpu = process_cpu_ns();
        let start = Instant::now();
        drop(run()?);
        let wall = start.elapsed().as_secs_f64();
        println!(
            "{model} {size}: wall {wall:.3} s  cpu {:.3} s  load {load}",
            (process_cpu_ns() - cpu) as f64 / 1e9,
            size = options.size
        );
        let times = take_kernel_times();
        let timed: f64 = times.iter().map(|t| t.1).sum();
        for (kernel, seconds, calls) in times {
            println!("    {kernel:<24} {seconds:>8.3} s  {calls:>5} calls");
        }
        if timed > 0.0 {
            println!("    {:<24} {:>8.3} s", "(other)", wall - timed);
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let options = parse_options()?;
    println!("threads {}", rayon::current_num_threads());
    // The kernels' instruction-set path (`LORAEVAL_KERNELS=portable|avx2|avx512` picks another one).
    println!("kernels {}", isa::selected());
    if let Some(problem) = isa::override_problem() {
        println!("{problem}");
    }
    if let Some(model) = &options.model {
        return bench_model(&options, model);
    }
    for (batch, channels, size) in [
        (2, 320, 32),
        (2, 640, 16),
        (2, 1280, 8),
        (2, 1280, 16),
        (1, 128, 256),
        (1, 512, 64),
        (2, 320, 64),
    ] {
        bench_conv(&options, batch, channels, size)?;
    }
    for (lq, lk, d) in [
        (1024, 1024, 40),
        (4096, 4096, 40),
        (4096, 77, 40),
        (1024, 77, 80),
        (256, 77, 160),
    ] {
        bench_attention(&options, 2, 8, lq, lk, d)?;
    }
    for (rows, in_dim, out_dim) in LINEAR_SHAPES {
        bench_linear(&options, rows, in_dim, out_dim)?;
    }
    Ok(())
}

/// `(rows, in, out)` of the UNet's Linear layers at 512×512, CFG batch 2 (tokens × feature widths).
const LINEAR_SHAPES: [(usize, usize, usize); 6] = [
    (8192, 320, 320),
    (8192, 320, 2560),
    (8192, 1280, 320),
    (2048, 640, 640),
    (2048, 640, 5120),
    (512, 1280, 1280),
];

fn bench_linear(options: &Options, rows: usize, in_dim: usize, out_dim: usize) -> Result<()> {
    let name = format!("linear {rows}x{in_dim} -> {out_dim}");
    if !wanted(options, &name) {
        return Ok(());
    }
    let x = random(&[rows, in_dim])?;
    let w = random(&[out_dim, in_dim])?;
    let b = random(&[out_dim])?;
    let flop = 2.0 * (rows * in_dim * out_dim) as f64;
    let t = best_ms(options.reps, || Ok(linear(&x, &w, Some(&b), None)?))?;
    report(&name, "ours", flop, &t);
    Ok(())
}
