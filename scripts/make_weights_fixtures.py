"""Reference fixtures for the `weights` / `model::clip` tests (tests/fixtures/weights/).

Versions used: python 3 (/opt/ref/bin/python), torch 2.12.1 (CPU), transformers 5.24.0, safetensors, numpy 1.26.

Writes
  clip_tiny.safetensors          a random CLIPTextModel (hidden 48, 12 heads, 3 layers, MLP 192, quick_gelu,
                                 77 positions, vocab 512) under transformers names (`text_model.*`); every
                                 parameter is randomised (LayerNorm too) so swapped or missing pieces show.
  clip_tiny_expected.safetensors `input_ids` [2, 77] (U32, BOS/EOS-padded like A1111) and the reference outputs
                                 `clip_skip_1` = last_hidden_state, `clip_skip_N` = final_layer_norm(hidden_states[-N])
                                 for N = 2, 3, 4 (A1111 `sd_hijack_clip.encode_with_transformers`).
  tiny_clip_expected.safetensors the same for the in-repo tiny model's text encoder
                                 (tests/fixtures/tiny/diffusers/text_encoder, stored f16, run in f32): `input_ids`
                                 [2, 77] with the real BOS 49406 / EOS 49407, `clip_skip_1`, `clip_skip_2`,
                                 `clip_skip_3` (2 layers, so 3 = embeddings through final_layer_norm).

Usage: /opt/ref/bin/python scripts/make_weights_fixtures.py [out_dir]
"""
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import CLIPTextConfig, CLIPTextModel

VOCAB, BOS, EOS = 512, 510, 511


def make_model() -> CLIPTextModel:
    config = CLIPTextConfig(vocab_size=VOCAB, hidden_size=48, intermediate_size=192, num_hidden_layers=3,
                            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                            layer_norm_eps=1e-5, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=EOS)
    torch.manual_seed(1234)
    config._attn_implementation = "eager"
    model = CLIPTextModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.3 * torch.randn_like(p))
            elif "embedding" in name:
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / p.shape[-1] ** 0.5)
    return model


def make_ids() -> torch.Tensor:
    rows = []
    for length in (5, 40):
        content = torch.randint(0, BOS, (length,))
        row = torch.full((77,), EOS, dtype=torch.long)
        row[0] = BOS
        row[1:1 + length] = content
        rows.append(row)
    return torch.stack(rows)


def tiny_model_reference(repo: Path, out: Path) -> None:
    model = CLIPTextModel.from_pretrained(str(repo / "tests/fixtures/tiny/diffusers/text_encoder"),
                                          dtype=torch.float32, attn_implementation="eager").eval()
    torch.manual_seed(77)
    rows = []
    for length in (3, 30):
        row = torch.full((77,), 49407, dtype=torch.long)
        row[0] = 49406
        row[1:1 + length] = torch.randint(0, 49406, (length,))
        rows.append(row)
    ids = torch.stack(rows)
    with torch.no_grad():
        result = model(input_ids=ids, output_hidden_states=True)
        expected = {"input_ids": ids.numpy().astype(np.uint32), "clip_skip_1": result.last_hidden_state.numpy()}
        for n in (2, 3):
            expected[f"clip_skip_{n}"] = model.final_layer_norm(result.hidden_states[-n]).numpy()
    save_file({k: np.ascontiguousarray(v) for k, v in expected.items()}, str(out / "tiny_clip_expected.safetensors"))


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "tests/fixtures/weights"
    out.mkdir(parents=True, exist_ok=True)
    model = make_model()
    # transformers 5 drops the `text_model.` level in memory; files (save_pretrained, SD checkpoints) keep it.
    weights = {("" if k.startswith("text_model.") else "text_model.") + k: v.detach().numpy().astype(np.float32)
               for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    save_file(weights, str(out / "clip_tiny.safetensors"))
    ids = make_ids()
    with torch.no_grad():
        result = model(input_ids=ids, output_hidden_states=True)
        expected = {"input_ids": ids.numpy().astype(np.uint32),
                    "clip_skip_1": result.last_hidden_state.numpy()}
        for n in (2, 3, 4):
            expected[f"clip_skip_{n}"] = model.final_layer_norm(result.hidden_states[-n]).numpy()
    save_file({k: np.ascontiguousarray(v) for k, v in expected.items()}, str(out / "clip_tiny_expected.safetensors"))
    tiny_model_reference(Path(__file__).resolve().parent.parent, out)
    print("wrote", out)


if __name__ == "__main__":
    main()
