#!/usr/bin/env bash
# `loraeval grid` overhead: one grid against the same cells rendered by separate `generate` runs (docs/perf.md,
# section "`loraeval grid` overhead").
# Usage: scripts/bench_grid.sh MODEL OUT_DIR [grid flags...]
#   e.g. scripts/bench_grid.sh tests/fixtures/tiny/tiny-sd15.safetensors /tmp/bench --x steps:2-5 --y cfg:4-7 \
#          --prompt "a photo of sks woman" --width 64 --height 64 --sampler euler --seed 7
#   With --lora-dir DIR in the grid flags, the `generate` runs get it too (cells with <lora:…> tags).
# Prints: the grid's wall time (fresh folder), the same grid again (resume), and N × `generate` with each cell's
# settings read from grid.json. BIN (default target/release/loraeval) is the binary timed.
set -euo pipefail
model=$1
out=$2
shift 2
BIN=${BIN:-target/release/loraeval}
lora_dir=()
args=("$@")
for i in "${!args[@]}"; do
    if [[ ${args[$i]} == --lora-dir ]]; then lora_dir=(--lora-dir "${args[$((i + 1))]}"); fi
done
rm -rf "$out"
mkdir -p "$out"
echo "load before: $(uptime)"
start=$(date +%s.%N)
"$BIN" grid --model "$model" --out "$out/grid" "$@" 2>"$out/grid.log"
grid_s=$(echo "$(date +%s.%N) - $start" | bc)
start=$(date +%s.%N)
"$BIN" grid --model "$model" --out "$out/grid" "$@" 2>"$out/resume.log"
resume_s=$(echo "$(date +%s.%N) - $start" | bc)
cells=$(python3 -c "
import json, sys
m = json.load(open(sys.argv[1]))
for c in m['cells']:
    p = c['params']
    print('\x1f'.join(str(p[k]) for k in ('prompt', 'negative', 'seed', 'steps', 'cfg', 'sampler', 'width', 'height')))
" "$out/grid/grid.json")
n=0
start=$(date +%s.%N)
while IFS=$'\x1f' read -r prompt negative seed steps cfg sampler width height; do
    n=$((n + 1))
    "$BIN" generate --model "$model" ${lora_dir[@]+"${lora_dir[@]}"} --prompt "$prompt" --negative "$negative" --seed "$seed" \
        --steps "$steps" --cfg "$cfg" --sampler "$sampler" --width "$width" --height "$height" \
        --out "$out/generate-$n.png" 2>>"$out/generate.log"
done <<<"$cells"
generate_s=$(echo "$(date +%s.%N) - $start" | bc)
echo "load after: $(uptime)"
grep "shared work" "$out/grid.log" || true
printf 'grid (%d cells, fresh): %.2f s\ngrid again (resume): %.2f s\n%d x generate: %.2f s\n' \
    "$n" "$grid_s" "$resume_s" "$n" "$generate_s"
