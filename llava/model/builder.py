"""Loading ViLAMP checkpoints (released or written by this project) without downloading anything.

`load_pretrained_model` keeps the released call shape and return value:
`tokenizer, model, image_processor, max_length = load_pretrained_model(path, None, "llava_qwen", ...)`.
"""

import importlib.util
import json
import logging
import os
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPTokenizer

import llava.model  # noqa: F401  (registers llava_qwen with the Auto classes)
from llava.errors import VilampError
from llava.model.configuration_llava_qwen import LlavaQwenConfig
from llava.model.modeling_llava_qwen import LlavaQwenForCausalLM
from llava.processing import VideoProcessor

logger = logging.getLogger(__name__)

# Architecture files the oracle fixtures (and the released code's folders) keep beside config.json.
SIGLIP_CONFIG_FILE = "siglip_vision_config.json"
CLIP_CONFIG_FILE = "clip_config.json"
CLIP_TOKENIZER_DIR = "clip"  # this project keeps the CLIP tokenizer of the DKS query here
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))
# Frames per SigLIP call at inference: on a GPU a chunk of the 7B model's features (64 x 729 x 3584, bf16) is ~0.3 GB
# and keeps the tensor cores busy; on a CPU smaller chunks lower the peak with no loss of speed.
VISION_CHUNK_SIZE = {"cuda": 64, "cpu": 16}


class CheckpointError(VilampError, FileNotFoundError):
    """A checkpoint directory is missing something it needs; the message names it."""


def resolve_attn_implementation(requested: str | None, device: str) -> str:
    """`flash_attention_2` only when flash-attn is installed and the model runs on CUDA; otherwise `sdpa`."""
    if requested in (None, "flash_attention_2"):
        if importlib.util.find_spec("flash_attn") is not None and str(device).startswith("cuda"):
            return "flash_attention_2"
        if requested == "flash_attention_2":
            logger.warning("flash_attention_2 needs flash-attn and a CUDA device; using sdpa instead")
        return "sdpa"
    if requested not in ("sdpa", "eager"):
        raise ValueError(f"attn_implementation={requested!r}: expected flash_attention_2, sdpa or eager")
    return requested


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """Default: bfloat16 on CUDA, float32 elsewhere (half-precision matmuls are slow or missing on CPU)."""
    if dtype is None:
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise ValueError(f"dtype={dtype!r}: expected one of {sorted(names)}")
    return names[dtype]


def weight_files(model_path: Path, allow_pickle: bool) -> list[Path]:
    """The checkpoint's weight files, safetensors only unless `allow_pickle` (a .bin can run arbitrary code)."""
    index = model_path / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (model_path / s).exists()]
        if missing:
            raise CheckpointError(f"{model_path}: shards listed in {index.name} are missing: {', '.join(missing)}")
        return [model_path / s for s in shards]
    if (model_path / "model.safetensors").exists():
        return [model_path / "model.safetensors"]
    pickles = sorted(model_path.glob("pytorch_model*.bin"))
    if pickles and not allow_pickle:
        raise CheckpointError(
            f"{model_path} holds only pickle weights ({pickles[0].name}); loading them can run arbitrary code. "
            "Convert them to safetensors, or pass allow_pickle=True if you trust the file."
        )
    if pickles:
        return pickles
    raise CheckpointError(f"{model_path}: no model.safetensors, model.safetensors.index.json or pytorch_model*.bin")


def load_config(model_path: str | os.PathLike, overwrite_config: dict | None = None) -> LlavaQwenConfig:
    """Config from `config.json`; sub-model architectures from the config, the files beside it, or the defaults."""
    model_path = Path(model_path)
    config_file = model_path / "config.json"
    if not config_file.exists():
        raise CheckpointError(f"{model_path}: config.json is missing (is this a ViLAMP checkpoint directory?)")
    raw = json.loads(config_file.read_text())
    if raw.get("model_type") != "llava_qwen":
        raise ValueError(f"{config_file}: model_type is {raw.get('model_type')!r}, expected 'llava_qwen'")
    config = LlavaQwenConfig.from_pretrained(model_path)
    defaults = {"vision_config": "SigLIP-so400m-patch14-384", "clip_config": "CLIP ViT-B/32"}
    for field, file_name in (("vision_config", SIGLIP_CONFIG_FILE), ("clip_config", CLIP_CONFIG_FILE)):
        if field in raw:
            continue
        if (model_path / file_name).exists():
            setattr(config, field, json.loads((model_path / file_name).read_text()))
        else:
            logger.info("%s: config.json has no %s; using the released %s", model_path, field, defaults[field])
    for key, value in (overwrite_config or {}).items():
        setattr(config, key, value)
    config.check_vilamp_fields()
    return config


def load_model(
    model_path: str | os.PathLike,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    allow_pickle: bool = False,
    overwrite_config: dict | None = None,
) -> LlavaQwenForCausalLM:
    """Config + weights -> an eval-mode model on `device`. Missing or unexpected weights are an error."""
    model_path = Path(model_path)
    if not model_path.is_dir():
        raise CheckpointError(f"checkpoint directory {model_path} does not exist")
    config = load_config(model_path, overwrite_config)
    files = weight_files(model_path, allow_pickle)
    attn = resolve_attn_implementation(attn_implementation, device)
    model, info = LlavaQwenForCausalLM.from_pretrained(
        model_path,
        config=config,
        dtype=resolve_dtype(dtype, device),
        attn_implementation=attn,
        use_safetensors=files[0].suffix == ".safetensors",
        output_loading_info=True,
    )
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        details = "; ".join(f"{k}: {sorted(map(str, v))[:8]}" for k, v in problems.items())
        raise CheckpointError(f"{model_path}: weights do not match the config ({details})")
    # The nested SigLIP gets transformers' default attention unless told; CLIP (50 tokens a frame) keeps sdpa.
    model.model.vision_tower.vision_tower.vision_model.set_attn_implementation(attn)
    model.model.vision_chunk_size = VISION_CHUNK_SIZE["cuda" if str(device).startswith("cuda") else "cpu"]
    return model.to(device).eval()


def load_clip_tokenizer(model_path: Path, config: LlavaQwenConfig) -> CLIPTokenizer:
    """The CLIP tokenizer for the DKS query: `<checkpoint>/clip/`, else the config's `clip_model_path` if it exists."""
    candidates = [model_path / CLIP_TOKENIZER_DIR]
    if config.clip_model_path:
        candidates.append(Path(config.clip_model_path))
    for folder in candidates:
        if _has_tokenizer(folder):
            return AutoTokenizer.from_pretrained(folder)
    raise CheckpointError(
        f"no CLIP tokenizer found in {' or '.join(map(str, candidates))}. Put the tokenizer files of "
        f"openai/clip-vit-base-patch32 (tokenizer.json, or vocab.json + merges.txt) in {candidates[0]}"
    )


def load_pretrained_model(
    model_path: str | os.PathLike,
    model_base: str | os.PathLike | None = None,
    model_name: str = "llava_qwen",
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    allow_pickle: bool = False,
    overwrite_config: dict | None = None,
):
    """-> (tokenizer, model, image_processor, max_length), as the released loader returns them.

    `model_base` is the base checkpoint of a LoRA adapter stored at `model_path` (merged on load).
    `model_name` is accepted for compatibility with the released callers; the architecture comes from the config.
    `image_processor` is a `VideoProcessor`; its `clip_tokenizer` and `clip_image_processor` serve the DKS query.
    """
    model_path = Path(model_path)
    if model_base is None:
        model = load_model(model_path, device, dtype, attn_implementation, allow_pickle, overwrite_config)
        tokenizer_path = model_path
    else:
        model = _load_lora(model_path, Path(model_base), device, dtype, attn_implementation, allow_pickle, overwrite_config)
        tokenizer_path = model_path if _has_tokenizer(model_path) else Path(model_base)
    if not _has_tokenizer(tokenizer_path):
        raise CheckpointError(f"{tokenizer_path}: no tokenizer (need tokenizer.json, or vocab.json + merges.txt)")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    tower = model.model.vision_tower.config
    processor = VideoProcessor(tower.image_size, model.model.frame_selector.image_size)
    processor.clip_tokenizer = load_clip_tokenizer(tokenizer_path, model.config)
    return tokenizer, model, processor, model.config.tokenizer_model_max_length


def _load_lora(adapter_path, base_path, device, dtype, attn, allow_pickle, overwrite_config):
    from peft import PeftModel

    if not (adapter_path / "adapter_config.json").exists():
        raise CheckpointError(f"{adapter_path}: model_base was given but adapter_config.json is missing")
    base = load_model(base_path, device, dtype, attn, allow_pickle, overwrite_config)
    return PeftModel.from_pretrained(base, adapter_path).merge_and_unload().eval()


def _has_tokenizer(folder: Path) -> bool:
    return any(all((folder / name).exists() for name in names) for names in TOKENIZER_FILE_SETS)
