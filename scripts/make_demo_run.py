#!/usr/bin/env python3
"""Writes assets/demo-run/: a fake three-epoch kohya training run for the tiny vendored model, so that
`loraeval grid --spec grids/demo.yaml` runs a whole epochs x weights grid with no downloads.

The epochs are the rank-4 kohya LoRA tests/fixtures/lora/kohya_f16.safetensors with lora_up scaled by 0.5, 1.0, 1.5
(so later epochs pull harder, as training does), saved as kohya names them (tinyface-000001, tinyface-000002,
tinyface for the last epoch) with kohya's ss_* metadata. Run from the repository root with the reference
environment (safetensors 0.8, numpy 1.26).
"""
import numpy as np
from safetensors.numpy import load_file, save_file

SOURCE = "tests/fixtures/lora/kohya_f16.safetensors"
EPOCHS = [(1, "tinyface-000001", 0.5), (2, "tinyface-000002", 1.0), (3, "tinyface", 1.5)]


def main():
    tensors = load_file(SOURCE)
    for epoch, name, scale in EPOCHS:
        scaled = {
            key: (value.astype(np.float32) * scale).astype(value.dtype) if key.endswith("lora_up.weight") else value
            for key, value in tensors.items()
        }
        metadata = {
            "ss_output_name": "tinyface",
            "ss_session_id": "1234567890",
            "ss_epoch": str(epoch),
            "ss_steps": str(epoch * 50),
            "ss_network_module": "networks.lora",
            "ss_network_dim": "4",
            "ss_network_alpha": "2.0",
            "ss_base_model_version": "sd_v1",
        }
        save_file(scaled, f"assets/demo-run/{name}.safetensors", metadata=metadata)
        print(name)


if __name__ == "__main__":
    main()
