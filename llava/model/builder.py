"""Loading ViLAMP checkpoints (released or written by this project) without downloading anything.

`load_pretrained_model` keeps the released call shape and return value:
`tokenizer, model, processor, max_length = load_pretrained_model(path, None, "llava_qwen", ...)`; the model is the
one `AutoModelForCausalLM.from_pretrained` gives, the processor the one `AutoProcessor.from_pretrained` gives (or,
for a released checkpoint that has no processor files yet, the same processor built from its parts).
"""

import importlib.util
import json
import logging
import os
from pathlib import Path

import torch
from transformers import AutoTokenizer, BitsAndBytesConfig, CLIPTokenizer
from transformers.integrations import is_deepspeed_zero3_enabled

import llava.model  # noqa: F401  (registers llava_qwen with the Auto classes)
from llava.errors import VilampError
from llava.model.configuration_llava_qwen import LlavaQwenConfig
from llava.model.merger import composer_class
from llava.model.modeling_llava_qwen import LlavaQwenForCausalLM
from llava.processing import CLIP_VOCAB_SIZE, VilampProcessor, default_clip_tokenizer

logger = logging.getLogger(__name__)

# Architecture files the oracle fixtures (and the released code's folders) keep beside config.json.
SUB_MODEL_FILES = {"vision_config": "siglip_vision_config.json", "clip_config": "clip_config.json"}
RELEASED_SUB_MODELS = {"vision_config": "SigLIP-so400m-patch14-384", "clip_config": "CLIP ViT-B/32"}
CLIP_TOKENIZER_DIR = "clip_tokenizer"  # where `VilampProcessor.save_pretrained` puts the CLIP query tokenizer
LEGACY_CLIP_TOKENIZER_DIR = "clip"  # where checkpoints written before the processor kept it
PROCESSOR_FILE = "processor_config.json"
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))
# Modules `load_8bit` / `load_4bit` leave unquantized (transformers' module-name patterns): everything but the
# language model's decoder layers, as the released loader did for the vision tower, projector and lm_head.
NOT_QUANTIZED = ("lm_head", "model.vision_tower", "model.mm_projector", "model.frame_selector",
                 "model.composer_projector")


MODELS_DIR = Path("models")  # where users put checkpoints; a bare name means a folder here
TINY_COMMAND = "python -m llava.tiny models/tiny-vilamp"


class CheckpointError(VilampError, FileNotFoundError):
    """A checkpoint directory is missing something it needs; the message names it."""


class QuantizationUnavailable(VilampError, RuntimeError):
    """`load_8bit` / `load_4bit` where bitsandbytes or a CUDA device is missing; the message says which."""


def find_checkpoint(model: str | os.PathLike | None, flag: str = "--model", default: Path | None = None) -> Path:
    """`model` (a folder, or a name under models/), else the first folder under models/ with a config.json, else
    `default`; the error names `flag` and what to do."""
    if model is not None:
        for candidate in (Path(model), MODELS_DIR / model):
            if (candidate / "config.json").is_file():
                return candidate
        raise CheckpointError(f"{flag} {model}: no checkpoint there (no config.json in {model} or "
                              f"{MODELS_DIR / model}). To try the pipeline, build a tiny random one: {TINY_COMMAND}")
    found = sorted(path.parent for path in MODELS_DIR.glob("*/config.json"))
    if found or default is not None:
        return found[0] if found else default
    raise CheckpointError(
        f"no checkpoint: {MODELS_DIR.resolve()} has no folder with a config.json. Put the released "
        f"ViLAMP-llava-qwen checkpoint in {MODELS_DIR}/ViLAMP-llava-qwen/ (README: \"Real weights\"), or build "
        f"a tiny random one to try the pipeline: {TINY_COMMAND}")


def resolve_device(device_map: str | None) -> str:
    """`device_map` as released callers pass it: "auto" is CUDA when available, else CPU."""
    if device_map in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device_map, str):
        raise ValueError(f"device_map={device_map!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return device_map


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


def load_config(model_path: str | os.PathLike, overwrite_config: dict | None = None,
                customized_config: LlavaQwenConfig | None = None) -> LlavaQwenConfig:
    """Config from `config.json` (or `customized_config`, as released callers pass it), then `overwrite_config`'s
    fields; sub-model architectures from the config, the files beside it, or the defaults."""
    model_path = Path(model_path)
    config_file = model_path / "config.json"
    if not config_file.exists():
        raise CheckpointError(f"{model_path}: config.json is missing (is this a ViLAMP checkpoint directory?)")
    raw = json.loads(config_file.read_text())
    if raw.get("model_type") != "llava_qwen":
        raise ValueError(f"{config_file}: model_type is {raw.get('model_type')!r}, expected 'llava_qwen'")
    config = customized_config if customized_config is not None else LlavaQwenConfig.from_pretrained(model_path)
    for field in SUB_MODEL_FILES:
        if field not in raw and customized_config is None:
            architecture = sub_model_config(model_path, raw, field)
            if architecture is not None:
                setattr(config, field, architecture)
    for key, value in (overwrite_config or {}).items():
        setattr(config, key, value)
    config.check_vilamp_fields()
    return config


def sub_model_config(folder: Path, raw: dict, field: str) -> dict | None:
    """The SigLIP (`vision_config`) or CLIP (`clip_config`) architecture of the checkpoint in `folder` whose
    config.json is `raw`: that field, else the file beside it, else None (the released architecture)."""
    if field in raw:
        return raw[field]
    if (folder / SUB_MODEL_FILES[field]).exists():
        return json.loads((folder / SUB_MODEL_FILES[field]).read_text())
    logger.info("%s: config.json has no %s; using the released %s", folder, field, RELEASED_SUB_MODELS[field])
    return None


def load_model(
    model_path: str | os.PathLike,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    allow_pickle: bool = False,
    overwrite_config: dict | None = None,
    customized_config: LlavaQwenConfig | None = None,
    load_8bit: bool = False,
    load_4bit: bool = False,
) -> LlavaQwenForCausalLM:
    """Config + weights -> an eval-mode model on `device`, each tensor read once and placed there in `dtype`.
    Missing or unexpected weights are an error. `load_8bit` / `load_4bit` quantize the language model's linear
    layers with bitsandbytes (CUDA only)."""
    model_path = Path(model_path)
    if not model_path.is_dir():
        raise CheckpointError(f"checkpoint directory {model_path} does not exist")
    config = load_config(model_path, overwrite_config, customized_config)
    files = weight_files(model_path, allow_pickle)
    dtype = resolve_dtype(dtype, device)
    quantization = quantization_config(load_8bit, load_4bit, device, dtype)
    model, info = LlavaQwenForCausalLM.from_pretrained(
        model_path,
        config=config,
        dtype=dtype,
        # Straight to the device, tensor by tensor (no whole host copy); under ZeRO-3 transformers partitions the
        # weights as it loads them instead, and refuses a device_map.
        device_map=None if is_deepspeed_zero3_enabled() else {"": device},
        quantization_config=quantization,
        attn_implementation=resolve_attn_implementation(attn_implementation, device),
        use_safetensors=files[0].suffix == ".safetensors",
        output_loading_info=True,
    )
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        details = "; ".join(f"{k}: {sorted(map(str, v))[:8]}" for k, v in problems.items())
        raise CheckpointError(f"{model_path}: weights do not match the config ({details})")
    return model.eval()


def quantization_config(load_8bit: bool, load_4bit: bool, device: str, dtype: torch.dtype) -> BitsAndBytesConfig | None:
    """The released flags as a bitsandbytes config: int8 (LLM.int8) or 4-bit NF4 with double quantization and
    `dtype` compute, for the language model's linear layers only (`NOT_QUANTIZED` keep `dtype`)."""
    if not (load_8bit or load_4bit):
        return None
    flag = "load_8bit" if load_8bit else "load_4bit"
    if load_8bit and load_4bit:
        raise ValueError("load_8bit and load_4bit were both set; choose one")
    if not (str(device).startswith("cuda") and torch.cuda.is_available()):
        raise QuantizationUnavailable(f"{flag} needs bitsandbytes on a CUDA GPU and this machine has none (device "
                                      f"{device}); load without {flag} (bf16 on a GPU, float32 on CPU)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise QuantizationUnavailable(f"{flag} needs bitsandbytes: pip install -r requirements-gpu.txt")
    if load_8bit:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(NOT_QUANTIZED))
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype, llm_int8_skip_modules=list(NOT_QUANTIZED))


def processor_settings(config: LlavaQwenConfig) -> dict:
    """The processor fields that follow from the model config: frame sizes and the visual-token arithmetic."""
    return {
        "siglip_size": config.siglip_config.image_size,
        "clip_size": config.frame_selector_clip_config.vision_config.image_size,
        "num_keyframes": config.max_frame_num,
        "tokens_per_keyframe": config.tokens_per_keyframe,
        "tokens_per_frame": composer_class(config.composer_type).tokens_per_frame,
    }


def load_processor(model_path: str | os.PathLike, config: LlavaQwenConfig | None = None) -> VilampProcessor:
    """The checkpoint's `VilampProcessor`: its saved files, or (released layout) built from its Qwen tokenizer, its
    CLIP tokenizer (`clip_tokenizer/`, `clip/`, the config's `clip_model_path`, else CLIP ViT-B/32's) and its config.
    Either way the frame sizes and token arithmetic follow `config` (default: the checkpoint's)."""
    model_path = Path(model_path)
    config = config or load_config(model_path)
    if (model_path / PROCESSOR_FILE).exists():
        processor = VilampProcessor.from_pretrained(model_path)
        for name, value in processor_settings(config).items():
            setattr(processor, name, value)
        return processor
    if not has_tokenizer(model_path):
        raise CheckpointError(f"{model_path}: no tokenizer (need tokenizer.json, or vocab.json + merges.txt)")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    folders = [model_path / CLIP_TOKENIZER_DIR, model_path / LEGACY_CLIP_TOKENIZER_DIR]
    if config.clip_model_path:
        folders.append(Path(config.clip_model_path))
    return VilampProcessor(tokenizer, load_clip_tokenizer(folders, config), **processor_settings(config))


def load_clip_tokenizer(folders: list[Path], config: LlavaQwenConfig) -> CLIPTokenizer:
    """The CLIP tokenizer of the DKS query: the first of `folders` that holds tokenizer files, else CLIP ViT-B/32's
    (`default_clip_tokenizer`), which fits a CLIP text model of its 49,408 tokens (the released one)."""
    for folder in folders:
        if has_tokenizer(folder):
            return AutoTokenizer.from_pretrained(folder)
    vocab_size = config.frame_selector_clip_config.text_config.vocab_size
    if vocab_size != CLIP_VOCAB_SIZE:
        raise CheckpointError(
            f"no CLIP tokenizer found in {' or '.join(map(str, folders))}, and CLIP ViT-B/32's cannot stand in: the "
            f"checkpoint's CLIP text model has {vocab_size} tokens, not {CLIP_VOCAB_SIZE}. Put its tokenizer files "
            f"(tokenizer.json, or vocab.json + merges.txt) in {folders[0]}")
    logger.info("no CLIP tokenizer in %s; using CLIP ViT-B/32's", " or ".join(map(str, folders)))
    return default_clip_tokenizer()


def load_pretrained_model(
    model_path: str | os.PathLike,
    model_base: str | os.PathLike | None = None,
    model_name: str = "llava_qwen",
    load_8bit: bool = False,
    load_4bit: bool = False,
    device_map: str | None = "auto",
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    allow_pickle: bool = False,
    overwrite_config: dict | None = None,
    customized_config: LlavaQwenConfig | None = None,
    device: str | None = None,
    torch_dtype: str | torch.dtype | None = None,
):
    """-> (tokenizer, model, processor, max_length), as the released loader returns them (its third value, the
    image processor, is the `VilampProcessor` here).

    `model_base` is the base checkpoint of a LoRA adapter stored at `model_path` (merged on load).
    `model_name` is accepted for compatibility with the released callers; the architecture comes from the config.
    `load_8bit` / `load_4bit` quantize the language model's linear layers (bitsandbytes, CUDA only; see `load_model`).
    `device_map` ("auto", "cpu", "cuda", "cuda:N"; `device` is an alias) and `torch_dtype` (alias of `dtype`) as the
    released callers pass them. A checkpoint without `video_token_id` in its config (released) gets the processor's.
    """
    model_path = Path(model_path)
    device = resolve_device(device or device_map)
    dtype = dtype if dtype is not None else torch_dtype
    if model_base is None:
        model = load_model(model_path, device, dtype, attn_implementation, allow_pickle, overwrite_config,
                           customized_config, load_8bit, load_4bit)
        processor_path = model_path
    else:
        if load_8bit or load_4bit:
            raise ValueError("load_8bit / load_4bit with model_base: merge the LoRA adapter first "
                             "(python -m llava.train.merge_lora), then load the merged checkpoint quantized")
        model = _load_lora(model_path, Path(model_base), device, dtype, attn_implementation, allow_pickle,
                           overwrite_config, customized_config)
        processor_path = model_path if has_tokenizer(model_path) else Path(model_base)
    processor = load_processor(processor_path, model.config)
    if model.config.video_token_id is None:
        model.config.video_token_id = processor.video_token_id
    elif model.config.video_token_id != processor.video_token_id:
        raise CheckpointError(f"{processor_path}: the processor's {processor.video_token} is token "
                              f"{processor.video_token_id} but config.json says video_token_id="
                              f"{model.config.video_token_id}")
    return processor.tokenizer, model, processor, model.config.tokenizer_model_max_length


def _load_lora(adapter_path, base_path, device, dtype, attn, allow_pickle, overwrite_config, customized_config):
    from peft import PeftModel

    if not (adapter_path / "adapter_config.json").exists():
        raise CheckpointError(f"{adapter_path}: model_base was given but adapter_config.json is missing")
    base = load_model(base_path, device, dtype, attn, allow_pickle, overwrite_config, customized_config)
    return PeftModel.from_pretrained(base, adapter_path).merge_and_unload().eval()


def has_tokenizer(folder: Path) -> bool:
    """Whether `folder` holds the files of a Hugging Face tokenizer."""
    return any(all((folder / name).exists() for name in names) for names in TOKENIZER_FILE_SETS)
