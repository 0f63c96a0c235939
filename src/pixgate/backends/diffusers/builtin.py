"""Pipelines pixgate builds itself with random weights, from known architectures.

`tiny-sd` is a real StableDiffusionPipeline (UNet, VAE, CLIP text encoder, CLIP BPE
tokenizer, Euler scheduler) with small random weights: it runs the full diffusers code path
on a CPU in about a second, and draws noise. Builds are deterministic (fixed torch seed) and
saved in the data dir, then loaded back through the same loader as any local model.

The other families' tiny builds (`tiny-sdxl`, `tiny-sd3`, `tiny-flux`) live in
`families.py`, the full-size benchmark builds (`sd15-arch`, `sdxl-arch`) in `arch.py`; this
module is their registry and saves them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

BUILTIN_PREFIX = "builtin:"


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins for bytes that byte-level BPE (GPT-2/CLIP) uses."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    extra = [b for b in range(256) if b not in printable]
    codes = printable + [256 + i for i in range(len(extra))]
    return [chr(c) for c in codes]


def write_byte_level_vocab(directory: Path) -> tuple[Path, Path, dict[str, int]]:
    """A CLIP vocabulary of single bytes (each also as a word end) and no merges: any text,
    in any language, tokenizes without a downloaded vocabulary."""
    chars = _byte_chars()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    vocab_file = directory / "vocab.json"
    merges_file = directory / "merges.txt"
    vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n", encoding="utf-8")
    return vocab_file, merges_file, vocab


def build_tiny_sd():
    """Build the tiny Stable Diffusion pipeline in memory (deterministic weights)."""
    import torch
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    from pixgate.backends.diffusers.families import (
        SD_NOISE_SCHEDULE,
        clip_config,
        clip_tokenizer,
        sd_pipeline,
        tiny_vae,
    )

    tokenizer, vocab = clip_tokenizer()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(clip_config(vocab))
    # Attention only at the lowest resolution keeps 1024x1024 within a CPU budget.
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = tiny_vae(4, sample_size=512, force_upcast=True)
    scheduler = EulerDiscreteScheduler(**SD_NOISE_SCHEDULE, timestep_spacing="leading")
    return sd_pipeline(text_encoder, tokenizer, unet, vae, scheduler)


def _registry() -> dict[str, Callable[[], object]]:
    from pixgate.backends.diffusers.arch import ARCH_BUILDERS
    from pixgate.backends.diffusers.families import FAMILY_BUILDERS

    return {"tiny-sd": build_tiny_sd, **FAMILY_BUILDERS, **ARCH_BUILDERS}


BUILDERS: dict[str, Callable[[], object]] = _registry()


def builtin_names() -> list[str]:
    return sorted(BUILDERS)


def ensure_builtin(name: str, models_dir: Path) -> Path:
    """Return the directory of builtin `name`, building and saving it on first use.

    The build goes to a temporary directory that is renamed into place, so a crash or a
    concurrent builder never leaves a half-written model behind.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown builtin model {name!r}; known: {', '.join(builtin_names())}")
    target = models_dir / "builtin" / name
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        BUILDERS[name]().save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "model_index.json").is_file():  # not a concurrent winner
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
