"""torch.randn on a real NVIDIA GPU, drawn as A1111 does with its "GPU" RNG source (modules/rng.py:
`torch.manual_seed(seed)`, then `torch.randn(shape, device="cuda")`), for tests/sampling_cuda_randn.rs: loraeval's
`gpu` source must give these numbers up to CUDA's fast-sine rounding.

Run on a machine with an NVIDIA GPU: `python3 scripts/cuda_randn_vectors.py OUT.json`.
Made with torch 2.11.0+cu130 on an NVIDIA H200 (the device machine of this workplace).
"""
import json
import sys

import torch

SEEDS = [0, 1, 42, 2**32 + 5, 2**63 - 1, 3735928559]
LATENT = (4, 64, 64)
SAMPLE = list(range(64)) + list(range(64, 4 * 64 * 64, 251))


def draws(seed):
    torch.manual_seed(seed)
    first = torch.randn((3, 4), device="cuda").flatten().tolist()
    latent = torch.randn(LATENT, device="cuda").flatten()
    second = torch.randn((3, 4), device="cuda").flatten().tolist()
    return {
        "seed": str(seed),
        "first_3x4": first,
        "latent_4x64x64_sampled": [latent[i].item() for i in SAMPLE],
        "third_3x4": second,
    }


def main():
    out = {
        "note": "torch %s, %s; A1111 GPU source: manual_seed then randn on cuda; draws in order: 3x4, 4x64x64, 3x4"
        % (torch.__version__, torch.cuda.get_device_name(0)),
        "sample_indices": SAMPLE,
        "seeds": [draws(s) for s in SEEDS],
    }
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
    print(out["note"], "->", sys.argv[1])


if __name__ == "__main__":
    main()
