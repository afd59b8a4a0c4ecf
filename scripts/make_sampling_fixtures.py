#!/opt/ref/bin/python
"""Reference data for the sampling module's tests (tests/fixtures/sampling/).

Run with the reference stack: /opt/ref/bin/python scripts/make_sampling_fixtures.py
Versions used: Python 3.11.7, torch 2.12.1+cu130 (CPU, capability AVX512 -> AVX2 randn kernel),
k-diffusion 0.1.1.post1, numpy 1.26.4, safetensors 0.8.0.

Writes:
- randn.safetensors + randn.json: torch.randn on CPU generators (several seeds, call sequences mixing sizes < 16,
  = 16, not multiples of 16, and 4x64x64), consecutive calls on one generator.
- torch-cpu-randn.json: copy of /work/shared/fixtures/torch-cpu-randn.json (vectors from another torch build).
- schedules.json: SD1.5 alphas_cumprod / sigmas, k-diffusion get_sigmas, get_sigmas_karras / exponential /
  polyexponential, sigma_to_t, t_to_sigma, A1111 DDIM timesteps, torch.linspace.
- infotext.json: A1111 1.10 infotexts built by create_infotext's formatting (modules/processing.py, quote() from
  modules/infotext_utils.py, both reproduced below) and the key/value pairs parse_generation_parameters' regex finds.
- samplers.json: k-diffusion sample_euler / sample_euler_ancestral / sample_dpmpp_2m and A1111 1.10's DDIM
  (re-implemented below from modules/sd_samplers_timesteps_impl.py) run on a toy analytic model, with A1111's
  per-image CPU generators (ImageRNG, RNG source CPU) for the initial noise and ancestral noise.
"""
import json
import math
import os
import re
import shutil

import k_diffusion as K
import numpy as np
import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "sampling")
SHARED_RANDN = "/work/shared/fixtures/torch-cpu-randn.json"


# ---------------------------------------------------------------- RNG
RANDN_SEEDS = [0, 42, 1234, 2**32 - 1, 2**63, 2**32 + 7]
RANDN_CALLS = [1, 7, 15, 16, 17, 100, 4 * 8 * 16, 4 * 64 * 64, 7, 3, 33, 5]


def make_randn():
    tensors = {}
    for seed in RANDN_SEEDS:
        g = torch.Generator("cpu").manual_seed(seed)
        draws = [torch.randn(n, generator=g) for n in RANDN_CALLS]
        tensors[f"seed_{seed}"] = torch.cat(draws).contiguous()
    save_file(tensors, os.path.join(OUT, "randn.safetensors"))
    meta = {"seeds": [str(s) for s in RANDN_SEEDS], "calls": RANDN_CALLS,
            "note": "key seed_<seed>: concatenation of torch.randn(n) for n in calls on one CPU generator"}
    with open(os.path.join(OUT, "randn.json"), "w") as f:
        json.dump(meta, f, indent=1)
    shutil.copyfile(SHARED_RANDN, os.path.join(OUT, "torch-cpu-randn.json"))


# ---------------------------------------------------------------- schedule
def sd15_alphas_cumprod():
    # LDM make_beta_schedule("linear") + register_schedule
    betas = (torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2).numpy()
    alphas_cumprod = np.cumprod(1. - betas, axis=0)
    return torch.tensor(alphas_cumprod, dtype=torch.float32)


class ToyLdm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("alphas_cumprod", sd15_alphas_cumprod())

    def apply_model(self, *args, **kwargs):
        raise NotImplementedError


DENOISER = K.external.CompVisDenoiser(ToyLdm())
SIGMA_MIN = DENOISER.sigmas[0].item()
SIGMA_MAX = DENOISER.sigmas[-1].item()
STEP_COUNTS = [1, 2, 3, 8, 10, 20, 25, 30, 50, 150]


def a1111_ddim_timesteps(steps):
    # modules/sd_samplers_timesteps.py CompVisSampler.get_timesteps
    return torch.clip(torch.asarray(list(range(0, 1000, 1000 // steps))) + 1, 0, 999)


def make_schedules():
    f32 = lambda t: [float(v) for v in t.tolist()]
    sigma_probe = [0.02, SIGMA_MIN, 0.03, 0.1, 0.5, 1.0, 2.5, 7.25, 14.0, SIGMA_MAX, 20.0]
    sigma_probe += f32(DENOISER.get_sigmas(20)[:-1]) + f32(K.sampling.get_sigmas_karras(20, SIGMA_MIN, SIGMA_MAX)[:-1])
    t_probe = [0.0, 0.5, 1.0, 1.25, 100.75, 500.5, 998.1, 998.9, 999.0]
    data = {
        "alphas_cumprod": f32(DENOISER.inner_model.alphas_cumprod),
        "sigmas": f32(DENOISER.sigmas),
        "sigma_min": SIGMA_MIN,
        "sigma_max": SIGMA_MAX,
        "get_sigmas": {str(n): f32(DENOISER.get_sigmas(n)) for n in STEP_COUNTS},
        "karras": {str(n): f32(K.sampling.get_sigmas_karras(n, SIGMA_MIN, SIGMA_MAX, rho=7.0)) for n in STEP_COUNTS},
        "exponential": {str(n): f32(K.sampling.get_sigmas_exponential(n, SIGMA_MIN, SIGMA_MAX)) for n in STEP_COUNTS},
        "polyexponential": {str(n): f32(K.sampling.get_sigmas_polyexponential(n, SIGMA_MIN, SIGMA_MAX, rho=1.0))
                            for n in STEP_COUNTS},
        "sigma_to_t": {"sigma": sigma_probe,
                       "t": f32(DENOISER.sigma_to_t(torch.tensor(sigma_probe, dtype=torch.float32)))},
        "t_to_sigma": {"t": t_probe, "sigma": f32(DENOISER.t_to_sigma(torch.tensor(t_probe)))},
        "ddim_timesteps": {str(n): a1111_ddim_timesteps(n).tolist() for n in [1, 3, 7, 10, 20, 30, 50, 999, 1000]},
        "linspace_f32": {f"{a}_{b}_{n}": f32(torch.linspace(a, b, n)) for a, b in [(999, 0), (0, 1), (2.5, -1.25)]
                         for n in [1, 2, 7, 20, 33, 100]},
        # f64 values as repr strings: serde_json's default float parsing is not correctly rounded
        "linspace_f64": {f"{a}_{b}_{n}": [repr(v) for v in torch.linspace(a, b, n, dtype=torch.float64).tolist()]
                         for a, b in [(0.00085 ** 0.5, 0.012 ** 0.5), (0, 1)] for n in [2, 20, 1000]},
    }
    with open(os.path.join(OUT, "schedules.json"), "w") as f:
        json.dump(data, f)


# ---------------------------------------------------------------- samplers
class ImageRNG:
    """A1111 modules/rng.py ImageRNG with randn_source == "CPU": one generator per image seed."""

    def __init__(self, shape, seeds):
        self.shape = shape
        self.generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]

    def next(self):
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators])


def toy_denoise(x, sigma):
    """Toy k-diffusion model: D(x, sigma) = 0.9 tanh(x / sqrt(sigma^2 + 1)) + 0.05 sin(sigma)."""
    c_in = (1 / (sigma ** 2 + 1) ** 0.5)[:, None, None, None]
    return torch.tanh(x * c_in) * 0.9 + (0.05 * torch.sin(sigma))[:, None, None, None]


def toy_eps(x, t):
    """Toy eps model for DDIM: eps(x, t) = tanh(x) (0.5 + t / 2000) - 0.1 x."""
    return torch.tanh(x) * (0.5 + t / 2000)[:, None, None, None] - 0.1 * x


def a1111_to_d(x, sigma, denoised):
    # modules/sd_schedulers.py replaces k_diffusion.sampling.to_d with this
    return (x - denoised) / sigma


K.sampling.to_d = a1111_to_d


def a1111_ddim(model, x, timesteps, alphas_cumprod, rng, eta):
    """modules/sd_samplers_timesteps_impl.py ddim (A1111 1.10), randn_like routed to the image RNG."""
    alphas = alphas_cumprod[timesteps]
    alphas_prev = alphas_cumprod[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    sqrt_one_minus_alphas = torch.sqrt(1 - alphas)
    sigmas = eta * np.sqrt((1 - alphas_prev.cpu().numpy()) / (1 - alphas.cpu()) * (1 - alphas.cpu() / alphas_prev.cpu().numpy()))
    s_in = x.new_ones((x.shape[0]))
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = model(x, timesteps[index].item() * s_in)
        a_t = alphas[index].item() * s_x
        a_prev = alphas_prev[index].item() * s_x
        sigma_t = sigmas[index].item() * s_x
        sqrt_one_minus_at = sqrt_one_minus_alphas[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_at * e_t) / a_t.sqrt()
        dir_xt = (1. - a_prev - sigma_t ** 2).sqrt() * e_t
        noise = sigma_t * rng.next()
        x = a_prev.sqrt() * pred_x0 + dir_xt + noise
    return x


SAMPLER_CASES = [
    # name, sampler, schedule, steps, seeds, latent shape, eta
    ("euler_uniform", "euler", "Automatic", 10, [42, 43], [4, 8, 8], None),
    ("euler_a_uniform", "euler_a", "Automatic", 10, [7, 8], [4, 8, 8], 1.0),
    ("euler_a_big_seed_odd_shape", "euler_a", "Uniform", 6, [2**32 - 1, 2**32], [4, 5, 7], 1.0),
    ("euler_a_karras", "euler_a", "Karras", 8, [123], [4, 8, 8], 1.0),
    ("dpmpp_2m_automatic", "dpmpp_2m", "Automatic", 10, [1, 2], [4, 8, 8], None),
    ("dpmpp_2m_uniform", "dpmpp_2m", "Uniform", 6, [99], [4, 8, 8], None),
    ("dpmpp_2m_karras_exponential", "dpmpp_2m_karras", "Exponential", 7, [5], [4, 8, 8], None),
    ("euler_exponential", "euler", "Exponential", 9, [11], [4, 8, 8], None),
    ("ddim", "ddim", "Automatic", 10, [3, 4], [4, 8, 8], 0.0),
    ("ddim_eta", "ddim", "Automatic", 7, [17], [4, 8, 8], 0.5),
]


def case_sigmas(sampler, schedule, steps):
    # A1111 1.10 get_sampler_and_scheduler + KDiffusionSampler.get_sigmas
    if sampler == "dpmpp_2m_karras":
        schedule = "Karras"
    elif schedule == "Automatic":
        schedule = "Karras" if sampler == "dpmpp_2m" else "Uniform"
    if schedule == "Uniform":
        return DENOISER.get_sigmas(steps)
    if schedule == "Karras":
        return K.sampling.get_sigmas_karras(n=steps, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, device="cpu")
    if schedule == "Exponential":
        return K.sampling.get_sigmas_exponential(n=steps, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, device="cpu")
    raise ValueError(schedule)


def run_case(sampler, schedule, steps, seeds, shape, eta):
    rng = ImageRNG(shape, seeds)
    noise = rng.next()
    calls = []

    def denoiser(x, sigma):
        calls.append(float(sigma[0]))
        return toy_denoise(x, sigma)

    if sampler == "ddim":
        timesteps = a1111_ddim_timesteps(steps)

        def eps_model(x, t):
            calls.append(float(t[0]))
            return toy_eps(x, t)

        out = a1111_ddim(eps_model, noise, timesteps, DENOISER.inner_model.alphas_cumprod, rng, eta)
        return out, calls, timesteps.tolist()
    sigmas = case_sigmas(sampler, schedule, steps)
    x = noise * sigmas[0]
    if sampler == "euler":
        out = K.sampling.sample_euler(denoiser, x, sigmas, disable=True)
    elif sampler == "euler_a":
        out = K.sampling.sample_euler_ancestral(denoiser, x, sigmas, disable=True, eta=eta, s_noise=1.0,
                                                noise_sampler=lambda s, s_next: rng.next())
    else:
        out = K.sampling.sample_dpmpp_2m(denoiser, x, sigmas, disable=True)
    return out, calls, [float(s) for s in sigmas.tolist()]


def make_samplers():
    cases = []
    for name, sampler, schedule, steps, seeds, shape, eta in SAMPLER_CASES:
        out, calls, schedule_values = run_case(sampler, schedule, steps, seeds, shape, eta)
        cases.append({"name": name, "sampler": sampler, "schedule": schedule, "steps": steps,
                      "seeds": [str(s) for s in seeds], "shape": shape, "eta": eta,
                      "model_calls": calls, "schedule_values": schedule_values,
                      "output": [float(v) for v in out.flatten().tolist()]})
    with open(os.path.join(OUT, "samplers.json"), "w") as f:
        json.dump({"toy_denoise": toy_denoise.__doc__, "toy_eps": toy_eps.__doc__, "cases": cases}, f)


# ---------------------------------------------------------------- infotext
def a1111_quote(text):
    # modules/infotext_utils.py quote
    if ',' not in str(text) and '\n' not in str(text) and ':' not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def a1111_unquote(text):
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def a1111_create_infotext(c):
    """modules/processing.py create_infotext (1.10) for the fields this engine writes."""
    cfg = int(c["cfg"]) if float(c["cfg"]).is_integer() else c["cfg"]  # gradio sends integral floats as ints
    remove_symbols = str.maketrans('', '', ":,")
    extra_generation_params = {}
    if c["lora_hashes"]:
        extra_generation_params["Lora hashes"] = ', '.join(f'{k.translate(remove_symbols)}: {v}' for k, v in c["lora_hashes"])
    extra_generation_params.update({k: v for k, v in c["extra"]})
    generation_params = {
        "Steps": c["steps"],
        "Sampler": c["sampler"],
        "Schedule type": c["schedule_type"],
        "CFG scale": cfg,
        "Seed": c["seed"],
        "Size": f"{c['width']}x{c['height']}",
        "Model hash": c["model_hash"],
        "Model": c["model_name"],
        "Clip skip": None if c["clip_skip"] <= 1 else c["clip_skip"],
        "RNG": c["rng"],
        **extra_generation_params,
        "Version": c["version"],
    }
    generation_params_text = ", ".join([k if k == v else f'{k}: {a1111_quote(v)}' for k, v in generation_params.items() if v is not None])
    negative_prompt_text = f"\nNegative prompt: {c['negative']}" if c["negative"] else ""
    return f"{c['prompt']}{negative_prompt_text}\n{generation_params_text}".strip()


INFOTEXT_CASES = [
    dict(prompt="a photo of sks woman, smiling, portrait", negative="blurry, lowres", steps=20, sampler="DPM++ 2M",
         schedule_type="Karras", cfg=7.0, seed=1, width=512, height=512, model_hash="6ce0161689",
         model_name="v1-5-pruned-emaonly", clip_skip=1, rng="CPU", lora_hashes=[], extra=[], version="v1.10.1"),
    dict(prompt="<lora:tinyface-000003:0.6> sks woman", negative="", steps=8, sampler="Euler a",
         schedule_type="Automatic", cfg=7.5, seed=4294967295, width=768, height=512, model_hash="abcdef1234",
         model_name="tiny", clip_skip=2, rng="CPU", lora_hashes=[["tinyface-000003", "0123456789ab"],
                                                             ["other:name, v2", "ba9876543210"]],
         extra=[["Hires upscale", "2"], ["Note", 'has "quotes", a\nnewline and \\ backslash'],
                ["Tiling", "Tiling"]], version="v1.10.1"),
    dict(prompt="multi\nline prompt: with colon", negative="neg line 1\nneg line 2", steps=1, sampler="DDIM",
         schedule_type="Automatic", cfg=1.0, seed=0, width=64, height=64, model_hash=None, model_name=None,
         clip_skip=1, rng=None, lora_hashes=[], extra=[["Eta DDIM", "0.5"]], version=None),
    dict(prompt="ünïcödé 女性, 😀", negative="ügly", steps=30, sampler="Euler", schedule_type="Exponential",
         cfg=12.25, seed=123456789, width=512, height=768, model_hash="0123456789", model_name="my model, v2",
         clip_skip=12, rng="CPU", lora_hashes=[["face", "aaaaaaaaaaaa"]], extra=[], version="v1.10.1"),
]


def make_infotexts():
    cases = []
    for c in INFOTEXT_CASES:
        text = a1111_create_infotext(c)
        *lines, lastline = text.strip().split("\n")
        if len(RE_PARAM.findall(lastline)) < 3:
            lastline = ""
        pairs = [[k, a1111_unquote(v) if v[:1] == '"' and v[-1:] == '"' else v] for k, v in RE_PARAM.findall(lastline)]
        cases.append({"params": c, "infotext": text, "parsed_pairs": pairs})
    with open(os.path.join(OUT, "infotext.json"), "w", encoding="utf8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    make_randn()
    make_schedules()
    make_samplers()
    make_infotexts()
    print("wrote", sorted(os.listdir(OUT)))
