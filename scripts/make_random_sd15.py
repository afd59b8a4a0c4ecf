#!/usr/bin/env python3
"""Writes a full-size SD1.5 diffusers folder with random weights (no download), for memory and speed checks.

Usage: make_random_sd15.py OUT_DIR. Needs torch, diffusers, transformers (versions in scripts/README.md).
The weights are random, so images are noise; shapes, key names and costs are those of the real model.
"""
import sys

import torch
from bench_torch import sd15_text_encoder, sd15_unet, sd15_vae


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    sd15_unet().save_pretrained(f"{out}/unet", safe_serialization=True)
    sd15_vae().save_pretrained(f"{out}/vae", safe_serialization=True)
    sd15_text_encoder().save_pretrained(f"{out}/text_encoder", safe_serialization=True)
    print(out)


if __name__ == "__main__":
    main()
