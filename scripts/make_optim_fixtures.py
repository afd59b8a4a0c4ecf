"""Make the optimizer and LR-schedule fixtures of tests/train_optim.rs (tests/fixtures/optim/).

Package versions used to produce the committed files:
    python 3.11.7, torch 2.12.1 (CPU), transformers 5.25.0, numpy 1.26.4, dadaptation 3.2, prodigyopt 1.1.2,
    bitsandbytes 0.50.2 (CPU backend; the 8-bit reference itself is the numpy transcription below)

Rerun (from the repository root) in a venv that sees the reference stack plus the optimizer packages, e.g.
    python3 -m venv /opt/optref
    echo /opt/ref/lib/python3.11/site-packages > /opt/optref/lib/python3.11/site-packages/ref_stack.pth
    /opt/optref/bin/pip install prodigyopt==1.1.2 dadaptation==3.2 bitsandbytes==0.50.2
    /opt/optref/bin/python scripts/make_optim_fixtures.py [--out tests/fixtures/optim]

Each optimizer case runs the reference optimizer on three parameters in two groups (kohya's unet / text_encoder
groups with their own lr) for 12-16 steps, as kohya's loop does: set the gradients, clip their global norm to 1.0
(torch.nn.utils.clip_grad_norm_), optimizer.step(), lr_scheduler.step(). Initial values and gradients (noise plus a
fixed direction per tensor) come from an integer hash (`hash_values` below; tests/train_optim.rs has the same function), so only the parameters after each
step are stored: base64 of little-endian f32. The optimizer is built from kohya-style `optimizer_args` strings.

AdamW8bit: bitsandbytes' CPU backend uses a lookup-table quantiser and applies the weight decay before the step,
while its CUDA kernels (what kohya users run) search the map exactly and decay after the step. The reference is
therefore a numpy transcription of the CUDA kernels `kOptimizerStatic8bit2StateBlockwise` (block 256,
`quantize_2D`, sign fix of the first moment, padding lanes) and `kOptimizer32bit2State` (tensors under 4096
elements) in float32, with the maps of bitsandbytes' `create_dynamic_map`. The case also stores the final 8-bit
codes and absmax, and the parameters the real bitsandbytes CPU optimizer reaches, with their distance from the
transcription.

schedules.json: the learning rates torch's LambdaLR sets with transformers' schedule functions (as kohya's
get_scheduler_fix calls them) for two groups (unet_lr, text_encoder_lr), at sampled steps of long runs (the face
settings: 3000-5000 steps, cosine with 3-5 restarts).
"""

import argparse
import base64
import json
import math
import os
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
M32 = 0xFFFFFFFF


def mix(x):
    """A 32-bit integer hash (murmur-style finaliser) of a uint64 array holding u32 values."""
    x = x & M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    x ^= x >> 16
    return x


def hash_values(salt, step, tensor, n, scale):
    """n float32 values k/1000 * scale with k in -1000..1000 from the hash of (salt, step, tensor, index)."""
    i = np.arange(n, dtype=np.uint64)
    base = (salt * 0x9E3779B1 + step * 0x85EBCA77 + tensor * 0xC2B2AE3D) & M32
    h = mix((np.uint64(base) + i) & M32)
    k = (h % 2001).astype(np.int64) - 1000
    return (k.astype(np.float32) / np.float32(1000.0)) * np.float32(scale)


def grad_scale(base, step):
    return np.float32(base) * np.float32(0.4 + 0.15 * (step % 7))


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


def b64u8(a):
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).decode()


def parse_args(items):
    """kohya's optimizer_args: key=value with ast.literal_eval values."""
    import ast

    out = {}
    for item in items:
        k, v = item.split("=")
        out[k] = ast.literal_eval(v)
    return out


def make_schedule(opt, sched):
    import transformers.optimization as T

    if sched is None:
        return None
    name, w, n = sched["name"], sched["warmup"], sched["total"]
    if name == "constant":
        return T.get_constant_schedule(opt)
    if name == "constant_with_warmup":
        return T.get_constant_schedule_with_warmup(opt, w)
    if name == "linear":
        return T.get_linear_schedule_with_warmup(opt, w, n)
    if name == "cosine":
        return T.get_cosine_schedule_with_warmup(opt, w, n)
    if name == "cosine_with_restarts":
        return T.get_cosine_with_hard_restarts_schedule_with_warmup(opt, w, n, num_cycles=sched["num_cycles"])
    if name == "polynomial":
        return T.get_polynomial_decay_schedule_with_warmup(opt, w, n, power=sched["power"])
    raise ValueError(name)


def init_params(case):
    params, tid = [], 0
    for g in case["groups"]:
        for p in g["params"]:
            n = int(np.prod(p["shape"]))
            params.append(hash_values(1, 0, tid, n, p["init_scale"]).reshape(p["shape"]))
            tid += 1
    return params


def step_grads(case, step, count):
    """Noise plus a fixed direction per tensor (so that D-adaptation has something to find), times the step's
    scale."""
    shapes = [p["shape"] for g in case["groups"] for p in g["params"]]
    out = []
    for t, shape in enumerate(shapes[:count]):
        n = int(np.prod(shape))
        u = hash_values(2, step, t, n, 1.0) + hash_values(3, 0, t, n, case["grad_bias"])
        out.append(u * grad_scale(case["grad_scale"], step))
    return out


def build_optimizer(case, groups):
    import bitsandbytes as bnb
    import dadaptation
    import prodigyopt
    import transformers.optimization as T

    kw = parse_args(case["args"])
    lr = case["learning_rate"]
    name = case["optimizer"]
    if name == "AdamW":
        return torch.optim.AdamW(groups, lr=lr, **kw)
    if name == "AdamW8bit":
        return bnb.optim.AdamW8bit(groups, lr=lr, **kw)
    if name == "Adafactor":
        return T.Adafactor(groups, lr=lr, **kw)
    if name == "DAdaptAdam":
        return dadaptation.DAdaptAdam(groups, lr=lr, **kw)
    if name == "Prodigy":
        return prodigyopt.Prodigy(groups, lr=lr, **kw)
    raise ValueError(name)


def run_torch(case, record_d=False):
    """The reference run: per step the group lrs used, the clipped norm, the parameters after the step."""
    values = init_params(case)
    tensors = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in values]
    groups, i = [], 0
    for g in case["groups"]:
        ps = tensors[i : i + len(g["params"])]
        i += len(ps)
        entry = {"params": ps}
        if g["lr"] is not None:
            entry["lr"] = g["lr"]
        groups.append(entry)
    opt = build_optimizer(case, groups)
    sched = make_schedule(opt, case["schedule"])
    steps = []
    for s in range(case["steps"]):
        for t, g in zip(tensors, step_grads(case, s, len(tensors))):
            t.grad = torch.from_numpy(g.reshape(t.shape).copy())
        norm = torch.nn.utils.clip_grad_norm_(tensors, case["max_grad_norm"])
        lrs = [pg["lr"] for pg in opt.param_groups]
        opt.step()
        if sched is not None:
            sched.step()
        rec = {
            "lrs": lrs,
            "total_norm": float(norm),
            "params": [b64(t.detach().numpy().reshape(-1)) for t in tensors],
        }
        if record_d:
            rec["d"] = opt.param_groups[0]["d"]
        steps.append(rec)
    return steps, opt, tensors


# ---- bitsandbytes CUDA kernels, transcribed in float32 ----


def quantize_2d(code, signed, x):
    """quantize_2D<SIGNED>: binary search from the middle, then the nearer neighbour by the midpoint."""
    f32 = np.float32
    n = x.shape[0]
    pivot = np.full(n, 127, np.int64)
    upper_pivot = np.full(n, 255, np.int64)
    lower_pivot = np.zeros(n, np.int64)
    lower = np.full(n, f32(-1.0) if signed else f32(0.0), np.float32)
    upper = np.full(n, f32(1.0), np.float32)
    val = code[pivot]
    i = 64
    while i > 0:
        gt = x > val
        lower_pivot = np.where(gt, pivot, lower_pivot)
        lower = np.where(gt, val, lower)
        upper_pivot = np.where(gt, upper_pivot, pivot)
        upper = np.where(gt, upper, val)
        pivot = np.where(gt, pivot + i, pivot - i)
        val = code[pivot]
        i >>= 1
    gt = x > val
    mid_up = (upper + val) * f32(0.5)
    mid_lo = (lower + val) * f32(0.5)
    res = np.where(gt, np.where(x > mid_up, upper_pivot, pivot), np.where(x < mid_lo, lower_pivot, pivot))
    return res.astype(np.uint8)


class Bnb8bitReference:
    """AdamW8bit as bitsandbytes' CUDA kernels compute it (float32 throughout)."""

    def __init__(self, sizes, min_8bit_size=4096, block=256):
        import bitsandbytes.functional as F

        self.m1 = F.create_dynamic_map(signed=True).numpy().astype(np.float32)
        self.m2 = F.create_dynamic_map(signed=False).numpy().astype(np.float32)
        self.block = block
        self.step = 0
        self.states = []
        for n in sizes:
            if n < min_8bit_size:
                self.states.append(("f32", np.zeros(n, np.float32), np.zeros(n, np.float32)))
            else:
                nb = -(-n // block)
                self.states.append(
                    ("q8", np.zeros(n, np.uint8), np.zeros(n, np.uint8), np.zeros(nb, np.float32), np.zeros(nb, np.float32))
                )

    def scalars(self, lr, beta1, beta2, eps, wd):
        f32 = np.float32
        b1, b2, lr, eps, wd = f32(beta1), f32(beta2), f32(lr), f32(eps), f32(wd)
        c1 = f32(1.0) - f32(np.float64(b1) ** self.step)
        c2 = np.sqrt(f32(1.0) - f32(np.float64(b2) ** self.step))
        step_size = (-lr * c2) / c1
        return b1, b2, lr, eps, wd, c2, step_size

    def apply(self, p, m, v, k):
        b1, b2, lr, eps, wd, c2, step_size = k
        p = p + step_size * (m / (np.sqrt(v) + c2 * eps))
        if wd > 0:
            p = p * (np.float32(1.0) - lr * wd)
        return p

    def update(self, idx, p, g, k):
        b1, b2 = k[0], k[1]
        one = np.float32(1.0)
        st = self.states[idx]
        if st[0] == "f32":
            _, m, v = st
            m[:] = m * b1 + (one - b1) * g
            v[:] = v * b2 + (one - b2) * (g * g)
            return self.apply(p, m, v, k)
        _, c1, c2, a1, a2 = st
        out = p.copy()
        n, bs = p.shape[0], self.block
        for b in range(a1.shape[0]):
            sl = slice(b * bs, min((b + 1) * bs, n))
            gb = g[sl]
            fin = np.isfinite(gb)
            v = self.m2[c2[sl]] * a2[b]
            v = v * b2 + (one - b2) * gb * gb
            m = self.m1[c1[sl]] * a1[b]
            m = m * b1 + (one - b1) * gb
            m = np.where(fin, m, np.float32(0)).astype(np.float32)
            v = np.where(fin, v, np.float32(0)).astype(np.float32)
            max1 = np.float32(np.max(np.abs(m)))
            max2 = np.float32(np.max(np.abs(v)))
            if gb.shape[0] < bs:
                pad = self.m1[128] * a1[b]
                max1 = max(max1, np.abs(pad * b1 + (one - b1) * np.float32(0.0)))
                max2 = max(max2, np.float32(0.0))
            a1[b], a2[b] = max1, max2
            out[sl] = np.where(fin, self.apply(p[sl], m, v, k), p[sl])
            q1 = quantize_2d(self.m1, True, m / max1)
            wrong = np.signbit(self.m1[q1]) != np.signbit(m)
            q1 = np.where(wrong, np.where(m > 0, q1.astype(np.int64) + 1, q1.astype(np.int64) - 1) % 256, q1)
            c1[sl] = q1.astype(np.uint8)
            c2[sl] = quantize_2d(self.m2, False, v / max2)
        return out


def run_bnb_reference(case):
    kw = parse_args(case["args"])
    beta1, beta2 = kw.get("betas", (0.9, 0.999))
    eps, wd_default = kw.get("eps", 1e-8), kw.get("weight_decay", 1e-2)
    values = [v.reshape(-1).copy() for v in init_params(case)]
    ref = Bnb8bitReference([v.shape[0] for v in values])
    group_of = [gi for gi, g in enumerate(case["groups"]) for _ in g["params"]]
    shaped = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in values]
    dummies = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": g["lr"]} for g in case["groups"]]
    sched_opt = torch.optim.SGD(dummies, lr=case["learning_rate"])
    sched = make_schedule(sched_opt, case["schedule"])
    steps = []
    for s in range(case["steps"]):
        grads = step_grads(case, s, len(values))
        gt = [torch.from_numpy(g.copy()) for g in grads]
        for t, g in zip(shaped, gt):
            t.grad = g
        norm = torch.nn.utils.clip_grad_norm_(shaped, case["max_grad_norm"])
        grads = [t.grad.numpy() for t in shaped]
        lrs = [pg["lr"] for pg in sched_opt.param_groups]
        ref.step += 1
        for i, (v, g) in enumerate(zip(values, grads)):
            k = ref.scalars(lrs[group_of[i]], beta1, beta2, eps, wd_default)
            values[i] = ref.update(i, v, g, k).astype(np.float32)
        for t, v in zip(shaped, values):
            t.data = torch.from_numpy(v.copy())
        sched.step()
        steps.append({"lrs": lrs, "total_norm": float(norm), "params": [b64(v) for v in values]})
    final = {}
    for i, st in enumerate(ref.states):
        gi = group_of[i]
        pi = i - sum(len(g["params"]) for g in case["groups"][:gi])
        if st[0] == "q8":
            final[f"g{gi}.p{pi}.state1"] = b64u8(st[1])
            final[f"g{gi}.p{pi}.state2"] = b64u8(st[2])
            final[f"g{gi}.p{pi}.absmax1"] = b64(st[3])
            final[f"g{gi}.p{pi}.absmax2"] = b64(st[4])
    maps = {"signed": b64(ref.m1), "unsigned": b64(ref.m2)}
    return steps, final, maps, values


def decode(s):
    return np.frombuffer(base64.b64decode(s), dtype="<f4")


def optimizer_cases():
    small = lambda lrs: [  # noqa: E731
        {"name": "unet", "lr": lrs[0], "params": [
            {"name": "lora_down", "shape": [5, 3], "init_scale": 0.1},
            {"name": "conv_lora", "shape": [6, 2, 3, 3], "init_scale": 0.05}]},
        {"name": "text_encoder", "lr": lrs[1], "params": [{"name": "alpha_like", "shape": [7], "init_scale": 0.3}]},
    ]
    restarts = {"name": "cosine_with_restarts", "warmup": 2, "total": 16, "num_cycles": 3}
    return [
        dict(id="adamw", optimizer="AdamW", args=[], learning_rate=1e-2, groups=small([1e-2, 5e-3]),
             schedule=restarts, steps=16, grad_scale=0.2),
        dict(id="adamw_wd", optimizer="AdamW", args=["weight_decay=0.1", "betas=(0.9,0.99)", "eps=1e-6"],
             learning_rate=1e-2, groups=small([1e-2, 5e-3]),
             schedule={"name": "linear", "warmup": 3, "total": 16}, steps=16, grad_scale=0.2),
        dict(id="adamw8bit", optimizer="AdamW8bit", args=["weight_decay=0.01"], learning_rate=1e-3,
             groups=[{"name": "unet", "lr": 1e-3, "params": [
                 {"name": "lora_down", "shape": [5, 3], "init_scale": 0.1},
                 {"name": "lora_up", "shape": [457, 9], "init_scale": 0.02}]},
                 {"name": "text_encoder", "lr": 5e-4, "params": [{"name": "te", "shape": [7], "init_scale": 0.3}]}],
             schedule=restarts | {"total": 12}, steps=12, grad_scale=0.03),
        dict(id="adafactor", optimizer="Adafactor",
             args=["scale_parameter=False", "relative_step=False", "warmup_init=False"],
             learning_rate=1e-3, groups=small([1e-3, 5e-4]),
             schedule={"name": "constant_with_warmup", "warmup": 3, "total": 16}, steps=16, grad_scale=0.2),
        dict(id="adafactor_beta1_wd", optimizer="Adafactor",
             args=["scale_parameter=True", "relative_step=False", "beta1=0.9", "weight_decay=0.01",
                   "clip_threshold=0.5"],
             learning_rate=1e-2, groups=small([1e-2, 5e-3]),
             schedule={"name": "cosine", "warmup": 0, "total": 16}, steps=16, grad_scale=0.2),
        dict(id="adafactor_relative", optimizer="Adafactor", args=[], learning_rate=None,
             groups=small([None, None]), schedule=None, steps=16, grad_scale=0.2),
        dict(id="adafactor_warmup_init", optimizer="Adafactor", args=["warmup_init=True", "relative_step=True"],
             learning_rate=None, groups=small([None, None]), schedule=None, steps=16, grad_scale=0.2),
        dict(id="dadapt_adam", optimizer="DAdaptAdam", args=["decouple=True", "weight_decay=0.01"],
             learning_rate=1.0, groups=small([1.0, 1.0]),
             schedule={"name": "cosine", "warmup": 2, "total": 16}, steps=16, grad_scale=0.2),
        dict(id="dadapt_adam_coupled", optimizer="DAdaptAdam",
             args=["weight_decay=0.01", "use_bias_correction=True", "growth_rate=1.5"],
             learning_rate=1.0, groups=small([1.0, 0.0]),
             schedule={"name": "constant", "warmup": 0, "total": 16}, steps=16, grad_scale=0.2),
        dict(id="prodigy", optimizer="Prodigy", args=["weight_decay=0.01"], learning_rate=1.0,
             groups=small([1.0, 1.0]), schedule={"name": "cosine", "warmup": 2, "total": 16}, steps=16,
             grad_scale=0.2, zero_first=True),
        dict(id="prodigy_variants", optimizer="Prodigy",
             args=["use_bias_correction=True", "safeguard_warmup=True", "slice_p=3", "betas=(0.9,0.99)",
                   "decouple=False", "weight_decay=0.01", "d_coef=2.0"],
             learning_rate=1.0, groups=small([1.0, 0.0]),
             schedule={"name": "constant_with_warmup", "warmup": 2, "total": 16}, steps=16, grad_scale=0.2),
    ]


def make_case(case, out):
    case = dict(case, max_grad_norm=1.0, grad_bias=0.8)
    if case.pop("zero_first", False):
        case["groups"][0]["params"][0]["init_scale"] = 0.0
    doc = {k: case[k] for k in ("optimizer", "args", "learning_rate", "schedule", "max_grad_norm", "grad_scale", "grad_bias")}
    doc["groups"] = case["groups"]
    doc["made_by"] = "scripts/make_optim_fixtures.py"
    if case["optimizer"] == "AdamW8bit":
        steps, final, maps, values = run_bnb_reference(case)
        doc.update(steps=steps, final_state=final, maps=maps)
        doc["bnb_cpu"] = bnb_cpu_check(case, values)
    else:
        steps, _, _ = run_torch(case, record_d=case["optimizer"] in ("DAdaptAdam", "Prodigy"))
        doc["steps"] = steps
    path = os.path.join(out, f"{case['id']}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"{path}: {os.path.getsize(path)} bytes")


def bnb_cpu_check(case, reference_values):
    """The real bitsandbytes (CPU backend) run of the same case, and its distance from the CUDA transcription."""
    import bitsandbytes as bnb

    steps, _, tensors = run_torch(case)
    final = [t.detach().numpy().reshape(-1) for t in tensors]
    rel = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(final, reference_values))
    print(f"  bitsandbytes {bnb.__version__} CPU vs CUDA transcription: max |diff| / max |p| = {rel:.3g}")
    return {"version": bnb.__version__, "params": [b64(v) for v in final], "max_rel_diff_to_reference": rel}


def schedule_cases():
    return [
        dict(name="constant", warmup=0, total=100),
        dict(name="constant_with_warmup", warmup=10, total=100),
        dict(name="linear", warmup=10, total=100),
        dict(name="linear", warmup=0, total=3000),
        dict(name="cosine", warmup=0, total=100),
        dict(name="cosine", warmup=25, total=300),
        dict(name="cosine_with_restarts", warmup=5, total=37, num_cycles=3),
        dict(name="cosine_with_restarts", warmup=0, total=3000, num_cycles=3),
        dict(name="cosine_with_restarts", warmup=150, total=4000, num_cycles=4),
        dict(name="cosine_with_restarts", warmup=0, total=5000, num_cycles=5),
        dict(name="polynomial", warmup=10, total=100, power=1.0),
        dict(name="polynomial", warmup=0, total=200, power=2.0),
        dict(name="polynomial", warmup=20, total=200, power=0.5),
    ]


def sampled_steps(c):
    total, warmup = c["total"], c["warmup"]
    keep = set(range(0, total + 6, max(1, total // 150)))
    keep |= set(range(0, min(total, warmup + 4)))
    keep |= set(range(max(0, total - 4), total + 6))
    for k in range(1, c.get("num_cycles", 1) + 1):
        b = warmup + (total - warmup) * k / c.get("num_cycles", 1)
        keep |= {s for s in range(int(b) - 2, int(b) + 3) if 0 <= s <= total + 5}
    return sorted(keep)


def make_schedules(out):
    docs = []
    for c in schedule_cases():
        c = dict(c, power=c.get("power", 1.0), num_cycles=c.get("num_cycles", 1), learning_rate=1e-4)
        p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.AdamW([{"params": [p1], "lr": 1e-4}, {"params": [p2], "lr": 5e-5}], lr=c["learning_rate"])
        sched = make_schedule(opt, c)
        keep = set(sampled_steps(c))
        rows = []
        for s in range(c["total"] + 6):
            if s in keep:
                rows.append([s] + [pg["lr"] for pg in opt.param_groups])
            opt.step()
            sched.step()
        docs.append(dict(c, group_lrs=[1e-4, 5e-5], rows=rows))
    path = os.path.join(out, "schedules.json")
    with open(path, "w") as f:
        json.dump({"made_by": "scripts/make_optim_fixtures.py", "cases": docs}, f)
    print(f"{path}: {os.path.getsize(path)} bytes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/optim")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)
    make_schedules(a.out)
    for case in optimizer_cases():
        make_case(case, a.out)


if __name__ == "__main__":
    main()
