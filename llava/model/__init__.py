"""ViLAMP model package; importing it registers `llava_qwen` with transformers' Auto classes."""

from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor

from llava.model.configuration_llava_qwen import LlavaQwenConfig
from llava.model.merger import Composer, register_composer
from llava.processing import VilampProcessor
from llava.model.modeling_llava_qwen import (
    LlavaQwenForCausalLM,
    LlavaQwenModel,
    VideoEncoding,
    VideoFeatureCache,
    VideoInputs,
)

AutoConfig.register("llava_qwen", LlavaQwenConfig, exist_ok=True)
AutoModelForCausalLM.register(LlavaQwenConfig, LlavaQwenForCausalLM, exist_ok=True)
AutoProcessor.register(LlavaQwenConfig, VilampProcessor, exist_ok=True)

__all__ = [
    "Composer",
    "LlavaQwenConfig",
    "LlavaQwenForCausalLM",
    "LlavaQwenModel",
    "VideoEncoding",
    "VideoFeatureCache",
    "VideoInputs",
    "VilampProcessor",
    "register_composer",
]
