"""Start a new ViLAMP from its parts: a LLaVA-Video / LLaVA-OneVision Qwen2 checkpoint and a CLIP checkpoint.

    python -m llava.train.compose --llm DIR --clip DIR --out DIR [--composer sig_pooling]

`--llm`: a LLaVA (LLaVA-NeXT code) Qwen2 checkpoint; its language model, SigLIP tower (last layer already dropped),
projector and `image_newline` have the key names ViLAMP uses and are taken as they are. Its SigLIP architecture is
the released SigLIP-so400m-patch14-384 unless its config.json has `vision_config` or a `siglip_vision_config.json`
lies beside it. `--clip`: a CLIP checkpoint in transformers' `CLIPModel` layout (e.g. openai/clip-vit-base-patch32);
it becomes the DKS frame selector, `model.frame_selector.model.*`. Only the DFM (`composer_projector`, seed 0) is new.
The released training never loads pretrained CLIP weights; this does.

The output is a checkpoint that `load_pretrained_model`, the Auto classes and `llava.train.train` read: config.json
(the LLM's fields, the ViLAMP fields with their defaults, the paper's DFM reference rule), one weight shard per LLM
shard plus one for CLIP and the DFM (all in the LLM's dtype), generation_config.json and the `VilampProcessor` (the
LLM's Qwen tokenizer; the CLIP checkpoint's tokenizer, else CLIP ViT-B/32's). It is written beside `--out` and moved
there when complete, after every input was checked. Memory: about one LLM shard at a time.
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoTokenizer

from llava.errors import command
from llava.model.builder import (CheckpointError, has_tokenizer, load_clip_tokenizer, processor_settings,
                                 sub_model_config, weight_files)
from llava.model.configuration_llava_qwen import LlavaQwenConfig
from llava.model.merger import COMPOSERS
from llava.model.modeling_llava_qwen import LlavaQwenForCausalLM
from llava.processing import VilampProcessor

LLAVA_MODEL_TYPES = ("llava", "llava_qwen")
CLIP_PREFIX = "model.frame_selector.model."
DFM_PREFIX = "model.composer_projector."
STORED_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}  # safetensors' names
BOOKKEEPING = ("architectures", "model_type", "transformers_version", "_name_or_path", "auto_map")


class ComposeError(CheckpointError):
    """A component checkpoint that cannot become part of a ViLAMP; the message names the folder and the key."""


def compose(llm_dir: str | Path, clip_dir: str | Path, out_dir: str | Path, composer: str = "sig_pooling",
            seed: int = 0) -> Path:
    """Write a ViLAMP checkpoint to `out_dir` from a LLaVA Qwen2 checkpoint and a CLIP checkpoint; returns `out_dir`.
    Every input is checked before anything is written."""
    llm_dir, clip_dir, out_dir = Path(llm_dir), Path(clip_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ComposeError(f"--out {out_dir}: the folder exists and is not empty; choose a new one")
    llm_config, clip_config = _read_config(llm_dir, "--llm"), _read_config(clip_dir, "--clip")
    if not has_tokenizer(llm_dir):
        raise ComposeError(f"--llm {llm_dir}: no tokenizer (need tokenizer.json, or vocab.json + merges.txt)")
    sources = [(f"--llm {llm_dir}", path, "") for path in weight_files(llm_dir, allow_pickle=False)]
    sources += [(f"--clip {clip_dir}", path, CLIP_PREFIX) for path in weight_files(clip_dir, allow_pickle=False)]
    with safe_open(sources[0][1], "pt") as handle:
        stored = handle.get_slice(next(iter(handle.keys()))).get_dtype()
    if stored not in STORED_DTYPES:
        raise ComposeError(f"--llm {llm_dir}: weights stored as {stored}; expected one of {', '.join(STORED_DTYPES)}")
    try:
        config = vilamp_config(llm_dir, llm_config, clip_dir, clip_config, composer, STORED_DTYPES[stored])
        with torch.device("meta"):
            model = LlavaQwenForCausalLM(config)
    except ValueError as error:  # the configs do not describe one model
        raise ComposeError(f"--llm {llm_dir} / --clip {clip_dir}: {error}") from error
    _check_keys(model, sources)
    processor = VilampProcessor(AutoTokenizer.from_pretrained(llm_dir), load_clip_tokenizer([clip_dir], config),
                                **processor_settings(config))
    config.video_token_id = processor.video_token_id

    partial = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _write_weights(partial, model, sources, seed)
        config.save_pretrained(partial)
        processor.save_pretrained(partial)
        if (llm_dir / "generation_config.json").exists():
            shutil.copyfile(llm_dir / "generation_config.json", partial / "generation_config.json")
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        partial.rename(out_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out_dir


def _check_keys(model: LlavaQwenForCausalLM, sources: list[tuple[str, Path, str]]) -> None:
    """Every tensor of every source file must be one `model` has, with its shape, from the right part (the LLaVA
    checkpoint holds no CLIP or DFM; buffers the model recomputes aside), and together they must give all of its
    weights but the DFM's."""
    expected, recomputed = _stored_shapes(model), _recomputed_buffers(model)
    found = set()
    for source, path, prefix in sources:
        with safe_open(path, "pt") as handle:
            for key in handle.keys():
                name = prefix + key
                if name in recomputed:
                    continue
                if name not in expected or name.startswith((CLIP_PREFIX, DFM_PREFIX)) != bool(prefix):
                    raise ComposeError(f"{source}: {path.name} holds {key}, which has no place in a ViLAMP (expected "
                                       f"the {'CLIPModel' if prefix else 'LLaVA Qwen2'} key layout)")
                shape = tuple(handle.get_slice(key).get_shape())
                if shape != expected[name]:
                    raise ComposeError(f"{source}: {key} has shape {list(shape)} but the architecture in config.json "
                                       f"needs {list(expected[name])}")
                found.add(name)
    missing = sorted(name for name in set(expected) - found if not name.startswith(DFM_PREFIX))
    if missing:
        raise ComposeError(f"{sources[0][0]}: {len(missing)} tensor(s) a ViLAMP needs are in neither checkpoint, e.g. "
                           f"{', '.join(missing[:5])} (is it a LLaVA-Video / LLaVA-OneVision Qwen2 checkpoint?)")


def _write_weights(folder: Path, model: LlavaQwenForCausalLM, sources: list[tuple[str, Path, str]], seed: int) -> None:
    """One shard per LLM file as it is, one more with CLIP (in the LLM's dtype) and the new DFM, and their index."""
    recomputed = _recomputed_buffers(model)
    llm = [path for _, path, prefix in sources if not prefix]
    names = [f"model-{i:05d}-of-{len(llm) + 1:05d}.safetensors" for i in range(1, len(llm) + 2)]
    weight_map: dict[str, str] = {}
    total = 0
    for path, name in zip(llm, names):
        total += _save(_tensors(path, "", recomputed), folder / name, weight_map)
    last = {key: tensor.to(model.config.dtype) for _, path, prefix in sources if prefix
            for key, tensor in _tensors(path, prefix, recomputed).items()}
    last.update(initial_dfm(model, seed))
    total += _save(last, folder / names[-1], weight_map)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))


def vilamp_config(llm_dir: Path, raw: dict, clip_dir: Path, clip: dict, composer: str,
                  dtype: torch.dtype) -> LlavaQwenConfig:
    """The LLaVA checkpoint's config (`raw`) with the CLIP checkpoint's architecture (`clip`), `composer` and the
    ViLAMP defaults."""
    if raw.get("model_type") not in LLAVA_MODEL_TYPES:
        raise ComposeError(f"--llm {llm_dir}: config.json has model_type {raw.get('model_type')!r}, not one of a "
                           f"LLaVA Qwen2 checkpoint ({', '.join(LLAVA_MODEL_TYPES)})")
    if clip.get("model_type") != "clip":
        raise ComposeError(f"--clip {clip_dir}: config.json has model_type {clip.get('model_type')!r}, not 'clip' "
                           "(a transformers CLIPModel checkpoint)")
    fields = {key: value for key, value in raw.items() if key not in BOOKKEEPING}
    vision = sub_model_config(llm_dir, raw, "vision_config")
    clip_config = {key: value for key, value in clip.items() if key not in BOOKKEEPING + ("dtype", "torch_dtype")}
    config = LlavaQwenConfig.from_dict({
        **fields,
        **({"vision_config": vision} if vision is not None else {}),
        "clip_config": clip_config,
        "clip_model_path": str(clip_dir),
        "composer_type": composer,
        "composer_proj_dim": clip.get("projection_dim", 512),
        "dfm_reference": "preceding_keyframe",
        "dtype": dtype,
    })
    config.architectures = [LlavaQwenForCausalLM.__name__]
    return config


def initial_dfm(model: LlavaQwenForCausalLM, seed: int) -> dict[str, torch.Tensor]:
    """The composer's freshly initialised weights (the model's own init rules), keyed as in the checkpoint, in the
    model's dtype. `model` may live on the meta device; only its composer is materialised."""
    torch.manual_seed(seed)
    composer = model.model.composer_projector.to_empty(device="cpu")
    for module in composer.modules():
        model._init_weights(module)
    return {DFM_PREFIX + name: tensor.to(model.config.dtype) for name, tensor in composer.state_dict().items()}


def _stored_shapes(model: LlavaQwenForCausalLM) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor a checkpoint of `model` stores (a tied lm_head is not stored)."""
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        shapes.pop("lm_head.weight")
    return shapes


def _recomputed_buffers(model: LlavaQwenForCausalLM) -> set[str]:
    """Buffers the model builds itself (position ids, rotary frequencies): dropped where a checkpoint holds them."""
    return {name for name, _ in model.named_buffers()} - set(model.state_dict())


def _tensors(path: Path, prefix: str, recomputed: set[str]) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file under their ViLAMP names, recomputed buffers left out."""
    with safe_open(path, "pt") as handle:
        return {prefix + key: handle.get_tensor(key) for key in handle.keys() if prefix + key not in recomputed}


def _save(tensors: dict[str, torch.Tensor], path: Path, weight_map: dict[str, str]) -> int:
    """Write one shard, record its tensors in `weight_map`; -> its bytes."""
    save_file(tensors, path, metadata={"format": "pt"})
    weight_map.update(dict.fromkeys(tensors, path.name))
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _read_config(folder: Path, flag: str) -> dict:
    if not (folder / "config.json").is_file():
        raise ComposeError(f"{flag} {folder}: no config.json there")
    return json.loads((folder / "config.json").read_text())


@command
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", type=Path, required=True, help="LLaVA-Video / LLaVA-OneVision Qwen2 checkpoint")
    parser.add_argument("--clip", type=Path, required=True, help="CLIP checkpoint (transformers CLIPModel layout)")
    parser.add_argument("--out", type=Path, required=True, help="new folder for the ViLAMP checkpoint")
    parser.add_argument("--composer", default="sig_pooling", choices=sorted(COMPOSERS),
                        help="composer_type: what non-keyframes become (llava.model.merger)")
    args = parser.parse_args(argv)
    out = compose(args.llm, args.clip, args.out, args.composer)
    print(f"wrote a ViLAMP checkpoint to {out} (DFM {args.composer} newly initialised)")


if __name__ == "__main__":
    main()
