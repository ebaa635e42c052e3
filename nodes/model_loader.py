"""RefVideoModelLoader: choose a video model and how to run it; weights load later, in the sampler."""

from __future__ import annotations

from typing import Any

from ..models import comfy_files, registry
from ..models.spec import (
    CFG_BATCHING,
    COMPILE_MODES,
    DTYPES,
    HD_STRATEGIES,
    MEMORY_MODES,
    PARALLEL_MODES,
    RENDERS,
    WEIGHT_DTYPES,
    LoadOptions,
    attention_names,
    preset_names,
)
from .common import CATEGORY, MODEL, with_ui


class RefVideoModelLoader:
    """Validates a model choice and its options and returns a lazy handle (nothing loads here)."""

    CATEGORY = CATEGORY
    DESCRIPTION = ("Chooses the video model: 'previz' (a CPU animatic, no weights), 'tiny-random' (test only), a "
                   "diffusers model folder such as Wan2.1-VACE-1.3B/14B in models/diffusers, or ComfyUI's own Wan "
                   "VACE files (diffusion_models/<file>: safetensors, fp8 scaled or GGUF). It checks the files "
                   "now; the weights load inside RefVideoSampler after its inputs and credits are checked, and "
                   "stay loaded for the next run.")
    RETURN_TYPES = (MODEL, "STRING")
    RETURN_NAMES = ("model", "model_info")
    OUTPUT_TOOLTIPS = ("The model handle for RefVideoSampler (and CreditMeter's per-model pricing).",
                       "What the model is: fps, frame rule, roles it pastes, defaults.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        models = registry.list_models()  # one scan of the model folders per schema request
        return {
            "required": {
                "model": (models, {
                    "tooltip": "previz: animatic of the references (CPU, seconds). tiny-random: random weights, for "
                               "tests. Others: diffusers folders in models/diffusers, and diffusion_models/<file>: "
                               "Wan VACE single files (safetensors, fp8 scaled, GGUF; see docs/models.md)."}),
            },
            "optional": {
                "preset": (preset_names(), {"default": "default",
                           "tooltip": "Sampling defaults: steps, guidance and scheduler. distill-4step/8step are "
                                      "for step-distillation LoRAs (about 20x faster). The sampler's own non-zero "
                                      "steps/guidance win."}),
                "lora": (registry.list_loras(), {"default": "none",
                         "tooltip": "A .safetensors LoRA from models/loras, fused into the transformer."}),
                "lora_strength": ("FLOAT", {"default": 1.0, "min": -8.0, "max": 8.0, "step": 0.05,
                                  "tooltip": "How strongly the LoRA applies (1.0 = as trained)."}),
                "dtype": (list(DTYPES), {"default": "auto",
                          "tooltip": "Weight precision. auto: bf16 on NVIDIA GPUs with native bf16 (RTX 30xx, A100 "
                                     "and newer), fp16 on older NVIDIA cards and Apple, fp32 on CPU. The VAE "
                                     "always runs in fp32."}),
                "memory_mode": (list(MEMORY_MODES), {"default": "auto",
                                "tooltip": "auto: the fastest that fits in free GPU memory. none: all on the GPU. "
                                           "model_offload: one component at a time. group_offload: a few blocks "
                                           "at a time. sequential_offload: one layer at a time (slowest)."}),
                "vae_tiling": ("BOOLEAN", {"default": False,
                               "tooltip": "Decode in tiles: much less memory at 720p/1080p, slightly slower."}),
                "attention": (attention_names(), {"default": "auto",
                              "tooltip": "Attention kernel. auto: cuDNN attention on H100-class GPUs, else "
                                         "PyTorch's default. flash-attn and sage need their packages."}),
                "compile": (list(COMPILE_MODES), {"default": "auto",
                            "tooltip": "torch.compile the transformer. auto: its repeated blocks on NVIDIA GPUs "
                                       "with Triton, with any memory_mode (first run slower, later runs faster); "
                                       "off elsewhere."}),
                "cfg_batching": (list(CFG_BATCHING), {"default": "auto",
                                 "tooltip": "Run the guided and unguided passes of a step as one batch. auto: when "
                                            "it fits in memory. Same result."}),
                "hd_strategy": (list(HD_STRATEGIES), {"default": "auto",
                                "tooltip": "1080p: 'crop' renders 1920x1088 and crops; 'upscale' renders 720p and "
                                           "upscales. auto: upscale for Wan (not trained above 720p); previz draws "
                                           "1080p directly."}),
                "match_frames_of": (registry.match_targets(models), {"default": registry.AUTO_TARGET,
                                    "tooltip": "previz only: plan the animatic with this model's fps and frame "
                                               "count so it lines up frame for frame as its control video. auto = "
                                               "Wan (16 fps, 4k+1 frames)."}),
                "keep_loaded": ("BOOLEAN", {"default": True,
                                "tooltip": "Keep the weights loaded after the run (faster next run); off frees the "
                                           "memory when the clip is done."}),
                "parallel": (list(PARALLEL_MODES), {"default": "off",
                             "tooltip": "Spread one shot over several GPUs, one process each, launched with "
                                        "'torchrun --nproc-per-node N -m refvideo run WORKFLOW'. ulysses: fastest "
                                        "with NVLink; ring: any attention kernel that returns its log-sum-exp. "
                                        "In a single process it renders as off (see docs/models.md)."}),
                "render": (list(RENDERS), {"default": "animatic",
                           "tooltip": "previz only: what the sampler's frames hold. animatic: the picture. depth: "
                                      "a depth video (near = bright) and layout: flat-coloured silhouettes, both "
                                      "control videos for a diffusion model's control_video."}),
                # single-file models (model = diffusion_models/<file>); a diffusers folder has its own
                "text_encoder": (comfy_files.component_choices("text_encoder"), {"default": comfy_files.AUTO,
                                 "tooltip": "Single-file models: the UMT5-XXL file in models/text_encoders. auto: "
                                            "umt5_xxl_fp16 / fp8_e4m3fn_scaled. Ignored for a model folder."}),
                "vae": (comfy_files.component_choices("vae"), {"default": comfy_files.AUTO,
                        "tooltip": "Single-file models: the Wan 2.1 VAE file in models/vae. auto: wan_2.1_vae. "
                                   "Ignored for a model folder."}),
                "transformer_2": (comfy_files.component_choices("transformer_2"), {"default": comfy_files.NONE,
                                  "tooltip": "Wan 2.2 VACE-Fun A14B: the low-noise expert file (model is the "
                                             "high-noise one). none: a single transformer."}),
                "weight_dtype": (list(WEIGHT_DTYPES), {"default": "default",
                                 "tooltip": "fp8_e4m3fn: keep transformer weights in 8-bit float and compute in "
                                            "dtype (half the weight memory of bf16). Not for GGUF files."}),
            },
        }

    def load(self, model: str, preset: str = "default", lora: str = "none", lora_strength: float = 1.0,
             dtype: str = "auto", memory_mode: str = "auto", vae_tiling: bool = False, attention: str = "auto",
             compile: str = "auto", cfg_batching: str = "auto", hd_strategy: str = "auto",
             match_frames_of: str = registry.AUTO_TARGET, keep_loaded: bool = True,
             parallel: str = "off", render: str = "animatic", text_encoder: str = "auto", vae: str = "auto",
             transformer_2: str = "none", weight_dtype: str = "default") -> dict[str, Any]:
        options = LoadOptions(preset=preset, dtype=dtype, memory_mode=memory_mode, vae_tiling=vae_tiling,
                              attention=attention, compile=compile, cfg_batching=cfg_batching, lora=lora,
                              lora_strength=lora_strength, hd_strategy=hd_strategy, match_frames_of=match_frames_of,
                              keep_loaded=keep_loaded, parallel=parallel, render=render, text_encoder=text_encoder,
                              vae=vae, transformer_2=transformer_2, weight_dtype=weight_dtype)
        handle = registry.resolve(model, options)
        report = registry.report(handle)
        return with_ui((handle, report), report)


NODES = {"RefVideoModelLoader": (RefVideoModelLoader, "RefVideo Model Loader")}
