#!/usr/bin/env python3
"""Reference outputs of diffusers' SD1.5 UNet2DConditionModel and AutoencoderKL for the Rust parity tests.

Made with: /opt/ref/bin/python (Python 3.11), torch 2.12.1 (CPU), diffusers 0.42.1, safetensors 0.8.0, numpy 1.26.4.

Usage (from the repository root):
    /opt/ref/bin/python scripts/make_model_fixtures.py [--model DIR] [--out DIR]

Two models are checked:
- `tiny`: the in-repo tiny model, --model (default tests/fixtures/tiny/diffusers, made by make_tiny_model.py;
  all widths 32, so only up-path UNet resnets have a conv_shortcut).
- `uneven`: a small random SD1.5-topology UNet (block_out_channels (8, 16, 16, 16), GroupNorm 8 groups, 8 heads,
  cross_attention_dim 16) and VAE (block_out_channels (8, 8, 16, 16), 8 groups) with fixed seeds, written by this
  script as a diffusers folder (f32 safetensors) to <out>/uneven; its channel changes exercise the conv_shortcut of
  down-path UNet resnets and of VAE encoder/decoder resnets.

Outputs in --out (default tests/fixtures/models): unet_parity_<model>.safetensors and vae_parity_<model>.safetensors
with the inputs and diffusers' outputs.

"""

import argparse
import copy
import os

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file

TIMESTEP = 617.37


def create_uneven(folder):
    """A random UNet/VAE with the SD1.5 topology and channel changes between levels, small enough to commit."""
    torch.manual_seed(1234)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=2,
        cross_attention_dim=16,
        attention_head_dim=8,
        norm_num_groups=8,
        norm_eps=1e-5,
        flip_sin_to_cos=True,
        freq_shift=0,
        use_linear_projection=False,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=8,
        scaling_factor=0.18215,
    )
    # Default inits leave norms at identity and some biases at zero; randomise them so every tensor matters.
    for model in (unet, vae):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name and name.endswith("weight"):
                    p.copy_(1.0 + 0.2 * torch.randn_like(p))
                elif name.endswith("bias"):
                    p.copy_(0.1 * torch.randn_like(p))
    unet.save_pretrained(os.path.join(folder, "unet"), safe_serialization=True)
    vae.save_pretrained(os.path.join(folder, "vae"), safe_serialization=True)


def unet_cases(unet, gen):
    ctx = unet.config.cross_attention_dim
    tensors = {"timestep": torch.tensor([TIMESTEP], dtype=torch.float64)}
    tensors["sample"] = torch.randn(2, 4, 8, 16, generator=gen)
    tensors["sample_odd"] = torch.randn(2, 4, 9, 13, generator=gen)
    tensors["context_77"] = torch.randn(2, 77, ctx, generator=gen)
    tensors["context_154"] = torch.randn(2, 154, ctx, generator=gen)
    runs = {
        "eps_77": ("sample", "context_77"),
        "eps_154": ("sample", "context_154"),
        "eps_odd_77": ("sample_odd", "context_77"),
    }
    return tensors, runs


def run_unet(unet, tensors, runs, dtype):
    out = {}
    for name, (sample, context) in runs.items():
        with torch.no_grad():
            eps = unet(tensors[sample].to(dtype), TIMESTEP, tensors[context].to(dtype)).sample
        out[name] = eps
    return out


def vae_cases(gen):
    tensors = {
        "latents": torch.randn(2, 4, 4, 8, generator=gen),
        "latents_odd": torch.randn(1, 4, 5, 7, generator=gen),
        "image": torch.rand(1, 3, 48, 40, generator=gen) * 2 - 1,
        "image_odd": torch.rand(1, 3, 36, 44, generator=gen) * 2 - 1,
    }
    return tensors


def run_vae(vae, tensors, dtype):
    out = {}
    with torch.no_grad():
        for key in ("latents", "latents_odd"):
            out["decoded" + key[len("latents"):]] = vae.decode(tensors[key].to(dtype)).sample
        for key in ("image", "image_odd"):
            posterior = vae.encode(tensors[key].to(dtype)).latent_dist
            suffix = key[len("image"):]
            out["mean" + suffix] = posterior.mean
            out["logvar" + suffix] = posterior.logvar
    return out


def report(label, f32, f64):
    for name in f32:
        diff = (f32[name].double() - f64[name]).abs().max().item()
        scale = f64[name].abs().max().item()
        print(f"{label} {name}: shape {tuple(f32[name].shape)} max|ref| {scale:.4g} f32-vs-f64 {diff:.3g}")


def make_fixtures(model_dir, out_dir, tag):
    unet = UNet2DConditionModel.from_pretrained(os.path.join(model_dir, "unet"), torch_dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(20240617)
    tensors, runs = unet_cases(unet, gen)
    out32 = run_unet(unet, tensors, runs, torch.float32)
    out64 = run_unet(copy.deepcopy(unet).double(), tensors, runs, torch.float64)
    report(f"{tag} unet", out32, out64)
    save_file({k: v.contiguous() for k, v in {**tensors, **out32}.items()},
              os.path.join(out_dir, f"unet_parity_{tag}.safetensors"))

    vae = AutoencoderKL.from_pretrained(os.path.join(model_dir, "vae"), torch_dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(20240618)
    tensors = vae_cases(gen)
    out32 = run_vae(vae, tensors, torch.float32)
    out64 = run_vae(copy.deepcopy(vae).double(), tensors, torch.float64)
    report(f"{tag} vae", out32, out64)
    save_file({k: v.contiguous() for k, v in {**tensors, **out32}.items()},
              os.path.join(out_dir, f"vae_parity_{tag}.safetensors"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tests/fixtures/tiny/diffusers")
    parser.add_argument("--out", default="tests/fixtures/models")
    args = parser.parse_args()
    torch.set_num_threads(2)
    os.makedirs(args.out, exist_ok=True)
    make_fixtures(args.model, args.out, "tiny")
    uneven_dir = os.path.join(args.out, "uneven")
    create_uneven(uneven_dir)
    make_fixtures(uneven_dir, args.out, "uneven")


if __name__ == "__main__":
    main()
