#!/usr/bin/env bash
# Times loraeval and PyTorch/diffusers on the same SD1.5 shapes in one run and prints the ratios.
# Usage: scripts/bench_compare.sh [--size N] [--batch N] [--iters N] [--only unet,vae,text]
# Needs the reference Python environment (PYTHON, default /opt/ref/bin/python; see scripts/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/opt/ref/bin/python}
cargo build --release --quiet
ours=$(target/release/loraeval bench --json "$@")
theirs=$("$PYTHON" scripts/bench_torch.py "$@")
"$PYTHON" - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{'part':<14} {'loraeval s':>11} {'pytorch s':>10} {'ratio':>6}")
for key in ("unet_step_s", "vae_decode_s", "text_encode_s"):
    if key in ours and key in theirs:
        print(f"{key:<14} {ours[key]:>11.3f} {theirs[key]:>10.3f} {ours[key] / theirs[key]:>6.2f}")
PY
