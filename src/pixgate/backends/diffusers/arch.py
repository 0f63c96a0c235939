"""Full-size random-weight builds of real architectures, for benchmarks.

`sd15-arch` has the Stable Diffusion 1.5 UNet, VAE and CLIP ViT-L/14 text encoder configs;
`sdxl-arch` the SDXL 1.0 base UNet, VAE, CLIP ViT-L and OpenCLIP ViT-bigG/14 text encoders
(the values of the published `config.json` files, written out here). The compute of a
denoising step does not depend on the weight values, so timings taken with them are real;
the images are noise.

Only the tokenizers differ from the published models: the byte-level CLIP vocabulary is
built offline, so the text encoders keep their 49408-row embedding tables (for exact
parameter counts and compute) of which only the first 514 rows are ever used.

`device` and `dtype` let a GPU benchmark build directly in fp16 on the accelerator in
seconds (`build_sdxl_arch(device="cuda", dtype=torch.float16)`); `device="meta"` builds
the structure without allocating any weights (for checking the architecture).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pixgate.backends.diffusers.families import (
    SD_NOISE_SCHEDULE,
    clip_tokenizer,
    sd_pipeline,
    sdxl_pipeline,
)

CLIP_VOCAB_SIZE = 49408

# runwayml/stable-diffusion-v1-5 unet/config.json
SD15_UNET: dict[str, Any] = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=(
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
)

# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json
SDXL_UNET: dict[str, Any] = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,  # 6 x 256 time ids + 1280 pooled text
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
)

# vae/config.json of both (SDXL's differs only in sample size, scaling and fp16 upcast)
SD15_VAE: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    act_fn="silu",
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)
SDXL_VAE: dict[str, Any] = {
    **SD15_VAE,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}

# CLIP ViT-L/14 text model (SD 1.5 text_encoder, SDXL text_encoder)
CLIP_VIT_L: dict[str, Any] = dict(
    vocab_size=CLIP_VOCAB_SIZE,
    hidden_size=768,
    intermediate_size=3072,
    num_attention_heads=12,
    num_hidden_layers=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=768,
)
# OpenCLIP ViT-bigG/14 text model (SDXL text_encoder_2, with its text projection)
CLIP_VIT_BIGG: dict[str, Any] = dict(
    vocab_size=CLIP_VOCAB_SIZE,
    hidden_size=1280,
    intermediate_size=5120,
    num_attention_heads=20,
    num_hidden_layers=32,
    max_position_embeddings=77,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
    projection_dim=1280,
)


def _build(factory: Callable[[], Any], device: str, dtype: Any) -> Any:
    """`factory()` with its parameters created on `device`, then cast to `dtype`
    (module by module, so the fp32 peak is one module, never the whole pipeline)."""
    import torch

    with torch.device(device):
        module = factory()
    if dtype is not None and str(device) != "meta":
        module = module.to(dtype)
    return module


def _clip(kind: str, config: dict[str, Any], vocab: dict[str, int], device, dtype) -> Any:
    import transformers
    from transformers import CLIPTextConfig

    eos = vocab["<|endoftext|>"]
    cfg = CLIPTextConfig(
        **config, bos_token_id=vocab["<|startoftext|>"], eos_token_id=eos, pad_token_id=eos
    )
    return _build(lambda: getattr(transformers, kind)(cfg), device, dtype)


def build_sd15_arch(device: str = "cpu", dtype: Any = None) -> Any:
    """StableDiffusionPipeline with the SD 1.5 architecture and random weights:
    UNet 859.5M, VAE 83.65M, CLIP ViT-L text encoder 123.06M parameters."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler
    from diffusers import UNet2DConditionModel as UNet

    tokenizer, vocab = clip_tokenizer()
    torch.manual_seed(0)
    text_encoder = _clip("CLIPTextModel", CLIP_VIT_L, vocab, device, dtype)
    unet = _build(lambda: UNet(**SD15_UNET), device, dtype)
    vae = _build(lambda: AutoencoderKL(**SD15_VAE), device, dtype)
    scheduler = PNDMScheduler(  # the published SD 1.5 scheduler
        **SD_NOISE_SCHEDULE, skip_prk_steps=True, set_alpha_to_one=False
    )
    return sd_pipeline(text_encoder, tokenizer, unet, vae, scheduler)


def build_sdxl_arch(device: str = "cpu", dtype: Any = None) -> Any:
    """StableDiffusionXLPipeline with the SDXL 1.0 base architecture and random weights:
    UNet 2.567B, VAE 83.65M, text encoders 123.06M (ViT-L) + 694.66M (ViT-bigG)."""
    import torch
    from diffusers import AutoencoderKL
    from diffusers import UNet2DConditionModel as UNet

    _, vocab = clip_tokenizer()
    torch.manual_seed(0)
    text_encoder = _clip("CLIPTextModel", CLIP_VIT_L, vocab, device, dtype)
    text_encoder_2 = _clip("CLIPTextModelWithProjection", CLIP_VIT_BIGG, vocab, device, dtype)
    unet = _build(lambda: UNet(**SDXL_UNET), device, dtype)
    vae = _build(lambda: AutoencoderKL(**SDXL_VAE), device, dtype)
    return sdxl_pipeline(text_encoder, text_encoder_2, unet, vae)


def _for_saving(build: Callable[..., Any]) -> Callable[[], Any]:
    """The registry's zero-argument builder: in fp16 (half the disk), on the GPU when
    there is one (seconds instead of minutes of random initialisation on a CPU)."""

    def build_to_save() -> Any:
        import torch

        return build(device="cuda" if torch.cuda.is_available() else "cpu", dtype=torch.float16)

    build_to_save.__name__ = f"{build.__name__}_to_save"
    return build_to_save


ARCH_BUILDERS: dict[str, Callable[[], Any]] = {
    "sd15-arch": _for_saving(build_sd15_arch),
    "sdxl-arch": _for_saving(build_sdxl_arch),
}


def parameter_counts(pipe: Any) -> dict[str, int]:
    """Parameters per torch module of a pipeline (works on the meta device)."""
    import torch

    return {
        name: sum(p.numel() for p in module.parameters())
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }
