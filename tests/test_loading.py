"""Loading checkpoints (dtype, device, quantization flags, the CLIP query tokenizer), preprocessing against the
released processors, and the one-video question API."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoProcessor
from transformers.quantizers.quantizers_utils import should_convert_module

from llava.conversation import multiple_choice_prompt
from llava.convert import convert
from llava.inference import answer_video
from llava.model import LlavaQwenForCausalLM
from llava.model.builder import (NOT_QUANTIZED, CheckpointError, QuantizationUnavailable, load_model,
                                 load_pretrained_model, resolve_attn_implementation)
from llava.processing import VideoProcessor, default_clip_tokenizer, normalize_clip, normalize_siglip, tokenize_query
from llava.tiny import build_qwen_tokenizer, tiny_config
from tests.conftest import ORACLE

CASE_J = json.loads((ORACLE / "case_j" / "meta.json").read_text())


def test_load_pretrained_model_returns_the_released_tuple(tiny_model):
    tokenizer, model, processor, max_length = tiny_model
    assert max_length == model.config.tokenizer_model_max_length == 32768
    assert processor.tokenizer is tokenizer and processor.video_token_id == model.config.video_token_id
    assert processor.video_processor.clip_image_processor.crop_size["height"] == model.model.frame_selector.image_size
    assert processor.clip_tokenizer("a dog").input_ids[0] == processor.clip_tokenizer.bos_token_id
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") != tokenizer.unk_token_id
    assert not model.training


def _copy(src, dst, skip=()):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*skip))
    return dst


def test_missing_files_are_named(tiny_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_model(_copy(tiny_checkpoint, tmp_path / "a", ["config.json"]))
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_model(_copy(tiny_checkpoint, tmp_path / "b", ["model.safetensors"]))
    # Without processor files (the released layout) the processor is built from the tokenizers and the config.
    with pytest.raises(CheckpointError, match="no tokenizer"):
        load_pretrained_model(_copy(tiny_checkpoint, tmp_path / "c", ["tokenizer.json", "processor_config.json"]))
    with pytest.raises(CheckpointError, match="no CLIP tokenizer"):
        load_pretrained_model(_copy(tiny_checkpoint, tmp_path / "d", ["clip_tokenizer", "processor_config.json"]))


def test_pickle_weights_are_refused_unless_allowed(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path / "bin", ["model.safetensors"])
    torch.save(load_file(tiny_checkpoint / "model.safetensors"), folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_model(folder)
    model = load_model(folder, allow_pickle=True)
    reference = load_model(tiny_checkpoint)
    assert torch.equal(model.lm_head.weight, reference.lm_head.weight)


def test_weights_that_do_not_fit_the_config_are_an_error(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(tiny_checkpoint, overwrite_config={"composer_type": "average_pooling"})


def test_released_checkpoint_with_foreign_paths_loads():
    model = load_model(ORACLE / "case_b")
    assert model.model.vision_tower.num_patches == 729  # from the tower config, not a literal
    assert model.config.clip_model_path == "clip-tiny/0_CLIPModel"


def test_flash_attention_falls_back_to_sdpa_on_cpu(caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_attn_implementation("flash_attention_2", "cpu") == "sdpa"
    assert "using sdpa" in caplog.text
    assert resolve_attn_implementation(None, "cpu") == "sdpa"
    assert resolve_attn_implementation("eager", "cpu") == "eager"
    with pytest.raises(ValueError, match="attn_implementation"):
        resolve_attn_implementation("fast", "cpu")


def test_preprocessing_matches_the_released_processors():
    reference = load_file(ORACLE / "preproc" / "preproc.safetensors")
    for name, key in (("landscape", "frame_landscape_uint8_h30_w40"), ("portrait", "frame_portrait_uint8_h50_w20")):
        frame = reference[key][None].numpy()
        for size in (224, 32):
            frames = VideoProcessor(384, size)(frame)
            assert torch.equal(normalize_clip(frames.clip), reference[f"clip{size}_pixel_values_{name}"])
        if name == "landscape":
            assert torch.equal(normalize_siglip(frames.siglip), reference["siglip_pixel_values_landscape"])


def test_prompt_formats(tiny_model):
    processor = tiny_model[2]
    prompt = multiple_choice_prompt("What is shown", ["A. a cat", "B. a dog"])
    assert prompt == "What is shown. Please choose the right answer from the following options: ['A. a cat', 'B. a dog']."
    messages = [{"role": "user", "content": [{"type": "video", "path": "v.mp4"}, {"type": "text", "text": "Q?"}]}]
    assert processor.apply_chat_template(messages, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<video>\nQ?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_answer_video_reports_what_the_model_did(tiny_model):
    _, model, processor, _ = tiny_model
    frames = np.random.RandomState(0).randint(0, 256, (12, 40, 60, 3), dtype=np.uint8)
    answer = answer_video(model, processor, frames, "what colour", "What colour?", 4)
    assert len(answer.keyframes) == model.config.max_frame_num == 8
    assert answer.keyframe_tokens == 8 * 196 and answer.merged_tokens == 4 and answer.num_frames == 12
    assert answer.text_tokens == len(processor.tokenizer(processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What colour?"}]}],
        add_generation_prompt=True)).input_ids) - 1  # the prompt without its one <video>
    assert isinstance(answer.text, str)
    with pytest.raises(ValueError, match="no frames"):
        answer_video(model, processor, frames[:0], "q", "q")


def test_clip_frames_equal_transformers_clip_processor_on_many_shapes():
    rng = np.random.RandomState(0)
    processor = VideoProcessor(384, 224)
    for height, width in ((720, 1280), (1280, 720), (224, 224), (225, 300), (481, 263), (100, 99), (37, 500)):
        image = rng.randint(0, 256, (height, width, 3), dtype=np.uint8)
        reference = processor.clip_image_processor(images=image, do_rescale=False, do_normalize=False,
                                                   return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
        ours = processor(image[None]).clip[0].numpy()
        assert np.array_equal(ours, reference.astype(np.uint8)), (height, width)


def test_the_default_clip_tokenizer_gives_the_original_query_ids():
    tokenizer = default_clip_tokenizer()
    assert len(tokenizer) == 49408 and (tokenizer.bos_token_id, tokenizer.eos_token_id) == (49406, 49407)
    assert tokenizer.get_vocab() == json.loads((ORACLE / "case_j" / "clip_tokenizer" / "vocab.json").read_text())
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    ids, mask = tokenize_query(tokenizer, CASE_J["clip_query_text"])  # 127 tokens, truncated as the original did
    assert ids.tolist() == CASE_J["clip_query_input_ids"] and mask.tolist() == [1] * 77
    assert tokenizer(CASE_J["clip_query_text"]).input_ids == CASE_J["clip_query_untruncated_ids"]


def test_a_checkpoint_without_a_clip_tokenizer_tokenizes_queries_as_the_original(tmp_path):
    """A released-layout folder (weights, config, Qwen tokenizer; no clip/ folder) whose CLIP has CLIP's vocabulary."""
    torch.manual_seed(0)
    tokenizer = build_qwen_tokenizer()
    LlavaQwenForCausalLM(tiny_config(tokenizer, default_clip_tokenizer())).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    _, model, processor, _ = load_pretrained_model(tmp_path, device_map="cpu")
    ids, mask = tokenize_query(processor.clip_tokenizer, CASE_J["clip_query_text"])
    assert ids.tolist() == CASE_J["clip_query_input_ids"]
    with torch.no_grad():
        assert model.model.embed_query(ids, mask).shape == (model.model.frame_selector.embed_dim,)
    convert(tmp_path)  # the processor files, for AutoProcessor
    saved = AutoProcessor.from_pretrained(tmp_path).clip_tokenizer
    assert tokenize_query(saved, CASE_J["clip_query_text"])[0].tolist() == CASE_J["clip_query_input_ids"]


def test_a_checkpoint_loads_in_its_dtype_with_the_stored_values(tiny_checkpoint, tmp_path):
    load_model(tiny_checkpoint).to(torch.bfloat16).save_pretrained(tmp_path)
    stored = load_file(tmp_path / "model.safetensors")
    model = load_model(tmp_path, "cpu", "bf16")
    for name, parameter in model.named_parameters():
        assert parameter.dtype == torch.bfloat16 and parameter.device.type == "cpu", name
        assert torch.equal(parameter, stored[name]), name


def test_quantized_loading_is_refused_in_one_line_where_it_cannot_run(tiny_checkpoint):
    for flag in ("load_8bit", "load_4bit"):
        with pytest.raises(QuantizationUnavailable, match=f"^{flag} needs bitsandbytes on a CUDA GPU[^\n]*$"):
            load_pretrained_model(tiny_checkpoint, device_map="cpu", **{flag: True})
    with pytest.raises(ValueError, match="choose one"):
        load_pretrained_model(tiny_checkpoint, device_map="cpu", load_8bit=True, load_4bit=True)


def test_quantization_covers_exactly_the_language_models_decoder_layers(tiny_model):
    model = tiny_model[1]
    linears = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    quantized = {name for name in linears if should_convert_module(name, list(NOT_QUANTIZED))}
    assert quantized == {name for name in linears if name.startswith("model.layers.")}
    assert len(quantized) == 7 * model.config.num_hidden_layers  # q, k, v, o, gate, up, down
