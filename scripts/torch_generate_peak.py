#!/usr/bin/env python3
"""Peak memory of the PyTorch/diffusers side of a 512x512 txt2img with one step, for comparison with
`/usr/bin/time -v loraeval generate --model DIR --steps 1` (same random full-size SD1.5 diffusers folder made by
scripts/make_random_sd15.py). Loads the three models in f32 (as `loraeval` computes), encodes cond/uncond, runs one
CFG UNet step (batch 2) and a VAE decode, then prints the maximum resident set size.
Versions: torch 2.12.1, diffusers 0.42.1, transformers 5.24.0.
Usage: torch_generate_peak.py MODEL_DIR [SIZE]
"""
import resource
import sys

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel


def main():
    folder, size = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 512
    with torch.inference_mode():
        text_encoder = CLIPTextModel.from_pretrained(f"{folder}/text_encoder").eval()
        unet = UNet2DConditionModel.from_pretrained(f"{folder}/unet").eval()
        vae = AutoencoderKL.from_pretrained(f"{folder}/vae").eval()
        ids = torch.full((2, 77), 49407, dtype=torch.long)
        ids[:, 0] = 49406
        context = text_encoder(ids).last_hidden_state
        latent = torch.randn(1, 4, size // 8, size // 8)
        eps = unet(torch.cat([latent, latent]), 999.0, context).sample
        latent = latent - eps[:1]
        vae.decode(latent / 0.18215)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS {peak_kib} KiB ({peak_kib / 2**20:.2f} GiB)")


if __name__ == "__main__":
    main()
