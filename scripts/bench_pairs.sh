#!/usr/bin/env bash
# Alternates loraeval and PyTorch runs of one SD1.5 model and prints the ratio of each adjacent pair, so that the
# slow drifts of a shared machine (±20 % over minutes here) hit both sides alike.
# Usage: scripts/bench_pairs.sh unet|vae SIZE [PAIRS] [REPS]   (defaults: 3 pairs, 2 timed runs per side)
# Each side is one process: model with random weights, one warm-up, REPS timed runs; the pair's figure is the best
# wall time of each side. Needs the reference Python environment (PYTHON, default /opt/ref/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/opt/ref/bin/python}
model=${1:?usage: scripts/bench_pairs.sh unet|vae SIZE [PAIRS] [REPS]}
size=${2:?usage: scripts/bench_pairs.sh unet|vae SIZE [PAIRS] [REPS]}
pairs=${3:-3}
reps=${4:-2}
cargo build --release --quiet --example kernel_bench
best() { grep -oE 'wall [0-9.]+' | awk '{print $2}' | sort -n | head -1; }
ratios=()
for pair in $(seq 1 "$pairs"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  ours=$(target/release/examples/kernel_bench --model "$model" --size "$size" --reps "$reps" | best)
  theirs=$("$PYTHON" scripts/bench_ops_torch.py --model "$model" --size "$size" --reps "$reps" 2>/dev/null | best)
  ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.3f", a / b }')
  ratios+=("$ratio")
  echo "pair $pair  $model $size  loraeval ${ours} s  pytorch ${theirs} s  ratio ${ratio}  (load ${load})"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ r[NR] = $1 } END { printf "median ratio %.3f (min %.3f, max %.3f)\n", r[int((NR + 1) / 2)], r[1], r[NR] }'
