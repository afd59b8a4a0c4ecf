#!/usr/bin/env python3
"""Writes a fake kohya training run of random LoRA files for a diffusers SD1.5 folder, for grid benchmarks.

Usage: make_random_lora_run.py MODEL_DIR OUT_DIR [--name N] [--epochs E] [--rank R] [--scale S]
Packages: torch 2.12.1 (CPU), safetensors (the reference stack of scripts/README.md).

Every kohya default target gets a rank-R LoRA (f32, alpha = R/2): the Linear / 1x1-conv layers inside the UNet
transformers (proj_in, proj_out, attn1/attn2 to_q/k/v/out.0, ff.net.0.proj, ff.net.2) and the CLIP attention and
MLP Linears. Files are named as kohya names them (NAME-000001 ... and NAME for the last epoch) and carry ss_epoch,
ss_output_name and ss_session_id; epoch e scales lora_up by e so epochs differ. Images are noise (random base).
"""
import argparse
import json
import struct

import torch
from safetensors.torch import save_file

UNET_TARGETS = ("proj_in", "proj_out", "to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")
TE_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def header_shapes(path):
    """{key: shape} from a safetensors header, without loading tensors."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def targets(model_dir):
    """(kohya module name, weight shape) of every default target."""
    out = []
    for key, shape in sorted(header_shapes(f"{model_dir}/unet/diffusion_pytorch_model.safetensors").items()):
        module = key[: -len(".weight")] if key.endswith(".weight") else None
        if module and ".attentions." in module and module.endswith(UNET_TARGETS) and len(shape) in (2, 4):
            out.append(("lora_unet_" + module.replace(".", "_"), shape))
    for key, shape in sorted(header_shapes(f"{model_dir}/text_encoder/model.safetensors").items()):
        module = key[: -len(".weight")] if key.endswith(".weight") else None
        if module and "encoder.layers." in module and module.endswith(TE_TARGETS):
            module = module if module.startswith("text_model.") else "text_model." + module
            out.append(("lora_te_" + module.replace(".", "_"), shape))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--name", default="randface")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--scale", type=float, default=0.01)
    args = parser.parse_args()
    torch.manual_seed(0)
    modules = targets(args.model_dir)
    base = {}
    for name, shape in modules:
        out_dim, in_dim = shape[0], shape[1]
        extra = [1, 1] if len(shape) == 4 else []
        base[name] = (
            torch.randn([args.rank, in_dim] + extra) / in_dim**0.5,
            torch.randn([out_dim, args.rank] + extra) * args.scale,
        )
    for epoch in range(1, args.epochs + 1):
        tensors = {}
        for name, (down, up) in base.items():
            tensors[f"{name}.lora_down.weight"] = down.contiguous()
            tensors[f"{name}.lora_up.weight"] = (up * epoch).contiguous()
            tensors[f"{name}.alpha"] = torch.tensor(args.rank / 2)
        stem = args.name if epoch == args.epochs else f"{args.name}-{epoch:06d}"
        metadata = {"ss_epoch": str(epoch), "ss_output_name": args.name, "ss_session_id": "1",
                    "ss_network_dim": str(args.rank), "ss_network_module": "networks.lora"}
        save_file(tensors, f"{args.out_dir}/{stem}.safetensors", metadata=metadata)
        print(f"{args.out_dir}/{stem}.safetensors: {len(base)} modules")


if __name__ == "__main__":
    main()
