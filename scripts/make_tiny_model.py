"""Make the tiny random-weight SD1.5-topology model used by the Rust tests (tests/fixtures/tiny/).

Package versions used to produce the committed files:
    python 3 (/opt/ref/bin/python), torch 2.12.1 (CPU), diffusers 0.42.1, transformers 5.24.0,
    safetensors (pip, with torch 2.12.1), numpy 1.26

Rerun (from the repository root):
    /opt/ref/bin/python scripts/make_tiny_model.py [--out tests/fixtures/tiny]

What it writes (all weights are rounded so that they are exactly representable in float32, float16 AND
bfloat16: bf16 rounding, then |w| < 2**-14 flushed to 0; so any dtype variant gives identical numbers):
  diffusers/            diffusers pipeline folder (unet/, vae/, text_encoder/: config.json + float16 safetensors;
                        model_index.json, scheduler/). No tokenizer folder: loraeval vendors the CLIP tokenizer.
  tiny-sd15.safetensors single-file checkpoint in the LDM/CompVis key layout (float16), produced by the
                        diffusers->LDM conversion written below (inverse of diffusers' single-file conversion).
The f32 / bf16 / model_ema.* variants of the single file are NOT stored: the Rust tests synthesise them from
tiny-sd15.safetensors (upcast / re-encode / copy keys), which is exact because of the rounding above.

Verification done here (the script fails loudly otherwise):
  * the single file is converted back with diffusers' own functions
    (diffusers.loaders.single_file_utils.convert_ldm_unet_checkpoint / convert_ldm_vae_checkpoint /
    convert_ldm_clip_checkpoint) and with UNet2DConditionModel/AutoencoderKL.from_single_file; every tensor must
    equal the diffusers model's tensor exactly (same key set, same shape, bitwise equal values);
  * the diffusers folder is reloaded with from_pretrained(torch_dtype=float32) and compared exactly;
  * decoded images of a random latent must not be flat (pixel std and range are printed and checked).
"""

import argparse
import json
import os
import shutil

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.loaders import single_file_utils as sfu
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel

SEED = 20240601

UNET_KWARGS = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 32, 32, 32),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=24,
    attention_head_dim=8,  # diffusers SD1.5 naming: this is the number of heads
    norm_num_groups=32,
    norm_eps=1e-5,
    flip_sin_to_cos=True,
    freq_shift=0,
    use_linear_projection=False,
)

VAE_KWARGS = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=(32, 32, 32, 32),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=64,
    scaling_factor=0.18215,
)

CLIP_KWARGS = dict(
    vocab_size=49408,
    hidden_size=24,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=24,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)


# ----------------------------------------------------------------------------------------------------------------
# Random weights
# ----------------------------------------------------------------------------------------------------------------


def round_to_all_dtypes(t: torch.Tensor) -> torch.Tensor:
    """Round to bf16 precision and flush values below the f16 normal range, so f32/f16/bf16 hold it exactly."""
    r = t.to(torch.bfloat16).to(torch.float32)
    r = torch.where(r.abs() < 2.0**-14, torch.zeros_like(r), r)
    assert torch.equal(r.to(torch.float16).to(torch.float32), r)
    assert torch.equal(r.to(torch.bfloat16).to(torch.float32), r)
    return r


@torch.no_grad()
def randomise(model: torch.nn.Module, gen: torch.Generator, weight_gain: float = 1.0):
    """Fresh random init, deterministic given `gen`.

    Linear/conv weights: N(0, gain^2/fan_in) (variance preserving), biases N(0, 0.1^2); norm layers get
    weight 1 + N(0, 0.1^2) and bias N(0, 0.1^2) so that swapped/missing affine parameters are detectable;
    embeddings N(0, 1) (CLIP's first op on them is a LayerNorm, so their scale does not matter much).
    """
    for name, p in sorted(model.named_parameters()):
        shape = p.shape
        if name.endswith("bias"):
            v = 0.1 * torch.randn(shape, generator=gen)
        elif p.ndim == 1:  # GroupNorm / LayerNorm weight
            v = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif "embedding" in name:
            v = torch.randn(shape, generator=gen)
        else:
            fan_in = shape[1] * (shape[2] * shape[3] if p.ndim == 4 else 1)
            v = torch.randn(shape, generator=gen) * (weight_gain / fan_in**0.5)
        p.copy_(round_to_all_dtypes(v))


def build_models():
    gen = torch.Generator().manual_seed(SEED)
    unet = UNet2DConditionModel(**UNET_KWARGS).eval()
    vae = AutoencoderKL(**VAE_KWARGS).eval()
    te = CLIPTextModel(CLIPTextConfig(**CLIP_KWARGS)).eval()
    randomise(unet, gen)
    randomise(vae, gen)
    randomise(te, gen)
    return unet, vae, te


# ----------------------------------------------------------------------------------------------------------------
# diffusers -> LDM (CompVis) key conversion, written from the layout tables in docs/formats.md sections 1.4-1.6
# ----------------------------------------------------------------------------------------------------------------

UNET_RESNET_RENAMES = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
]

VAE_RESNET_RENAMES = [("conv_shortcut", "nin_shortcut")]

VAE_ATTN_RENAMES = [
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
]


def rename_leaf(rest: str, renames) -> str:
    for old, new in renames:
        if rest == old or rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


def unet_key_to_ldm(key: str, cfg) -> str:
    """One diffusers UNet2DConditionModel key -> LDM key (without the model.diffusion_model. prefix)."""
    per = cfg["layers_per_block"] + 1  # input blocks per level: L resnets (+attn) and one downsampler
    parts = key.split(".")
    simple = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    for old, new in simple.items():
        if key.startswith(old + "."):
            return new + key[len(old) :]
    if parts[0] == "down_blocks":
        b, kind, i = int(parts[1]), parts[2], int(parts[3])
        rest = ".".join(parts[4:])
        if kind == "resnets":
            return f"input_blocks.{b * per + i + 1}.0." + rename_leaf(rest, UNET_RESNET_RENAMES)
        if kind == "attentions":
            return f"input_blocks.{b * per + i + 1}.1." + rest
        if kind == "downsamplers":
            assert rest.startswith("conv.")
            return f"input_blocks.{(b + 1) * per}.0.op." + rest[len("conv.") :]
    if parts[0] == "mid_block":
        kind, i = parts[1], int(parts[2])
        rest = ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{2 * i}." + rename_leaf(rest, UNET_RESNET_RENAMES)
        if kind == "attentions":
            return "middle_block.1." + rest
    if parts[0] == "up_blocks":
        b, kind, i = int(parts[1]), parts[2], int(parts[3])
        rest = ".".join(parts[4:])
        if kind == "resnets":
            return f"output_blocks.{b * per + i}.0." + rename_leaf(rest, UNET_RESNET_RENAMES)
        if kind == "attentions":
            return f"output_blocks.{b * per + i}.1." + rest
        if kind == "upsamplers":
            has_attn = cfg["up_block_types"][b].startswith("CrossAttn")
            return f"output_blocks.{b * per + per - 1}.{2 if has_attn else 1}." + rest
    raise KeyError(f"unmapped UNet key {key}")


def vae_key_to_ldm(key: str, cfg):
    """One diffusers AutoencoderKL key -> (LDM key without first_stage_model., needs_conv_reshape)."""
    n_levels = len(cfg["block_out_channels"])
    parts = key.split(".")
    side = parts[0]
    if side in ("quant_conv", "post_quant_conv"):
        return key, False
    assert side in ("encoder", "decoder"), key
    sub = parts[1]
    rest = ".".join(parts[2:])
    if sub in ("conv_in", "conv_out"):
        return key, False
    if sub == "conv_norm_out":
        return f"{side}.norm_out.{rest}", False
    if sub in ("down_blocks", "up_blocks"):
        i, kind = int(parts[2]), parts[3]
        tail = ".".join(parts[4:])
        ldm_level = i if sub == "down_blocks" else n_levels - 1 - i
        ldm_name = "down" if sub == "down_blocks" else "up"
        if kind == "resnets":
            j = int(parts[4])
            leaf = ".".join(parts[5:])
            return f"{side}.{ldm_name}.{ldm_level}.block.{j}." + rename_leaf(leaf, VAE_RESNET_RENAMES), False
        if kind in ("downsamplers", "upsamplers"):
            assert tail.startswith("0.conv."), key
            op = "downsample" if kind == "downsamplers" else "upsample"
            return f"{side}.{ldm_name}.{ldm_level}.{op}.conv." + tail[len("0.conv.") :], False
    if sub == "mid_block":
        kind, i = parts[2], int(parts[3])
        leaf = ".".join(parts[4:])
        if kind == "resnets":
            return f"{side}.mid.block_{i + 1}." + rename_leaf(leaf, VAE_RESNET_RENAMES), False
        if kind == "attentions":
            new_leaf = rename_leaf(leaf, VAE_ATTN_RENAMES)
            is_linear_weight = new_leaf in ("q.weight", "k.weight", "v.weight", "proj_out.weight")
            return f"{side}.mid.attn_1." + new_leaf, is_linear_weight
    raise KeyError(f"unmapped VAE key {key}")


def diffusers_to_ldm(unet, vae, te):
    out = {}
    ucfg = dict(unet.config)
    for k, v in unet.state_dict().items():
        out["model.diffusion_model." + unet_key_to_ldm(k, ucfg)] = v
    vcfg = dict(vae.config)
    for k, v in vae.state_dict().items():
        nk, reshape = vae_key_to_ldm(k, vcfg)
        out["first_stage_model." + nk] = v[:, :, None, None] if reshape else v
    for k, v in te.state_dict().items():
        # transformers 5 CLIPTextModel.state_dict() may or may not carry the text_model. prefix
        name = k if k.startswith("text_model.") else "text_model." + k
        out["cond_stage_model.transformer." + name] = v
    n_expected = len(unet.state_dict()) + len(vae.state_dict()) + len(te.state_dict())
    assert len(out) == n_expected, "key collision in the LDM conversion"
    return {k: v.contiguous() for k, v in out.items()}


# ----------------------------------------------------------------------------------------------------------------
# Verification
# ----------------------------------------------------------------------------------------------------------------


def assert_same_tensors(what: str, got: dict, want: dict):
    got = {k: v for k, v in got.items() if not k.endswith("position_ids")}
    want = {k: v for k, v in want.items() if not k.endswith("position_ids")}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing and not extra, f"{what}: missing {missing[:5]} extra {extra[:5]}"
    for k in want:
        g, w = got[k].to(torch.float32), want[k].to(torch.float32)
        assert g.shape == w.shape, f"{what}: {k} shape {tuple(g.shape)} != {tuple(w.shape)}"
        assert torch.equal(g, w), f"{what}: {k} values differ (max {(g - w).abs().max()})"
    print(f"  {what}: {len(want)} tensors identical")


def te_state(te):
    return {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in te.state_dict().items()}


def verify_single_file(path, unet, vae, te, diffusers_dir):
    ckpt = load_file(path)
    print(f"verify {path} ({len(ckpt)} keys) with diffusers' single-file conversion:")
    assert_same_tensors("unet convert_ldm_unet_checkpoint", sfu.convert_ldm_unet_checkpoint(ckpt, unet.config),
                        unet.state_dict())
    assert_same_tensors("vae convert_ldm_vae_checkpoint", sfu.convert_ldm_vae_checkpoint(ckpt, vae.config),
                        vae.state_dict())
    assert_same_tensors("text convert_ldm_clip_checkpoint", sfu.convert_ldm_clip_checkpoint(ckpt), te_state(te))
    u2 = UNet2DConditionModel.from_single_file(path, config=diffusers_dir, subfolder="unet", local_files_only=True,
                                               torch_dtype=torch.float32)
    assert_same_tensors("unet from_single_file", u2.state_dict(), unet.state_dict())
    v2 = AutoencoderKL.from_single_file(path, config=diffusers_dir, subfolder="vae", local_files_only=True,
                                        torch_dtype=torch.float32)
    assert_same_tensors("vae from_single_file", v2.state_dict(), vae.state_dict())
    # detection keys diffusers uses for "SD v1"
    assert "model.diffusion_model.output_blocks.11.0.skip_connection.weight" in ckpt
    assert sfu.infer_diffusers_model_type(ckpt) == "v1", sfu.infer_diffusers_model_type(ckpt)


def verify_diffusers_folder(d, unet, vae, te):
    print(f"verify {d} reloaded with from_pretrained(torch_dtype=float32):")
    u = UNet2DConditionModel.from_pretrained(d, subfolder="unet", torch_dtype=torch.float32)
    v = AutoencoderKL.from_pretrained(d, subfolder="vae", torch_dtype=torch.float32)
    t = CLIPTextModel.from_pretrained(d, subfolder="text_encoder", torch_dtype=torch.float32)
    assert_same_tensors("unet", u.state_dict(), unet.state_dict())
    assert_same_tensors("vae", v.state_dict(), vae.state_dict())
    assert_same_tensors("text_encoder", te_state(t), te_state(te))


@torch.no_grad()
def check_variety(unet, vae, te):
    """Images of typical latents must not be flat; activations must stay in a sane range."""
    g = torch.Generator().manual_seed(1)
    ids = torch.tensor([[49406, 320, 1125, 539, 49407] + [49407] * 72])
    h = te(ids).last_hidden_state
    x = torch.randn(1, 4, 8, 12, generator=g)
    eps = unet(x, torch.tensor([500.0]), encoder_hidden_states=h).sample
    img = vae.decode(torch.randn(1, 4, 8, 12, generator=g) / 0.18215).sample
    pix = (255 * ((img + 1) / 2).clamp(0, 1)).to(torch.uint8).float()
    print(f"  text hidden std {h.std():.3f}; unet eps std {eps.std():.3f}; "
          f"decoded image mean {img.mean():.3f} std {img.std():.3f}; "
          f"pixels min {pix.min():.0f} max {pix.max():.0f} std {pix.std():.1f}; "
          f"fraction clipped {((pix == 0) | (pix == 255)).float().mean():.3f}")
    assert pix.std() > 10 and ((pix == 0) | (pix == 255)).float().mean() < 0.5, "decoded images too flat"


def save_diffusers(d, unet, vae, te):
    if os.path.exists(d):
        shutil.rmtree(d)
    unet.to(torch.float16).save_pretrained(os.path.join(d, "unet"))
    vae.to(torch.float16).save_pretrained(os.path.join(d, "vae"))
    te.to(torch.float16).save_pretrained(os.path.join(d, "text_encoder"))
    unet.to(torch.float32), vae.to(torch.float32), te.to(torch.float32)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                          clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    sched.save_pretrained(os.path.join(d, "scheduler"))
    with open(os.path.join(d, "model_index.json"), "w") as f:
        json.dump({
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.42.1",
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": [None, None],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        }, f, indent=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/tiny")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_grad_enabled(False)
    unet, vae, te = build_models()
    for name, m in (("unet", unet), ("vae", vae), ("text_encoder", te)):
        print(f"{name}: {len(m.state_dict())} tensors, {sum(v.numel() for v in m.state_dict().values())} values")
    check_variety(unet, vae, te)

    ddir = os.path.join(args.out, "diffusers")
    save_diffusers(ddir, unet, vae, te)
    single = os.path.join(args.out, "tiny-sd15.safetensors")
    ldm = diffusers_to_ldm(unet, vae, te)
    save_file({k: v.to(torch.float16) for k, v in ldm.items()}, single)

    verify_diffusers_folder(ddir, unet, vae, te)
    verify_single_file(single, unet, vae, te, ddir)
    total = 0
    for root, _, files in os.walk(args.out):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    print(f"OK; {args.out} holds {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
