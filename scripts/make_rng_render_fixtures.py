#!/opt/ref/bin/python
"""Reference renders of the tiny model with A1111's NV noise (and CPU noise with ENSD): tests/fixtures/tiny/rng/.

The pipeline is scripts/make_render_fixtures.py's (diffusers modules + k-diffusion samplers, A1111 1.10
semantics: see its docstring), imported unchanged; only its image RNG is replaced by A1111's own
`modules/rng.py` `ImageRNG` with `opts.randn_source` and `opts.eta_noise_seed_delta` set per case, loaded from
A1111's files as scripts/make_nv_rng_fixtures.py does (A1111 commits and the folder layout are given there).
k-diffusion's randn_like is routed to that ImageRNG, as A1111's TorchHijack does, so the ancestral noise after
the first draw comes from the generators re-seeded with seed + ENSD.

Versions used for the committed files: Python 3.11.7, torch 2.12.1 (CPU), diffusers 0.42.1, transformers 5.25.0,
k-diffusion 0.1.1.post1, numpy 1.26.4, safetensors 0.8.0, Pillow 13.0.0.

Run from the repository root, after scripts/make_tiny_model.py:
    /opt/ref/bin/python scripts/make_rng_render_fixtures.py --a1111 /tmp/a1111
        [--model tests/fixtures/tiny] [--tokenizer /work/shared/fixtures/sd15-tiny/diffusers/tokenizer]

Writes tests/fixtures/tiny/rng/cases.json (the fields of tests/fixtures/tiny/cases.json plus `rng`: "nv" or
"cpu", and `ensd`), ref-<case>[-<i>].png, and trace-<case>.safetensors with `noise` [B, 4, H/8, W/8] (the first
draw), `step_noise` [n-1, B, 4, H/8, W/8] (euler_a: the ancestral draws) and `latent` (the final latent).
"""
import argparse
import json
import os
import re
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_nv_rng_fixtures  # noqa: E402
import make_render_fixtures as mrf  # noqa: E402

ENSD = 31337


def a1111_image_rng(rng_module):
    """make_render_fixtures.ImageRNG's interface (shape, seeds, dtype; next(); draws) on A1111's ImageRNG."""

    class ImageRNG:
        def __init__(self, shape, seeds, dtype=torch.float32):
            self.inner = rng_module.ImageRNG(shape, seeds)
            self.dtype = dtype
            self.draws = []

        def next(self):
            x = self.inner.next().to(self.dtype)
            self.draws.append(x)
            return x

    return ImageRNG


def cases():
    c = dict(prompt=mrf.BASE_PROMPT, negative=mrf.BASE_NEG, seed=42, steps=8, cfg=7.0, width=128, height=64,
             batch=1, clip_skip=1, rng="nv", ensd=0)
    return [
        {**c, "name": "euler_nv", "sampler": "euler"},
        {**c, "name": "euler_a_nv", "sampler": "euler_a", "seed": 1234},
        {**c, "name": "euler_a_nv_ensd", "sampler": "euler_a", "seed": 1234, "ensd": ENSD},
        {**c, "name": "dpmpp_2m_karras_nv_128x128", "sampler": "dpmpp_2m_karras", "seed": 99, "steps": 10,
         "cfg": 4.5, "width": 128, "height": 128},
        {**c, "name": "batch2_euler_a_nv_ensd", "sampler": "euler_a", "seed": 21, "batch": 2, "negative": "",
         "ensd": ENSD},
        {**c, "name": "euler_a_cpu_ensd", "sampler": "euler_a", "seed": 1234, "rng": "cpu", "ensd": ENSD},
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a1111", required=True, help="folder holding modules/rng.py and modules/rng_philox.py")
    ap.add_argument("--model", default="tests/fixtures/tiny")
    ap.add_argument("--tokenizer", default="/work/shared/fixtures/sd15-tiny/diffusers/tokenizer")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    rng_module, _, shared = make_nv_rng_fixtures.load_a1111(os.path.abspath(args.a1111))
    mrf.ImageRNG = a1111_image_rng(rng_module)

    out = os.path.join(args.model, "rng")
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        if re.fullmatch(r"(ref-.*\.png|trace-.*\.safetensors|cases\.json)", old):
            os.remove(os.path.join(out, old))
    models = mrf.Models(args.model, args.tokenizer)
    written = []
    plain_euler_a = None
    for case in cases():
        shared.opts.randn_source = case["rng"].upper()
        shared.opts.eta_noise_seed_delta = case["ensd"]
        pixels, trace, info = mrf.render(models, case)
        keep = {k: trace[k] for k in ("noise", "step_noise", "latent") if k in trace}
        if case["name"] == "euler_a_nv":
            plain_euler_a = keep
        if case["name"] == "euler_a_nv_ensd":
            # Same initial noise, different ancestral noise.
            assert torch.equal(keep["noise"], plain_euler_a["noise"])
            assert not torch.equal(keep["step_noise"], plain_euler_a["step_noise"])
        names = mrf.image_names(case)
        for px, name in zip(pixels, names):
            Image.fromarray(px, "RGB").save(os.path.join(out, name))
        trace_name = f"trace-{case['name']}.safetensors"
        save_file(keep, os.path.join(out, trace_name))
        flat = np.concatenate([p.reshape(-1) for p in pixels]).astype(np.float64)
        print(f"{case['name']}: rng {case['rng']} ensd {case['ensd']}, unet calls {info['unet_calls']}, "
              f"rng draws {info['rng_draws']}, pixel mean {flat.mean():.1f} std {flat.std():.1f}")
        written.append({**case, "images": names, "trace": trace_name})
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(written, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
