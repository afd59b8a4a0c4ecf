#!/usr/bin/env python3
"""Compares the `output` tensors of two safetensors files written by `kernel_bench --model ... --save FILE`
(two builds of loraeval on the same deterministic inputs): max |a-b| / max |a|, RMS(a-b) / RMS(a), and the
largest element difference. Usage: compare_outputs.py A.safetensors B.safetensors"""
import sys

import numpy as np
from safetensors.numpy import load_file

a = load_file(sys.argv[1])["output"].astype(np.float64)
b = load_file(sys.argv[2])["output"].astype(np.float64)
assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
d = np.abs(a - b)
print(f"shape {a.shape}  max|a| {np.abs(a).max():.4g}  max|a-b| {d.max():.3g}  "
      f"max rel {d.max() / np.abs(a).max():.3g}  rms rel {np.sqrt((d ** 2).mean() / (a ** 2).mean()):.3g}")
