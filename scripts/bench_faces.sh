#!/usr/bin/env bash
# Face-scoring speed: loraeval (release build) vs dlib's Python bindings on the same 512x512 portraits and
# settings (CNN detection at upsample 0, largest face, 5-point landmarks, 150x150 chip, descriptor, no jitter),
# both pinned to the same CPU cores. Prints per-image times and the ratio, and checks that both computed the
# same descriptors.
#
# Usage: scripts/bench_faces.sh            (env: CORES=0,1  REPEAT=3  PY=/opt/ref/bin/python)
# Versions: see scripts/bench_faces.py (dlib-bin 20.0.1). The machine may be shared: the load is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target}
PY=${PY:-/opt/ref/bin/python}
CORES=${CORES:-0,1}
REPEAT=${REPEAT:-3}
NCORES=$(( $(tr -cd , <<<"$CORES" | wc -c) + 1 ))
export RAYON_NUM_THREADS=$NCORES OMP_NUM_THREADS=$NCORES OPENBLAS_NUM_THREADS=$NCORES

cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/loraeval
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" scripts/bench_faces.py portraits "$work/portraits"
portraits=("$work"/portraits/portrait_*.png)
batch=()
for r in $(seq 1 "$REPEAT"); do
    for p in "${portraits[@]}"; do
        cp "$p" "$work/r${r}_$(basename "$p")"
        batch+=("$work/r${r}_$(basename "$p")")
    done
done

# "wall,cpu" seconds of a command (cpu = user + system of all its threads; stdout to $work/out.json)
seconds() {
    /usr/bin/time -f "%e,%U,%S" -o "$work/time.txt" taskset -c "$CORES" "$@" >"$work/out.json"
    awk -F, '{ printf "%s,%.3f\n", $1, $2 + $3 }' "$work/time.txt"
}

echo "cores: $CORES ($NCORES threads); $(nproc) online; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "portraits: ${#portraits[@]} x 512x512, batch of ${#batch[@]}"

# loraeval: start-up (process + embedded models) = an image without a face that is too small to search
startup=$(seconds "$BIN" faces embed tests/fixtures/faces/odd/one_pixel.png --json)
single=()
for p in "${portraits[@]}"; do
    single+=("$(seconds "$BIN" faces embed "$p" --json)")
done
batch_s=$(seconds "$BIN" faces embed "${batch[@]}" --json)
cp "$work/out.json" "$work/ours.json"

# dlib: same images, models loaded once, per-image time measured inside Python
taskset -c "$CORES" "$PY" scripts/bench_faces.py time "${batch[@]}" >"$work/dlib.json"

"$PY" - "$work/ours.json" "$work/dlib.json" "$startup" "$batch_s" "${single[@]}" <<'EOF'
import json, statistics, sys
import numpy as np
ours = json.load(open(sys.argv[1]))
dlib = json.load(open(sys.argv[2]))
pair = lambda s: tuple(float(v) for v in s.split(","))
startup, batch_s = pair(sys.argv[3]), pair(sys.argv[4])
single = [pair(s) for s in sys.argv[5:]]
n = len(ours)
worst = 0.0
for entry in ours:
    faces = entry["faces"]
    ref = dlib["faces"][entry["image"]]
    if not faces or ref is None:
        assert not faces and ref is None, entry["image"]
        continue
    largest = max(faces, key=lambda f: (f["box"][2] - f["box"][0] + 1) * (f["box"][3] - f["box"][1] + 1))
    worst = max(worst, float(np.linalg.norm(np.array(largest["embedding"]) - np.array(ref))))
# index 0: wall seconds, 1: CPU seconds
ours_batch = [(batch_s[i] - startup[i]) / n for i in (0, 1)]
ours_single = [statistics.median(s[i] for s in single) - startup[i] for i in (0, 1)]
dlib_image = [dlib["median_image_s"], dlib["median_image_cpu_s"]]
row = lambda what, v: print(f"{what:<44} {v[0]:7.3f} s wall {v[1]:7.3f} s CPU")
row("loraeval start-up (process + models)", startup)
row("loraeval one image (median, minus start-up)", ours_single)
row(f"loraeval per image in a batch of {n}", ours_batch)
row("dlib model load", [dlib["load_models_s"], dlib["load_models_cpu_s"]])
row(f"dlib per image (median of {len(dlib['per_image_s'])})", dlib_image)
ratio = lambda a: f"{a[0] / dlib_image[0]:.2f} wall, {a[1] / dlib_image[1]:.2f} CPU"
print(f"ratio loraeval/dlib per image: one image {ratio(ours_single)}; batch {ratio(ours_batch)}")
print(f"largest descriptor difference vs dlib: L2 {worst:.2e}")
EOF
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
