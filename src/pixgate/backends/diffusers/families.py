"""Tiny random-weight builds of the other pipeline families: SDXL, SD3 and FLUX.

Each is the family's real diffusers pipeline class with every component it has in the
published models (two CLIP text encoders and SDXL's added time/text embeddings; SD3's
MMDiT transformer with CLIP x2 + T5; FLUX's transformer with CLIP + T5; 16-channel VAEs and
flow-matching schedulers for SD3/FLUX), only with small widths and few layers, so a
256x256 2-step generation takes well under a second on a CPU. Weights are random and
deterministic (fixed torch seed); the images are noise.

Tokenizers are built in code, never downloaded: CLIP uses the byte-level vocabulary of
`builtin.write_byte_level_vocab`; T5 is a `tokenizers` Unigram model over the 256 bytes
(byte fallback) wrapped in transformers' generic fast tokenizer, which `save_pretrained` /
`from_pretrained` round-trip through `tokenizer.json` unchanged.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The tiny widths: text encoders and transformers are a few tens of channels wide.
CLIP_WIDTH = 32
T5_WIDTH = 64
TINY_VAE_BLOCKS = (8, 16, 32, 32)  # four blocks: the usual 8x latent scale factor


def clip_tokenizer(max_length: int = 77) -> tuple[Any, dict[str, int]]:
    """A CLIP tokenizer over the byte-level vocabulary, and that vocabulary."""
    from transformers import CLIPTokenizer

    from pixgate.backends.diffusers.builtin import write_byte_level_vocab

    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file, vocab = write_byte_level_vocab(Path(tmp))
        tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=max_length)
    return tokenizer, vocab


def clip_config(vocab: dict[str, int], width: int = CLIP_WIDTH, **overrides: Any) -> Any:
    from transformers import CLIPTextConfig

    eos = vocab["<|endoftext|>"]
    values: dict[str, Any] = dict(
        vocab_size=len(vocab),
        hidden_size=width,
        intermediate_size=2 * width,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        projection_dim=width,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=eos,
        pad_token_id=eos,
    )
    values.update(overrides)
    return CLIPTextConfig(**values)


def t5_tokenizer(max_length: int = 512) -> Any:
    """A T5-style tokenizer (`<pad>`=0, `</s>`=1, `<unk>`=2, SentencePiece metaspace) whose
    vocabulary is the 256 bytes: any text tokenizes, one token per UTF-8 byte."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"<0x{b:02X}>", -10.0) for b in range(256)]
    model = Tokenizer(Unigram(pieces, unk_id=2, byte_fallback=True))
    metaspace = {"replacement": "▁", "prepend_scheme": "always", "split": True}
    model.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(**metaspace)]
    )
    model.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(**metaspace)])
    model.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=model,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=max_length,
    )


def t5_encoder(vocab_size: int, width: int = T5_WIDTH) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=width,
            d_kv=width // 4,
            d_ff=2 * width,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",  # as T5 v1.1 / the T5-XXL encoder
            dropout_rate=0.0,
            is_encoder_decoder=False,
            use_cache=False,
        )
    )


def for_inference(pipe: Any) -> Any:
    """Every module in eval mode, as `from_pretrained` leaves them: a fresh build draws
    the same pixels as its saved and reloaded copy (no dropout)."""
    import torch

    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


# The noise schedule Stable Diffusion 1.x/2.x and SDXL were trained with.
SD_NOISE_SCHEDULE: dict[str, Any] = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    steps_offset=1,
)


def sd_pipeline(text_encoder: Any, tokenizer: Any, unet: Any, vae: Any, scheduler: Any) -> Any:
    """A StableDiffusionPipeline (1.x/2.x) around the given modules, without the safety
    checker (random weights draw noise; there is nothing for it to check)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return for_inference(pipe)


def sdxl_pipeline(text_encoder: Any, text_encoder_2: Any, unet: Any, vae: Any) -> Any:
    """A StableDiffusionXLPipeline around the given modules, with byte-level CLIP tokenizers
    and the published SDXL base scheduler."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer()[0],
        tokenizer_2=clip_tokenizer()[0],
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            **SD_NOISE_SCHEDULE, timestep_spacing="leading", interpolation_type="linear"
        ),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    return for_inference(pipe)


def tiny_vae(latent_channels: int, **overrides: Any) -> Any:
    """The tiny-sd VAE shape: four blocks, no mid-block attention (a 128x128 latent's
    attention would dominate the CPU time at 1024x1024)."""
    from diffusers import AutoencoderKL

    values: dict[str, Any] = dict(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        block_out_channels=TINY_VAE_BLOCKS,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        mid_block_add_attention=False,
        sample_size=1024,
        force_upcast=False,
    )
    values.update(overrides)
    return AutoencoderKL(**values)


def build_tiny_sdxl() -> Any:
    """StableDiffusionXLPipeline: CLIPTextModel + CLIPTextModelWithProjection (penultimate
    hidden states concatenated for cross-attention, the second's projected pooled output
    plus size/crop "time ids" as the UNet's added embeddings)."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    _, vocab = clip_tokenizer()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(clip_config(vocab))
    text_encoder_2 = CLIPTextModelWithProjection(clip_config(vocab, hidden_act="gelu"))
    time_dim = 8
    unet = UNet2DConditionModel(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        # attention at the lowest resolution only, like tiny-sd, to fit a CPU budget
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * CLIP_WIDTH,
        attention_head_dim=8,
        norm_num_groups=8,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        # 6 time ids (original size, crop top-left, target size) + the pooled text embeds
        projection_class_embeddings_input_dim=6 * time_dim + CLIP_WIDTH,
    )
    vae = tiny_vae(4, scaling_factor=0.13025)
    return sdxl_pipeline(text_encoder, text_encoder_2, unet, vae)


def build_tiny_sd3() -> Any:
    """StableDiffusion3Pipeline: an MMDiT (SD3Transformer2DModel) over a 16-channel latent,
    conditioned on two CLIPTextModelWithProjection encoders and a T5 encoder."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from diffusers import StableDiffusion3Pipeline as Pipeline
    from transformers import CLIPTextModelWithProjection

    tokenizer, vocab = clip_tokenizer()
    tokenizer_2, _ = clip_tokenizer()
    tokenizer_3 = t5_tokenizer()
    torch.manual_seed(0)
    text_encoder = CLIPTextModelWithProjection(clip_config(vocab))
    text_encoder_2 = CLIPTextModelWithProjection(clip_config(vocab, hidden_act="gelu"))
    text_encoder_3 = t5_encoder(len(tokenizer_3))
    heads, head_dim = 2, 16
    transformer = SD3Transformer2DModel(
        sample_size=128,  # 1024x1024 by default, as SD3
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=T5_WIDTH,  # the CLIP embeds are zero-padded to T5's width
        caption_projection_dim=heads * head_dim,
        pooled_projection_dim=2 * CLIP_WIDTH,  # both CLIPs' pooled embeds, concatenated
        pos_embed_max_size=96,  # latents up to 192x192: images up to 1536 px a side
    )
    vae = tiny_vae(
        16,
        scaling_factor=1.5305,
        shift_factor=0.0609,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    pipe = Pipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )
    return for_inference(pipe)


def build_tiny_flux() -> Any:
    """FluxPipeline, shaped like FLUX.1 [schnell]: a FluxTransformer2DModel (double- and
    single-stream blocks, 3-axis RoPE, no guidance embedding) over a packed 16-channel
    latent, conditioned on CLIP's pooled output and T5's hidden states."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler as Scheduler
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    tokenizer, vocab = clip_tokenizer()
    tokenizer_2 = t5_tokenizer()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(clip_config(vocab))
    text_encoder_2 = t5_encoder(len(tokenizer_2))
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels packed 2x2
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5_WIDTH,
        pooled_projection_dim=CLIP_WIDTH,
        guidance_embeds=False,
        axes_dims_rope=(4, 6, 6),  # sums to the head dim, as (16, 56, 56) does to 128
    )
    vae = tiny_vae(
        16,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    scheduler = Scheduler(  # FLUX.1 [schnell]'s scheduler config
        num_train_timesteps=1000,
        shift=1.0,
        use_dynamic_shifting=False,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    return for_inference(pipe)


FAMILY_BUILDERS: dict[str, Callable[[], Any]] = {
    "tiny-sdxl": build_tiny_sdxl,
    "tiny-sd3": build_tiny_sd3,
    "tiny-flux": build_tiny_flux,
}
