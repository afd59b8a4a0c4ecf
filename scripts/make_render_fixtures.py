"""Render reference images of the tiny model the way AUTOMATIC1111 1.10 does ("RNG source: CPU").

Package versions used to produce the committed files:
    python 3 (/opt/ref/bin/python), torch 2.12.1 (CPU), diffusers 0.42.1, transformers 5.24.0,
    k-diffusion 0.1.1.post1, safetensors, numpy 1.26, Pillow 13.0.0

Rerun (from the repository root, after scripts/make_tiny_model.py):
    /opt/ref/bin/python scripts/make_render_fixtures.py
        [--model tests/fixtures/tiny] [--tokenizer /work/shared/fixtures/sd15-tiny/diffusers/tokenizer]
        [--shared /work/shared/fixtures/sd15-tiny]   (only for the self-check below; skipped if absent)

Writes tests/fixtures/tiny/cases.json, ref-<case>[-<i>].png and trace-<case>.safetensors.

Pipeline (re-implemented here from A1111 1.10 sources; diffusers modules + k-diffusion samplers):
  * prompt parsing: modules/prompt_parser.py parse_prompt_attention (1.10 regex, BREAK);
  * chunking: modules/sd_hijack_clip.py tokenize_line (75-token chunks, comma backtracking 20, BOS/EOS, EOS padding),
    each 77-token chunk encoded separately, concatenated on the token axis;
  * clip skip: hidden_states[-N] then final_layer_norm (N > 1), else last_hidden_state;
  * emphasis "Original" (modules/sd_emphasis.py): z *= multipliers; z *= mean(z_before) / mean(z_after) per chunk;
  * seeds: image i uses seed + i and its own torch CPU generator; k-diffusion's randn_like is hijacked so every
    later draw is one randn((4, H/8, W/8)) per image from that image's generator (modules/rng.py ImageRNG);
  * CFG (modules/sd_samplers_cfg_denoiser.py): batch [cond x B, uncond x B] in one model call when the token
    lengths agree, else cond and uncond in separate calls; out = u + (c - u) * cfg;
  * k-diffusion samplers (CompVisDenoiser, fractional t, c_in = 1/sqrt(sigma^2+1)), initial x = noise * sigmas[0];
    euler / euler_a (eta 1, s_noise 1) / dpmpp_2m with the uniform schedule get_sigmas(n), dpmpp_2m_karras with
    get_sigmas_karras(n, sigma_0, sigma_999, rho 7);
  * ddim: A1111's own implementation (modules/sd_samplers_timesteps.py, sd_samplers_timesteps_impl.py), see ddim();
  * decode: A1111 decode_first_stage multiplies by 1/0.18215 (LDM), then trunc(255 * clamp((x+1)/2, 0, 1)).
"""

import argparse
import json
import math
import os
import re

import k_diffusion
import k_diffusion.external
import k_diffusion.sampling
import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer

SCALE_FACTOR = 0.18215
CHUNK_LENGTH = 75
COMMA_PADDING_BACKTRACK = 20

# ----------------------------------------------------------------------------------------------------------------
# A1111 prompt parsing (modules/prompt_parser.py, v1.10)
# ----------------------------------------------------------------------------------------------------------------

RE_ATTENTION = re.compile(
    r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""",
    re.X,
)
RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text):
    res = []
    round_brackets = []
    square_brackets = []
    round_mult = 1.1
    square_mult = 1 / 1.1

    def multiply_range(start, mult):
        for p in range(start, len(res)):
            res[p][1] *= mult

    for m in RE_ATTENTION.finditer(text):
        tok = m.group(0)
        weight = m.group(1)
        if tok.startswith("\\"):
            res.append([tok[1:], 1.0])
        elif tok == "(":
            round_brackets.append(len(res))
        elif tok == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif tok == ")" and round_brackets:
            multiply_range(round_brackets.pop(), round_mult)
        elif tok == "]" and square_brackets:
            multiply_range(square_brackets.pop(), square_mult)
        else:
            for i, part in enumerate(re.split(RE_BREAK, tok)):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])
    for pos in round_brackets:
        multiply_range(pos, round_mult)
    for pos in square_brackets:
        multiply_range(pos, square_mult)
    if not res:
        res = [["", 1.0]]
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return res


def self_test_parser():
    got = parse_prompt_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).")
    want = [["a ", 1.0], ["house", 1.5730000000000004], [" ", 1.1], ["on", 1.0], [" a ", 1.1], ["hill", 0.55],
            [", sun, ", 1.1], ["sky", 1.4641000000000006], [".", 1.1]]
    assert got == want, got
    assert parse_prompt_attention("(unbalanced") == [["unbalanced", 1.1]]
    assert parse_prompt_attention(r"\(literal\]") == [["(literal]", 1.0]]
    assert parse_prompt_attention("(word: 1.4 )") == [["word", 1.4]]
    assert parse_prompt_attention("a BREAK b") == [["a", 1.0], ["BREAK", -1], ["b", 1.0]]


# ----------------------------------------------------------------------------------------------------------------
# A1111 chunking and text encoding (modules/sd_hijack_clip.py, modules/sd_emphasis.py)
# ----------------------------------------------------------------------------------------------------------------


class TextEncoder:
    def __init__(self, tokenizer, text_model, clip_skip):
        self.tok = tokenizer
        self.te = text_model
        self.clip_skip = clip_skip
        self.id_start = tokenizer.bos_token_id
        self.id_end = tokenizer.eos_token_id
        self.comma_token = tokenizer.get_vocab().get(",</w>")
        assert (self.id_start, self.id_end) == (49406, 49407) and self.comma_token is not None

    def tokenize_line(self, line):
        """Returns a list of (tokens[77], multipliers[77]) chunks."""
        parsed = parse_prompt_attention(line)
        tokenized = self.tok([t for t, _ in parsed], truncation=False, add_special_tokens=False)["input_ids"]
        chunks = []
        cur_tokens, cur_mults = [], []
        last_comma = -1

        def next_chunk():
            nonlocal cur_tokens, cur_mults, last_comma
            to_add = CHUNK_LENGTH - len(cur_tokens)
            if to_add > 0:
                cur_tokens += [self.id_end] * to_add
                cur_mults += [1.0] * to_add
            chunks.append(([self.id_start] + cur_tokens + [self.id_end], [1.0] + cur_mults + [1.0]))
            cur_tokens, cur_mults = [], []
            last_comma = -1

        for tokens, (text, weight) in zip(tokenized, parsed):
            if text == "BREAK" and weight == -1:
                next_chunk()
                continue
            position = 0
            while position < len(tokens):
                token = tokens[position]
                if token == self.comma_token:
                    last_comma = len(cur_tokens)
                elif (COMMA_PADDING_BACKTRACK != 0 and len(cur_tokens) == CHUNK_LENGTH and last_comma != -1
                      and len(cur_tokens) - last_comma <= COMMA_PADDING_BACKTRACK):
                    brk = last_comma + 1
                    reloc_tokens, reloc_mults = cur_tokens[brk:], cur_mults[brk:]
                    cur_tokens, cur_mults = cur_tokens[:brk], cur_mults[:brk]
                    next_chunk()
                    cur_tokens, cur_mults = reloc_tokens, reloc_mults
                if len(cur_tokens) == CHUNK_LENGTH:
                    next_chunk()
                cur_tokens.append(token)
                cur_mults.append(weight)
                position += 1
        if cur_tokens or not chunks:
            next_chunk()
        return chunks

    @torch.no_grad()
    def encode_chunk(self, tokens, mults):
        ids = torch.asarray([tokens])
        out = self.te(input_ids=ids, output_hidden_states=True)
        assert len(out.hidden_states) == self.te.config.num_hidden_layers + 1
        if self.clip_skip > 1:
            text_model = getattr(self.te, "text_model", self.te)  # transformers 5 flattened CLIPTextModel
            z = text_model.final_layer_norm(out.hidden_states[-self.clip_skip])
        else:
            z = out.last_hidden_state
        m = torch.asarray([mults])  # float32, like A1111's torch.asarray(batch_multipliers)
        original_mean = z.mean()
        z = z * m.reshape(m.shape + (1,)).expand(z.shape)
        new_mean = z.mean()
        return z * (original_mean / new_mean)

    def encode(self, line):
        chunks = self.tokenize_line(line)
        z = torch.hstack([self.encode_chunk(t, m) for t, m in chunks])
        tokens = torch.tensor([t for t, _ in chunks], dtype=torch.int64)
        mults = torch.tensor([m for _, m in chunks], dtype=torch.float32)
        return z, tokens, mults


# ----------------------------------------------------------------------------------------------------------------
# Model wrapper, RNG hijack, CFG denoiser
# ----------------------------------------------------------------------------------------------------------------


def ldm_alphas_cumprod():
    """LDM register_schedule: float64 linear-in-sqrt betas, numpy cumprod, stored as a float32 buffer."""
    betas = (torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2).numpy()
    return torch.tensor(np.cumprod(1.0 - betas, axis=0), dtype=torch.float32)


class LdmLike(torch.nn.Module):
    """What k-diffusion's CompVisDenoiser and A1111's timestep denoiser need: alphas_cumprod and apply_model."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet
        self.register_buffer("alphas_cumprod", ldm_alphas_cumprod())
        self.calls = 0

    def apply_model(self, x, t, cond):
        self.calls += 1
        return self.unet(x, t, encoder_hidden_states=cond).sample


class ImageRNG:
    """modules/rng.py ImageRNG with randn_source CPU: one torch CPU generator per image."""

    def __init__(self, shape, seeds, dtype=torch.float32):
        self.shape = shape
        self.dtype = dtype
        self.generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        self.draws = []

    def next(self):
        x = torch.stack([torch.randn(self.shape, generator=g) for g in self.generators]).to(self.dtype)
        self.draws.append(x)
        return x


class TorchHijack:
    """k_diffusion.sampling.torch replacement: randn_like draws from the image RNG (A1111 sd_samplers_common)."""

    def __init__(self, rng):
        self.rng = rng

    def __getattr__(self, item):
        if item == "randn_like":
            return self.randn_like
        return getattr(torch, item)

    def randn_like(self, x):
        return self.rng.next()


class CFGDenoiser(torch.nn.Module):
    def __init__(self, inner, cond, uncond, cfg):
        super().__init__()
        self.inner, self.cond, self.uncond, self.cfg = inner, cond, uncond, cfg

    def forward(self, x, sigma):
        b = x.shape[0]
        x_in = torch.cat([x, x])
        sigma_in = torch.cat([sigma, sigma])
        if self.cond.shape[1] == self.uncond.shape[1]:
            x_out = self.inner(x_in, sigma_in, cond=torch.cat([self.cond, self.uncond]))
        else:
            x_out = torch.zeros_like(x_in)
            x_out[:b] = self.inner(x_in[:b], sigma_in[:b], cond=self.cond)
            x_out[-b:] = self.inner(x_in[-b:], sigma_in[-b:], cond=self.uncond)
        denoised_uncond = x_out[-b:]
        denoised = torch.clone(denoised_uncond)
        for i in range(b):
            denoised[i] += (x_out[i] - denoised_uncond[i]) * (1.0 * self.cfg)
        return denoised


class TimestepsDenoiser(torch.nn.Module):
    """A1111 CompVisTimestepsDenoiser: eps = apply_model(x, t), no input scaling."""

    def __init__(self, ldm):
        super().__init__()
        self.inner_model = ldm

    def forward(self, x, t, cond):
        return self.inner_model.apply_model(x, t, cond=cond)


class KDenoiser(k_diffusion.external.CompVisDenoiser):
    def __init__(self, ldm):
        super().__init__(ldm, quantize=False)

    def forward(self, x, sigma, cond):
        return super().forward(x, sigma, cond=cond)


# ----------------------------------------------------------------------------------------------------------------
# A1111 DDIM (modules/sd_samplers_timesteps.py get_timesteps, sd_samplers_timesteps_impl.py ddim), eta = 0
# ----------------------------------------------------------------------------------------------------------------


def a1111_ddim_timesteps(steps):
    return torch.clip(torch.asarray(list(range(0, 1000, 1000 // steps))) + 1, 0, 999)


@torch.no_grad()
def ddim(model, x, timesteps, alphas_cumprod, callback, eta=0.0):
    alphas = alphas_cumprod[timesteps]
    alphas_prev = alphas_cumprod[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    sqrt_one_minus_alphas = torch.sqrt(1 - alphas)
    sigmas = eta * np.sqrt((1 - alphas_prev.numpy()) / (1 - alphas.numpy()) * (1 - alphas.numpy() / alphas_prev.numpy()))
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = model(x, timesteps[index].item() * s_in)
        a_t = alphas[index].item() * s_in
        a_prev = alphas_prev[index].item() * s_in
        sigma_t = sigmas[index].item() * s_in
        sqrt_one_minus_at = sqrt_one_minus_alphas[index].item() * s_in
        pred_x0 = (x - sqrt_one_minus_at * e_t) / a_t.sqrt()
        dir_xt = (1.0 - a_prev - sigma_t**2).sqrt() * e_t
        noise = sigma_t * k_diffusion.sampling.torch.randn_like(x)  # drawn (and multiplied by 0) as A1111 does
        callback({"x": x, "i": i, "denoised": pred_x0})
        x = a_prev.sqrt() * pred_x0 + dir_xt + noise
    return x, alphas, alphas_prev


# ----------------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------------


class Models:
    def __init__(self, model_dir, tokenizer_dir):
        d = os.path.join(model_dir, "diffusers")
        self.unet = UNet2DConditionModel.from_pretrained(d, subfolder="unet", torch_dtype=torch.float32).eval()
        self.vae = AutoencoderKL.from_pretrained(d, subfolder="vae", torch_dtype=torch.float32).eval()
        self.te = CLIPTextModel.from_pretrained(d, subfolder="text_encoder", torch_dtype=torch.float32).eval()
        self.tok = CLIPTokenizer.from_pretrained(tokenizer_dir)
        self.ldm = LdmLike(self.unet)
        self.dtype = torch.float32

    def to_float64(self):
        """Same weights and schedule values in float64: measures how sensitive each case is to rounding."""
        for mod in (self.unet, self.vae, self.te, self.ldm):
            mod.double()
        self.dtype = torch.float64
        return self


def get_sigmas(kden, sampler, steps):
    if sampler in ("euler", "euler_a", "dpmpp_2m"):
        return kden.get_sigmas(steps)
    if sampler == "dpmpp_2m_karras":
        return k_diffusion.sampling.get_sigmas_karras(n=steps, sigma_min=kden.sigmas[0].item(),
                                                      sigma_max=kden.sigmas[-1].item(), device="cpu")
    raise ValueError(sampler)


@torch.no_grad()
def render(models, case, decode_divide=False):
    b, w, h = case["batch"], case["width"], case["height"]
    enc = TextEncoder(models.tok, models.te, case["clip_skip"])
    cond1, cond_tokens, cond_mults = enc.encode(case["prompt"])
    uncond1, uncond_tokens, uncond_mults = enc.encode(case["negative"])
    cond = cond1.repeat(b, 1, 1)
    uncond = uncond1.repeat(b, 1, 1)

    rng = ImageRNG((4, h // 8, w // 8), [case["seed"] + i for i in range(b)], models.dtype)
    k_diffusion.sampling.torch = TorchHijack(rng)
    noise = rng.next()
    xs, denoised = [], []

    def callback(d):
        xs.append(d["x"].clone())
        denoised.append(d["denoised"].clone())

    trace = {}
    models.ldm.calls = 0
    sampler = case["sampler"]
    if sampler == "ddim":
        cfg_model = CFGDenoiser(TimestepsDenoiser(models.ldm), cond, uncond, case["cfg"])
        timesteps = a1111_ddim_timesteps(case["steps"])
        latent, alphas, alphas_prev = ddim(cfg_model, noise, timesteps, models.ldm.alphas_cumprod, callback)
        trace.update(timesteps=timesteps.to(torch.int64), alphas=alphas, alphas_prev=alphas_prev.to(torch.float32))
    else:
        kden = KDenoiser(models.ldm)
        cfg_model = CFGDenoiser(kden, cond, uncond, case["cfg"])
        sigmas = get_sigmas(kden, sampler, case["steps"])
        x = noise * sigmas[0]
        fn = {
            "euler": lambda: k_diffusion.sampling.sample_euler(cfg_model, x, sigmas, callback=callback, disable=True,
                                                               s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"),
                                                               s_noise=1.0),
            "euler_a": lambda: k_diffusion.sampling.sample_euler_ancestral(cfg_model, x, sigmas, callback=callback,
                                                                           disable=True, eta=1.0, s_noise=1.0),
            "dpmpp_2m": lambda: k_diffusion.sampling.sample_dpmpp_2m(cfg_model, x, sigmas, callback=callback,
                                                                     disable=True),
        }[sampler.replace("_karras", "")]
        latent = fn()
        trace["sigmas"] = sigmas
    k_diffusion.sampling.torch = torch

    if decode_divide:
        img = models.vae.decode(latent / SCALE_FACTOR).sample
    else:
        img = models.vae.decode(1.0 / SCALE_FACTOR * latent).sample
    img = torch.clamp((img + 1.0) / 2.0, min=0.0, max=1.0)
    pixels = [(255.0 * np.moveaxis(im.numpy(), 0, 2)).astype(np.uint8) for im in img]

    trace.update(
        cond=cond, uncond=uncond, cond_tokens=cond_tokens, cond_multipliers=cond_mults, uncond_tokens=uncond_tokens,
        uncond_multipliers=uncond_mults, noise=noise, x=torch.stack(xs), denoised=torch.stack(denoised),
        latent=latent,
    )
    if sampler == "euler_a":
        # draws 2.. of the image RNG: the ancestral noise of steps 0..n-2 (no draw on the last step)
        trace["step_noise"] = torch.stack(rng.draws[1:])
    info = {"unet_calls": models.ldm.calls, "rng_draws": len(rng.draws)}
    return pixels, {k: v.contiguous() for k, v in trace.items()}, info


# ----------------------------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------------------------

BASE_PROMPT = "a photo of sks woman, smiling, portrait"
BASE_NEG = "blurry, lowres"
LONG_PROMPT = (
    "a highly detailed photo of sks woman standing in a sunny meadow, smiling, portrait, soft light, "
    "golden hour, bokeh, sharp focus, intricate details, natural skin texture, freckles, long wavy hair, "
    "green eyes, summer dress, flowers in the background, blue sky with small white clouds, "
    "professional photography, eighty five millimeter lens, shallow depth of field, award winning, "
    "trending on the internet, masterpiece, best quality, very aesthetic, cinematic colour grading"
)


def default_cases():
    # Sizes are multiples of 64 px: the deepest UNet level then has >= 2 latent pixels per GroupNorm group
    # (32 groups of 1 channel here; a 64x64 image would give 1x1 there, where torch's group_norm refuses batch 1).
    c = dict(prompt=BASE_PROMPT, negative=BASE_NEG, seed=42, steps=8, cfg=7.0, width=128, height=64, batch=1,
             clip_skip=1)
    return [
        {**c, "name": "euler", "sampler": "euler"},
        {**c, "name": "euler_a", "sampler": "euler_a", "seed": 1234},
        {**c, "name": "dpmpp_2m_64x128", "sampler": "dpmpp_2m", "seed": 7, "width": 64, "height": 128},
        {**c, "name": "dpmpp_2m_karras_128x128", "sampler": "dpmpp_2m_karras", "seed": 99, "steps": 10, "cfg": 4.5,
         "width": 128, "height": 128},
        {**c, "name": "ddim", "sampler": "ddim", "seed": 5},
        {**c, "name": "ddim_6steps_64x128", "sampler": "ddim", "seed": 6, "steps": 6, "width": 64, "height": 128},
        {**c, "name": "long_prompt", "sampler": "euler", "seed": 11, "prompt": LONG_PROMPT},
        {**c, "name": "emphasis", "sampler": "dpmpp_2m", "seed": 13,
         "prompt": "a (photo:1.4) of [sks] woman, ((smiling)), portrait", "negative": "(blurry:0.8), [[lowres]]"},
        {**c, "name": "break", "sampler": "euler", "seed": 17, "prompt": "a photo of sks woman BREAK smiling, portrait"},
        {**c, "name": "clip_skip2", "sampler": "euler", "seed": 19, "clip_skip": 2},
        {**c, "name": "batch2_euler_a", "sampler": "euler_a", "seed": 21, "batch": 2, "negative": ""},
    ]


def image_names(case):
    if case["batch"] == 1:
        return [f"ref-{case['name']}.png"]
    return [f"ref-{case['name']}-{i}.png" for i in range(case["batch"])]


def check_case_structure(models, case, trace, info):
    """Assertions that the case exercises what its name says."""
    n_cond_chunks = trace["cond_tokens"].shape[0]
    if case["name"] == "long_prompt":
        assert n_cond_chunks == 2 and trace["uncond_tokens"].shape[0] == 1, "long prompt must give 2 vs 1 chunks"
        first = trace["cond_tokens"][0].tolist()
        content = first[1:first.index(49407, 1)]
        assert len(content) < CHUNK_LENGTH, "comma backtracking did not trigger"
        assert content[-1] == models.tok.get_vocab()[",</w>"]
    if case["name"] == "break":
        assert n_cond_chunks == 2
    if case["name"] == "emphasis":
        assert set(trace["cond_multipliers"].flatten().tolist()) - {1.0}, "no emphasis weights"
    if case["sampler"] == "ddim":
        n_ts = len(trace["timesteps"])
        assert info["unet_calls"] == n_ts - 1  # batched cond/uncond: one call per step
    if case["name"] == "long_prompt":
        assert info["unet_calls"] == 2 * case["steps"]  # cond and uncond in separate calls


def verify_shared(shared_dir, tokenizer_dir):
    """Reproduce the shared fixture's ref-euler.png with this script's pipeline."""
    cases = json.load(open(os.path.join(shared_dir, "cases.json")))
    sc = next(c for c in cases if c["name"] == "euler")
    case = dict(name="shared-euler", prompt=sc["prompt"], negative=sc["negative"], seed=sc["seed"], steps=sc["steps"],
                cfg=sc["cfg"], sampler=sc["sampler"], width=sc["w"], height=sc["h"], batch=1, clip_skip=1)
    models = Models(shared_dir, tokenizer_dir)
    ref = np.asarray(Image.open(os.path.join(shared_dir, sc["image"])).convert("RGB")).astype(np.int32)
    for divide in (True, False):
        pixels, _, _ = render(models, case, decode_divide=divide)
        diff = np.abs(pixels[0].astype(np.int32) - ref)
        how = "latent / 0.18215" if divide else "(1/0.18215) * latent"
        print(f"shared ref-euler.png ({sc['w']}x{sc['h']}) decode {how}: max |diff| {diff.max()}, "
              f"pixels differing {np.count_nonzero(diff)} of {diff.size}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tests/fixtures/tiny")
    ap.add_argument("--tokenizer", default="/work/shared/fixtures/sd15-tiny/diffusers/tokenizer")
    ap.add_argument("--shared", default="/work/shared/fixtures/sd15-tiny")
    ap.add_argument("--f64-check", action="store_true", help="also render every case in float64 and compare")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    self_test_parser()

    if os.path.isdir(args.shared):
        verify_shared(args.shared, args.tokenizer)
    else:
        print(f"skipping shared-fixture self-check: {args.shared} not found")

    models = Models(args.model, args.tokenizer)
    models64 = Models(args.model, args.tokenizer).to_float64() if args.f64_check else None
    for old in os.listdir(args.model):  # drop outputs of earlier case lists
        if re.fullmatch(r"(ref-.*\.png|trace-.*\.safetensors)", old):
            os.remove(os.path.join(args.model, old))
    out_cases = []
    for case in default_cases():
        pixels, trace, info = render(models, case)
        check_case_structure(models, case, trace, info)
        names = image_names(case)
        for px, name in zip(pixels, names):
            Image.fromarray(px, "RGB").save(os.path.join(args.model, name))
        trace_name = f"trace-{case['name']}.safetensors"
        save_file(trace, os.path.join(args.model, trace_name))
        flat = np.concatenate([p.reshape(-1) for p in pixels]).astype(np.float64)
        print(f"{case['name']}: chunks cond {trace['cond_tokens'].shape[0]} uncond {trace['uncond_tokens'].shape[0]}, "
              f"unet calls {info['unet_calls']}, rng draws {info['rng_draws']}, latent std {trace['latent'].std():.3f}, "
              f"pixel mean {flat.mean():.1f} std {flat.std():.1f}, clipped {np.mean((flat == 0) | (flat == 255)):.3f}")
        if models64 is not None:
            px64, _, _ = render(models64, case)
            d = np.concatenate([np.abs(a.astype(np.int32) - b_.astype(np.int32)).reshape(-1)
                                for a, b_ in zip(pixels, px64)])
            print(f"  float64 render vs float32: max |diff| {d.max()}, {np.count_nonzero(d)} of {d.size} values differ")
        out_cases.append({**case, "images": names, "trace": trace_name})
    with open(os.path.join(args.model, "cases.json"), "w") as f:
        json.dump(out_cases, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
