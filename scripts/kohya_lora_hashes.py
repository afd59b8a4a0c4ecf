"""kohya's LoRA hashes (sd-scripts `library/train_util.py` `precalculate_safetensors_hashes`: the tensors
serialized with the `ss_*` metadata only, then `addnet_hash_safetensors` and `addnet_hash_legacy`) of the
tensors and metadata of tests/train_save.rs. Needs numpy and safetensors (0.8.0 used).

    python scripts/kohya_lora_hashes.py         # fp16
    python scripts/kohya_lora_hashes.py f32
"""
import sys
import hashlib
from io import BytesIO
import numpy as np
from safetensors.numpy import save

def values(n, salt):
    k = (np.arange(n, dtype=np.int64) * 7919 + salt * 104729) % 1000
    return (k.astype(np.float32) / np.float32(1000.0) - np.float32(0.5)).astype(np.float32)

U = "lora_unet_down_blocks_0_attentions_0_proj_in"
T = "lora_te_text_model_encoder_layers_0_mlp_fc1"
DTYPE = np.float32 if sys.argv[1:] == ["f32"] else np.float16
def t(shape, salt): return values(int(np.prod(shape)), salt).reshape(shape).astype(DTYPE)
tensors = {
    U + ".lora_down.weight": t((8, 40000), 1),
    U + ".lora_up.weight": t((320, 8), 2),
    U + ".alpha": np.array(4.0, dtype=DTYPE),
    T + ".lora_down.weight": t((8, 768), 3),
    T + ".lora_up.weight": t((3072, 8), 4),
    T + ".alpha": np.array(4.0, dtype=DTYPE),
}
metadata = {"ss_output_name": "sks", "ss_network_dim": "8", "ss_network_alpha": "4.0",
            "ss_tag_frequency": '{"5_sks": {"sks": 3}}', "modelspec.title": "sks"}

def addnet_hash_legacy(b):
    m = hashlib.sha256(); b.seek(0x100000); m.update(b.read(0x10000)); return m.hexdigest()[0:8]
def addnet_hash_safetensors(b):
    h = hashlib.sha256(); b.seek(0); n = int.from_bytes(b.read(8), "little"); b.seek(n + 8)
    for chunk in iter(lambda: b.read(1024 * 1024), b""): h.update(chunk)
    return h.hexdigest()

md = {k: v for k, v in metadata.items() if k.startswith("ss_")}
b = BytesIO(save(tensors, md))
print(len(b.getvalue()), addnet_hash_safetensors(b), addnet_hash_legacy(b))
