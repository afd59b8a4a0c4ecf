#!/opt/ref/bin/python
"""Test vectors of A1111's NV generator and of its ImageRNG with the eta noise seed delta (tests/fixtures/sampling/).

Source: AUTOMATIC1111/stable-diffusion-webui
    modules/rng_philox.py at commit ef1698fd6dbd6387341a1eeeded068ff1476ee50 (the NV generator, pure numpy)
    modules/rng.py        at commit 0d5dc9a6e7f6362e423a06bf0e75dd5854025394 (ImageRNG, create_generator, ENSD)
Both files are A1111's code and are not part of this repository: copy them into a folder as
    <folder>/modules/rng_philox.py and <folder>/modules/rng.py
and pass --a1111 <folder>. The script imports them unchanged; `modules.devices` and `modules.shared`, which
rng.py imports, are replaced by small stand-ins (CPU device, `opts.randn_source`, `opts.eta_noise_seed_delta`).

Versions used for the committed file: Python 3.11.7, numpy 1.26.4, torch 2.12.1 (CPU generator only).

Run from the repository root:
    /opt/ref/bin/python scripts/make_nv_rng_fixtures.py --a1111 /tmp/a1111

Writes tests/fixtures/sampling/nv-randn.json:
- docstring: rng_philox.py's own example (seed 0, shape 3x4): `values` from the code, and `cuda_docstring`, the
  numbers its docstring prints (what torch.randn gives on an NVIDIA GPU, whose Box-Muller uses the fast
  __sincosf; they differ from the code's float64 Box-Muller in the last float32 digits).
- sequences: per seed (0, 1, 42, 2^32 + 5, 2^63 - 1, 2^64 - 1, 3735928559), consecutive randn calls of several
  shapes on one Generator: shape, counter offset of the call, all values.
- large: one 4x64x64 call (a 512x512 latent) at offsets 0 and 1, and a generator whose offset was set to 1000:
  the values at `indices` (the first 40, every 97th, the last 24).
- image_rng: A1111's ImageRNG (randn_source "NV" and "CPU"; eta_noise_seed_delta 0 and 31337): seeds [s, s + 1],
  shape 4x3x5, four next() calls as an ancestral sampler makes them (initial noise, then one per step), each
  [batch, 4, 3, 5] flattened.
Floats are float32 values written as the float64 that holds them exactly; seeds are strings.
"""
import argparse
import json
import os
import sys
import types

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "sampling",
                   "nv-randn.json")

SEEDS = [0, 1, 42, 2**32 + 5, 2**63 - 1, 2**64 - 1, 3735928559]
SHAPES = [(3, 4), (5,), (4, 4, 5), (1,), (2, 3, 7), (16,)]
CUDA_DOCSTRING = [-0.92466259, -0.42534415, -2.6438457, 0.14518388, -0.12086647, -0.57972564, -0.62285122,
                  -0.32838709, -1.07454231, -0.36314407, -1.67105067, 2.26550497]
ENSD = 31337


def load_a1111(folder):
    """Imports A1111's modules.rng and modules.rng_philox from `folder` with stand-ins for devices and shared."""
    sys.path.insert(0, folder)
    package = types.ModuleType("modules")
    package.__path__ = [os.path.join(folder, "modules")]
    devices = types.ModuleType("modules.devices")
    devices.cpu = torch.device("cpu")
    devices.device = torch.device("cpu")
    shared = types.ModuleType("modules.shared")
    shared.opts = types.SimpleNamespace(randn_source="NV", eta_noise_seed_delta=0)
    shared.device = torch.device("cpu")
    package.devices, package.shared = devices, shared
    sys.modules.update({"modules": package, "modules.devices": devices, "modules.shared": shared})
    from modules import rng, rng_philox  # noqa: E402  (A1111's files, unchanged)
    return rng, rng_philox, shared


def floats(array):
    values = np.asarray(array, dtype=np.float32).reshape(-1)
    return [float(v) for v in values]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a1111", required=True, help="folder holding modules/rng.py and modules/rng_philox.py")
    args = ap.parse_args()
    rng, rng_philox, shared = load_a1111(os.path.abspath(args.a1111))

    docstring = rng_philox.Generator(seed=0).randn(shape=(3, 4))
    assert docstring.dtype == np.float32
    assert np.max(np.abs(docstring.reshape(-1) - np.asarray(CUDA_DOCSTRING))) < 5e-7

    sequences = []
    for seed in SEEDS:
        generator = rng_philox.Generator(seed)
        calls = []
        for shape in SHAPES:
            offset = generator.offset
            calls.append({"shape": list(shape), "offset": offset, "values": floats(generator.randn(shape))})
        sequences.append({"seed": str(seed), "calls": calls})

    n = 4 * 64 * 64
    indices = sorted(set(range(40)) | set(range(0, n, 97)) | set(range(n - 24, n)))
    large = []
    for seed, start in [(1234, 0), (1234, 1), (2**40 + 3, 1000)]:
        generator = rng_philox.Generator(seed)
        generator.offset = start
        values = generator.randn((4, 64, 64)).reshape(-1)
        large.append({"seed": str(seed), "offset": start, "values": floats(values[indices])})

    image_rng = []
    for source in ["NV", "CPU"]:
        for ensd in [0, ENSD]:
            shared.opts.randn_source = source
            shared.opts.eta_noise_seed_delta = ensd
            seeds = [77, 78]
            image = rng.ImageRNG((4, 3, 5), seeds)
            draws = [floats(image.next().numpy()) for _ in range(4)]
            image_rng.append({"source": source, "ensd": ensd, "seeds": [str(s) for s in seeds],
                              "shape": [4, 3, 5], "draws": draws})
    nv_plain, nv_ensd = image_rng[0], image_rng[1]
    assert nv_plain["draws"][0] == nv_ensd["draws"][0] and nv_plain["draws"][1] != nv_ensd["draws"][1]

    fixture = {
        "note": "A1111 modules/rng_philox.py and modules/rng.py ImageRNG; see scripts/make_nv_rng_fixtures.py",
        "docstring": {"seed": "0", "shape": [3, 4], "values": floats(docstring), "cuda_docstring": CUDA_DOCSTRING},
        "sequences": sequences,
        "large": {"shape": [4, 64, 64], "indices": indices, "cases": large},
        "image_rng": image_rng,
    }
    with open(OUT, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {len(sequences)} seeds, {len(large)} large draws, {len(image_rng)} ImageRNG runs")


if __name__ == "__main__":
    main()
