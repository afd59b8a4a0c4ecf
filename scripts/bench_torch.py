#!/usr/bin/env python3
"""Times PyTorch/diffusers on the shapes `loraeval bench` uses (random weights, f32, CPU).

Prints one JSON line {"unet_step_s", "vae_decode_s", "text_encode_s"} (medians after one warm-up), like
`loraeval bench --json`. Used by scripts/bench_compare.sh. Made with torch 2.12.1, diffusers 0.42.1,
transformers 5.24.0 (the /opt/ref environment described in scripts/README.md).
"""
import argparse
import json
import statistics
import time

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel


def median_seconds(iters, run):
    run()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sd15_unet():
    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    ).eval()


def sd15_vae():
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    ).eval()


def sd15_text_encoder():
    config = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
    return CLIPTextModel(config).eval()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--only", default="unet,vae,text")
    args = parser.parse_args()
    parts = args.only.split(",")
    latent = args.size // 8
    result = {}
    torch.manual_seed(0)
    with torch.inference_mode():
        if "unet" in parts:
            unet = sd15_unet()
            x = torch.randn(2 * args.batch, 4, latent, latent)
            context = torch.randn(2 * args.batch, 77, 768)
            result["unet_step_s"] = median_seconds(args.iters, lambda: unet(x, 500.5, context))
            del unet
        if "vae" in parts:
            vae = sd15_vae()
            z = torch.randn(args.batch, 4, latent, latent)
            result["vae_decode_s"] = median_seconds(args.iters, lambda: vae.decode(z))
            del vae
        if "text" in parts:
            clip = sd15_text_encoder()
            ids = torch.randint(0, 49408, (2 * args.batch, 77))
            result["text_encode_s"] = median_seconds(args.iters, lambda: clip(ids))
    result["torch_threads"] = torch.get_num_threads()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
