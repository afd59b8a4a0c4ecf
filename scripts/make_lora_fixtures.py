"""Make LoRA fixtures for the in-repo tiny model (tests/fixtures/tiny) and render references with them applied.

Package versions used to produce the committed files:
    python 3 (/opt/ref/bin/python), torch 2.12.1 (CPU), diffusers 0.42.1, transformers 5.24.0,
    k-diffusion 0.1.1.post1, safetensors, numpy 1.26, Pillow 13.0.0,
    peft 0.21.2 (only for the diffusers second opinion; installed privately with
    `pip install --no-deps --target /tmp/peftlib peft` and put on PYTHONPATH)

Rerun (from the repository root, after scripts/make_tiny_model.py and scripts/make_render_fixtures.py):
    PYTHONPATH=/tmp/peftlib /opt/ref/bin/python scripts/make_lora_fixtures.py
        [--model tests/fixtures/tiny] [--tokenizer /work/shared/fixtures/sd15-tiny/diffusers/tokenizer]
        [--out tests/fixtures/lora]

Writes to --out: the LoRA files, ref-<case>.png renders, cases.json and hashes.json (A1111's addnet sha256 of each
file's tensor data). The renders reuse the pipeline of
scripts/make_render_fixtures.py (A1111 semantics: CPU RNG, k-diffusion euler, CFG, trunc decode); only the weights
change. Every LoRA is applied by MERGING it into the float32 diffusers modules as AUTOMATIC1111's Lora extension
does (extensions-builtin/Lora: network_lora.py, network_hada.py, network_lokr.py, network.py finalize_updown /
apply_weight_decompose), written out independently here:
  * kohya LoRA:   W += m * (alpha / rank) * (up.reshape(out, r) @ down.reshape(r, -1)).reshape(W.shape);
    LoCon 3x3:    dW = conv2d(down.permute(1, 0, 2, 3), up).permute(1, 0, 2, 3)   (kohya LoRAInfModule.merge_to)
  * LoHa:         dW = (w1_a @ w1_b) * (w2_a @ w2_b), scale alpha / w1_b.shape[0]
  * LoKr:         dW = kron(w1, w2) with w2 = (w2_a @ w2_b).reshape(c, d, kh, kw) and w1 given 1x1 kernel dims,
                  scale alpha / w2_b.shape[0]
  * PEFT:         W += m * (lora_B @ lora_A) (no alpha keys: scale 1)
  * DoRA:         Wc = W + scale * dW; W' = Wc * dora_scale / norm(Wc) (norm per input channel for a [1, in]
                  dora_scale, per output row for [out, 1]); W += m * (W' - W)
The text-encoder multiplier applies to CLIP layers, the UNet multiplier to UNet layers.

Second opinion: the kohya LoRA/LoCon file is also loaded with diffusers' own StableDiffusionPipeline
.load_lora_weights + fuse_lora(lora_scale=m) (diffusers' kohya conversion and PEFT layers) and rendered; the
script checks it agrees with the merge above and stores that render as its own case.
"""

import argparse
import copy
import hashlib
import json
import math
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_render_fixtures as R  # noqa: E402

SEED = 20240607
RANK = 4
BASE_CASE = dict(prompt=R.BASE_PROMPT, negative=R.BASE_NEG, seed=42, steps=8, cfg=7.0, sampler="euler", width=128,
                 height=64, batch=1, clip_skip=1)


# ----------------------------------------------------------------------------------------------------------------
# Target modules and names
# ----------------------------------------------------------------------------------------------------------------


def te_name(name):
    """transformers 5 CLIPTextModel may not have the text_model level; kohya names always include it."""
    return name if name.startswith("text_model.") else "text_model." + name


def unet_targets(unet, locon):
    """kohya networks.lora targets: Linear/Conv2d inside Transformer2DModel; with conv_dim (LoCon) also inside
    ResnetBlock2D / Downsample2D / Upsample2D."""
    out = {}
    for name, mod in unet.named_modules():
        if not isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        in_transformer = ".attentions." in name
        in_conv_block = any(p in name for p in (".resnets.", ".downsamplers.", ".upsamplers."))
        if in_transformer or (locon and in_conv_block):
            out[name] = mod
    return out


def te_targets(te):
    out = {}
    for name, mod in te.named_modules():
        if isinstance(mod, torch.nn.Linear) and (".self_attn." in name or ".mlp." in name):
            out[te_name(name)] = mod
    return out


def kohya_key(part, name):
    return ("lora_te_" if part == "te" else "lora_unet_") + name.replace(".", "_")


RESNET_LDM = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
              "conv_shortcut": "skip_connection"}


def ldm_unet_name(name, layers_per_block=2, up_attention=(False, True, True, True)):
    """diffusers module path -> LDM (CompVis) path, A1111 networks.py convert_diffusers_name_to_compvis in reverse."""
    per = layers_per_block + 1
    p = name.split(".")
    if p[0] == "down_blocks":
        b, kind = int(p[1]), p[2]
        if kind == "downsamplers":
            return f"input_blocks.{per * (b + 1)}.0.op"
        i, rest = int(p[3]), ".".join(p[4:])
        n = 1 + per * b + i
        return f"input_blocks.{n}.0.{RESNET_LDM[rest]}" if kind == "resnets" else f"input_blocks.{n}.1.{rest}"
    if p[0] == "mid_block":
        kind, i, rest = p[1], int(p[2]), ".".join(p[3:])
        return f"middle_block.{2 * i}.{RESNET_LDM[rest]}" if kind == "resnets" else f"middle_block.1.{rest}"
    if p[0] == "up_blocks":
        b, kind = int(p[1]), p[2]
        if kind == "upsamplers":
            return f"output_blocks.{per * b + per - 1}.{2 if up_attention[b] else 1}.conv"
        i, rest = int(p[3]), ".".join(p[4:])
        n = per * b + i
        return f"output_blocks.{n}.0.{RESNET_LDM[rest]}" if kind == "resnets" else f"output_blocks.{n}.1.{rest}"
    raise ValueError(name)


# ----------------------------------------------------------------------------------------------------------------
# Random adapters (values rounded to float16 so the f16 file and the reference see the same numbers)
# ----------------------------------------------------------------------------------------------------------------


def f16_round(t):
    return t.to(torch.float16).to(torch.float32)


def fan_in(weight):
    return weight[0].numel()


def make_kohya(gen, targets, part, strength, alpha, key_fn=None):
    """lora_down/lora_up/alpha per module; dW std is `strength` * std(W) / scale."""
    sd = {}
    for name, mod in targets.items():
        w = mod.weight
        out = w.shape[0]
        down_shape = (RANK,) + tuple(w.shape[1:])
        up_shape = (out, RANK) + ((1, 1) if w.dim() == 4 else ())
        down = torch.randn(down_shape, generator=gen) / math.sqrt(fan_in(w))
        up = torch.randn(up_shape, generator=gen)
        dw = up.reshape(out, RANK) @ down.reshape(RANK, -1)
        up = up * (strength * w.std() / dw.std() / (alpha / RANK))
        key = (key_fn or kohya_key)(part, name)
        sd[f"{key}.lora_down.weight"] = f16_round(down)
        sd[f"{key}.lora_up.weight"] = f16_round(up)
        sd[f"{key}.alpha"] = torch.tensor(alpha)
    return sd


def make_loha(gen, targets, part, strength, alpha):
    sd = {}
    for name, mod in targets.items():
        w = mod.weight
        out, rest = w.shape[0], w[0].numel()
        w1a, w1b = torch.randn(out, RANK, generator=gen), torch.randn(RANK, rest, generator=gen)
        w2a, w2b = torch.randn(out, RANK, generator=gen), torch.randn(RANK, rest, generator=gen)
        dw = (w1a @ w1b) * (w2a @ w2b)
        k = math.sqrt(strength * w.std() / dw.std() / (alpha / RANK))
        key = kohya_key(part, name)
        sd.update({f"{key}.hada_w1_a": f16_round(w1a * k), f"{key}.hada_w1_b": f16_round(w1b),
                   f"{key}.hada_w2_a": f16_round(w2a * k), f"{key}.hada_w2_b": f16_round(w2b),
                   f"{key}.alpha": torch.tensor(alpha)})
    return sd


def factorization(dimension, factor=-1):
    """LyCORIS lokr.py factorization (copied by A1111 lyco_helpers.py): closest divisor pair, smaller first."""
    if factor > 0 and dimension % factor == 0:
        m, n = factor, dimension // factor
        return (n, m) if m > n else (m, n)
    if factor < 0:
        factor = dimension
    m, n = 1, dimension
    length = m + n
    while m < n:
        new_m = m + 1
        while dimension % new_m != 0:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > length or new_m > factor:
            break
        m, n = new_m, new_n
    return (n, m) if m > n else (m, n)


def make_lokr(gen, targets, part, strength, alpha):
    """LyCORIS LoKr: full w1 [a, b], low-rank w2 = w2_a [c, r] @ w2_b [r, d*kh*kw]."""
    sd = {}
    for name, mod in targets.items():
        w = mod.weight
        out, inp = w.shape[0], w.shape[1]
        kernel = w[0, 0].numel()
        a, c = factorization(out)
        b, d = factorization(inp)
        w1 = torch.randn(a, b, generator=gen)
        w2a, w2b = torch.randn(c, RANK, generator=gen), torch.randn(RANK, d * kernel, generator=gen)
        dw = torch.kron(w1, w2a @ w2b)
        k = strength * w.std() / dw.std() / (alpha / RANK)
        key = kohya_key(part, name)
        sd.update({f"{key}.lokr_w1": f16_round(w1 * k), f"{key}.lokr_w2_a": f16_round(w2a),
                   f"{key}.lokr_w2_b": f16_round(w2b), f"{key}.alpha": torch.tensor(alpha)})
    return sd


def make_peft(gen, targets, part, strength):
    """diffusers/PEFT training-script layout: unet.<path>.lora_A.weight / lora_B.weight, no alpha (scale 1)."""
    sd = {}
    prefix = "text_encoder." if part == "te" else "unet."
    for name, mod in targets.items():
        w = mod.weight
        if w.dim() != 2:  # the SD LoRA example targets attention Linear layers only
            continue
        a = torch.randn(RANK, w.shape[1], generator=gen) / math.sqrt(w.shape[1])
        b = torch.randn(w.shape[0], RANK, generator=gen)
        b = b * (strength * w.std() / (b @ a).std())
        sd[f"{prefix}{name}.lora_A.weight"] = f16_round(a)
        sd[f"{prefix}{name}.lora_B.weight"] = f16_round(b)
    return sd


def add_dora(gen, sd):
    """dora_scale for every module: [1, in, ...] (A1111 / ComfyUI files) on even modules, [out, 1, ...] (LyCORIS
    wd_on_out) on odd ones; values near the column/row norms of the merged weight."""
    downs = sorted(k for k in sd if k.endswith(".lora_down.weight"))
    for i, key in enumerate(downs):
        module = key[: -len(".lora_down.weight")]
        up, down = sd[f"{module}.lora_up.weight"], sd[key]
        out, inp = up.shape[0], down.shape[1]
        extra = (1, 1) if down.dim() == 4 else ()
        shape = (1, inp) + extra if i % 2 == 0 else (out, 1) + extra
        sd[f"{module}.dora_scale"] = f16_round(0.5 + torch.rand(shape, generator=gen))
    return sd


# ----------------------------------------------------------------------------------------------------------------
# Reference merge (A1111 semantics)
# ----------------------------------------------------------------------------------------------------------------


def lookup_layers(models):
    layers = {}
    for name, mod in unet_targets(models.unet, locon=True).items():
        layers[kohya_key("unet", name)] = ("unet", mod)
        layers[f"unet.{name}"] = ("unet", mod)
        layers[kohya_key("unet", ldm_unet_name(name))] = ("unet", mod)
    for name, mod in te_targets(models.te).items():
        layers[kohya_key("te", name)] = ("te", mod)
        layers[f"text_encoder.{name}"] = ("te", mod)
    return layers


def group_modules(sd):
    suffixes = [".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight", ".alpha", ".dora_scale",
                ".hada_w1_a", ".hada_w1_b", ".hada_w2_a", ".hada_w2_b", ".lokr_w1", ".lokr_w2_a", ".lokr_w2_b"]
    modules = {}
    for key, value in sd.items():
        for s in suffixes:
            if key.endswith(s):
                modules.setdefault(key[: -len(s)], {})[s[1:]] = value.to(torch.float32)
                break
        else:
            raise ValueError(key)
    return modules


def module_delta(t, w):
    """(dW, scale) of one module for weight w."""
    if "lora_down.weight" in t or "lora_A.weight" in t:
        down = t.get("lora_down.weight", t.get("lora_A.weight"))
        up = t.get("lora_up.weight", t.get("lora_B.weight"))
        rank = down.shape[0]
        if down.dim() == 4 and down.shape[2:] != (1, 1):
            dw = torch.nn.functional.conv2d(down.permute(1, 0, 2, 3), up).permute(1, 0, 2, 3)
        else:
            dw = (up.reshape(up.shape[0], -1) @ down.reshape(rank, -1)).reshape(w.shape)
    elif "hada_w1_a" in t:
        rank = t["hada_w1_b"].shape[0]
        dw = ((t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"])).reshape(w.shape)
    else:
        rank = t["lokr_w2_b"].shape[0]
        w1 = t["lokr_w1"]
        c, d = w.shape[0] // w1.shape[0], w.shape[1] // w1.shape[1]
        w2 = (t["lokr_w2_a"] @ t["lokr_w2_b"]).reshape((c, d) + tuple(w.shape[2:]))
        if w.dim() == 4:
            w1 = w1[:, :, None, None]
        dw = torch.kron(w1, w2)
    scale = t["alpha"].item() / rank if "alpha" in t else 1.0
    return dw, scale


def dora(w, update, dora_scale):
    wc = w + update
    if dora_scale.shape[0] == w.shape[0] and dora_scale.shape[1] == 1 and w.shape[0] > 1:
        norm = wc.reshape(w.shape[0], -1).norm(dim=1).reshape((w.shape[0],) + (1,) * (w.dim() - 1))
    else:
        norm = wc.transpose(0, 1).reshape(w.shape[1], -1).norm(dim=1)
        norm = norm.reshape((w.shape[1],) + (1,) * (w.dim() - 1)).transpose(0, 1)
    return wc * (dora_scale / norm) - w


@torch.no_grad()
def merge(models, sd, te_mult, unet_mult):
    layers = lookup_layers(models)
    for module, t in group_modules(sd).items():
        part, mod = layers[module]
        m = te_mult if part == "te" else unet_mult
        if m == 0:
            continue
        w = mod.weight.data
        dw, scale = module_delta(t, w)
        update = dw * scale
        if "dora_scale" in t:
            update = dora(w, update, t["dora_scale"])
        w += m * update


# ----------------------------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------------------------

METADATA = {"ss_network_module": "networks.lora", "ss_network_dim": str(RANK), "ss_network_alpha": "2.0",
            "ss_network_args": json.dumps({"conv_dim": RANK, "conv_alpha": 2.0}), "ss_base_model_version": "sd_v1",
            "ss_output_name": "tinyface", "ss_epoch": "3", "ss_steps": "120", "ss_num_epochs": "10",
            "ss_resolution": "(512, 512)", "ss_optimizer": "torch.optim.adamw.AdamW",
            "ss_learning_rate": "0.0001", "ss_unet_lr": "0.0001", "ss_text_encoder_lr": "5e-05",
            "ss_tag_frequency": json.dumps({"10_sks woman": {"sks woman": 20, "smiling": 7, "portrait": 12}}),
            "ss_dataset_dirs": json.dumps({"10_sks woman": {"n_repeats": 10, "img_count": 20}})}


def make_files(models):
    gen = torch.Generator().manual_seed(SEED)
    unet_locon = unet_targets(models.unet, locon=True)
    unet_attn = unet_targets(models.unet, locon=False)
    te = te_targets(models.te)
    files = {}  # name -> (tensors as float32 holding exactly the stored values, metadata, stored dtype)
    kohya = {**make_kohya(gen, unet_locon, "unet", 0.25, 2.0), **make_kohya(gen, te, "te", 0.25, 2.0)}
    files["kohya_locon.safetensors"] = (kohya, METADATA, torch.float32)
    ldm = {}
    for key, value in kohya.items():
        module, _, suffix = key.partition(".")
        name = next((n for n in unet_locon if kohya_key("unet", n) == module), None)
        ldm[(kohya_key("unet", ldm_unet_name(name)) if name else module) + "." + suffix] = value
    files["kohya_ldm_names.safetensors"] = (ldm, {"ss_network_module": "networks.lora"}, torch.float16)
    f16 = {**make_kohya(gen, unet_attn, "unet", 0.3, 4.0), **make_kohya(gen, te, "te", 0.3, 4.0)}
    files["kohya_f16.safetensors"] = (f16, {}, torch.float16)
    files["loha.safetensors"] = ({**make_loha(gen, unet_locon, "unet", 0.2, 2.0), **make_loha(gen, te, "te", 0.2, 2.0)},
                                 {"ss_network_module": "lycoris.kohya", "ss_network_args": '{"algo": "loha"}'},
                                 torch.float16)
    files["lokr.safetensors"] = ({**make_lokr(gen, unet_locon, "unet", 0.2, 2.0), **make_lokr(gen, te, "te", 0.2, 2.0)},
                                 {"ss_network_module": "lycoris.kohya", "ss_network_args": '{"algo": "lokr"}'},
                                 torch.float16)
    files["peft.safetensors"] = ({**make_peft(gen, unet_attn, "unet", 0.3), **make_peft(gen, te, "te", 0.3)}, {},
                                 torch.float16)
    dora_sd = add_dora(gen, {**make_kohya(gen, unet_attn, "unet", 0.2, 2.0), **make_kohya(gen, te, "te", 0.2, 2.0)})
    dora_sd = {k: v.to(torch.bfloat16).to(torch.float32) for k, v in dora_sd.items()}  # stored as bf16
    files["dora.safetensors"] = (dora_sd, {"ss_network_module": "lycoris.kohya"}, torch.bfloat16)
    return files


CASES = [
    # name, [(file, te, unet)]
    ("kohya_locon_0.6", [("kohya_locon.safetensors", 0.6, 0.6)]),
    ("kohya_split_te1_unet0.3", [("kohya_locon.safetensors", 1.0, 0.3)]),
    ("kohya_f16_0.9", [("kohya_f16.safetensors", 0.9, 0.9)]),
    ("loha_0.8", [("loha.safetensors", 0.8, 0.8)]),
    ("lokr_1", [("lokr.safetensors", 1.0, 1.0)]),
    ("peft_0.7", [("peft.safetensors", 0.7, 0.7)]),
    ("dora_1", [("dora.safetensors", 1.0, 1.0)]),
    ("two_loras", [("kohya_locon.safetensors", 0.5, 0.5), ("loha.safetensors", 0.8, 0.8)]),
]


def diffusers_second_opinion(models, tokenizer_dir, path, scale):
    """Fuses `path` with diffusers' StableDiffusionPipeline.load_lora_weights + fuse_lora(lora_scale=scale)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    pipe = StableDiffusionPipeline(vae=models.vae, text_encoder=models.te, tokenizer=CLIPTokenizer.from_pretrained(
        tokenizer_dir), unet=models.unet, scheduler=EulerDiscreteScheduler(), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.load_lora_weights(path, adapter_name="kohya")
    pipe.fuse_lora(lora_scale=scale, components=["unet", "text_encoder"])
    pipe.unload_lora_weights()  # keeps the fused weights, drops the PEFT layers


def addnet_hash(path):
    """A1111 modules/hashes.py addnet_hash_safetensors: sha256 of the bytes after the 8-byte length + JSON header."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        f.seek(8 + n)
        return hashlib.sha256(f.read()).hexdigest()


def pixels_diff(a, b):
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return d.max(), d.mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tests/fixtures/tiny")
    ap.add_argument("--tokenizer", default="/work/shared/fixtures/sd15-tiny/diffusers/tokenizer")
    ap.add_argument("--out", default="tests/fixtures/lora")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    os.makedirs(args.out, exist_ok=True)
    models = R.Models(args.model, args.tokenizer)
    base_state = (copy.deepcopy(models.unet.state_dict()), copy.deepcopy(models.te.state_dict()))

    def restore():
        models.unet.load_state_dict(base_state[0])
        models.te.load_state_dict(base_state[1])

    base_px = R.render(models, BASE_CASE)[0][0]
    committed_base = np.asarray(Image.open(os.path.join(args.model, "ref-euler.png")).convert("RGB"))
    assert pixels_diff(base_px, committed_base)[0] == 0, "base render differs from tests/fixtures/tiny/ref-euler.png"

    files = make_files(models)
    for name, (sd, metadata, dtype) in files.items():
        stored = {k: v.to(dtype).contiguous() for k, v in sd.items()}
        assert all(torch.equal(stored[k].to(torch.float32), v) for k, v in sd.items()), f"{name}: lossy dtype"
        save_file(stored, os.path.join(args.out, name), metadata=metadata)
        print(f"{name}: {len(sd)} tensors, {os.path.getsize(os.path.join(args.out, name))} bytes")

    out_cases = []
    for case_name, loras in CASES:
        restore()
        for file, te_mult, unet_mult in loras:
            merge(models, files[file][0], te_mult, unet_mult)
        px = R.render(models, BASE_CASE)[0][0]
        image = f"ref-{case_name}.png"
        Image.fromarray(px, "RGB").save(os.path.join(args.out, image))
        d_max, d_mean = pixels_diff(px, base_px)
        print(f"{case_name}: differs from the base render by max {d_max}, mean {d_mean:.1f}")
        assert d_mean > 2.0, f"{case_name}: LoRA effect too small to test anything"
        out_cases.append({"name": case_name, "loras": [{"file": f, "te": t, "unet": u} for f, t, u in loras],
                          "image": image, **BASE_CASE})

    # The LDM-named copy must give exactly the kohya_locon render.
    restore()
    merge(models, files["kohya_ldm_names.safetensors"][0], 0.6, 0.6)
    ldm_px = R.render(models, BASE_CASE)[0][0]
    ref = np.asarray(Image.open(os.path.join(args.out, "ref-kohya_locon_0.6.png")))
    assert pixels_diff(ldm_px, ref)[0] == 0, "LDM-named kohya file renders differently"

    try:
        restore()
        diffusers_second_opinion(models, args.tokenizer, os.path.join(args.out, "kohya_locon.safetensors"), 0.6)
        px = R.render(models, BASE_CASE)[0][0]
        d_max, d_mean = pixels_diff(px, ref)
        print(f"diffusers load_lora_weights + fuse_lora(0.6) vs our merge: max {d_max}, mean {d_mean:.4f}")
        assert d_max <= 2 and d_mean <= 0.5, "diffusers disagrees with the A1111-style merge"
        Image.fromarray(px, "RGB").save(os.path.join(args.out, "ref-diffusers_kohya_locon_0.6.png"))
        out_cases.append({"name": "diffusers_kohya_locon_0.6", "loras": [
            {"file": "kohya_locon.safetensors", "te": 0.6, "unet": 0.6}],
            "image": "ref-diffusers_kohya_locon_0.6.png", "renderer": "diffusers load_lora_weights + fuse_lora",
            **BASE_CASE})
    except ImportError as e:
        print(f"skipping the diffusers second opinion (needs peft): {e}")
    restore()

    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump(out_cases, f, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "hashes.json"), "w") as f:
        json.dump({name: addnet_hash(os.path.join(args.out, name)) for name in files}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
