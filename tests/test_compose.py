"""`python -m llava.train.compose`: a ViLAMP from a LLaVA-Video-layout Qwen2 checkpoint and a CLIPModel checkpoint,
both tiny and written here by transformers' own classes."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPConfig, CLIPModel, Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

from llava.model.builder import load_pretrained_model
from llava.processing import tokenize_query
from llava.tiny import build_qwen_tokenizer
from llava.train.compose import ComposeError, compose, main
from tests.conftest import ORACLE

CASE_J = json.loads((ORACLE / "case_j" / "meta.json").read_text())


def write_llava_video_checkpoint(folder):
    """What the LLaVA-NeXT code saves for a Qwen2 LLaVA-Video model: the Qwen2 LM, SigLIP without its last encoder
    layer and head under `model.vision_tower.vision_tower.vision_model.`, the mlp2x_gelu projector, `image_newline`,
    in bf16; model_type "llava"; the SigLIP architecture in siglip_vision_config.json."""
    torch.manual_seed(0)
    tokenizer = build_qwen_tokenizer()
    qwen = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    siglip = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                                image_size=56, patch_size=14)
    state = Qwen2ForCausalLM(qwen).state_dict()
    tower = SiglipVisionModel(siglip).state_dict()
    state.update({"model.vision_tower.vision_tower.vision_model." + key: value for key, value in tower.items()
                  if not key.startswith(("encoder.layers.2.", "head."))})
    projector = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 64))
    state.update({"model.mm_projector." + key: value for key, value in projector.state_dict().items()})
    state["model.image_newline"] = torch.randn(64)
    folder.mkdir()
    save_file({key: value.to(torch.bfloat16).contiguous() for key, value in state.items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({
        **qwen.to_dict(), "model_type": "llava", "architectures": ["LlavaQwenForCausalLM"],
        "mm_vision_tower": "google/siglip-so400m-patch14-384", "mm_hidden_size": 32, "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2, "mm_spatial_pool_mode": "bilinear", "mm_newline_position": "grid",
    }))
    (folder / "siglip_vision_config.json").write_text(siglip.to_json_string())
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """(LLaVA-Video-layout checkpoint, CLIPModel checkpoint with CLIP's 49,408-token vocabulary and no tokenizer)."""
    folder = tmp_path_factory.mktemp("parts")
    llm = write_llava_video_checkpoint(folder / "llava-video")
    clip = CLIPModel(CLIPConfig(projection_dim=16,
                                text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                 num_attention_heads=4),
                                vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                   num_attention_heads=4, image_size=32, patch_size=8)))
    clip.save_pretrained(folder / "clip")
    return llm, folder / "clip"


def test_composed_checkpoint_keeps_its_parts_loads_and_trains_one_step(parts, tmp_path, capsys):
    llm, clip = parts
    main(["--llm", str(llm), "--clip", str(clip), "--out", str(tmp_path / "vilamp")])
    assert "wrote a ViLAMP checkpoint" in capsys.readouterr().out
    _, model, processor, _ = load_pretrained_model(tmp_path / "vilamp", device_map="cpu",
                                                   overwrite_config={"max_frame_num": 3})
    weights = dict(model.state_dict())  # float32 on CPU; the checkpoint holds bf16, the LLM's dtype
    for key, value in load_file(llm / "model.safetensors").items():
        assert torch.equal(weights[key], value.float()), key
    for key, value in load_file(clip / "model.safetensors").items():
        assert torch.equal(weights["model.frame_selector.model." + key], value.to(torch.bfloat16).float()), key
    config = model.config
    assert json.loads((tmp_path / "vilamp" / "config.json").read_text())["dtype"] == "bfloat16"
    assert (config.composer_type, config.dfm_reference, config.composer_proj_dim) == ("sig_pooling", "preceding_keyframe", 16)
    assert tokenize_query(processor.clip_tokenizer, CASE_J["clip_query_text"])[0].tolist() == CASE_J["clip_query_input_ids"]

    frames = np.random.RandomState(0).randint(0, 256, (8, 40, 40, 3), dtype=np.uint8)
    inputs = processor(text=["<|im_start|>user\n<video>\nWhat is red?<|im_end|>\n<|im_start|>assistant\nred"],
                       videos=[frames], queries=["What is red?"], return_tensors="pt")
    model.train()
    dfm = model.model.composer_projector.linear_q.weight
    before = dfm.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and not torch.equal(dfm, before)


def test_parts_that_do_not_fit_are_named(parts, tmp_path):
    llm, clip = parts
    with pytest.raises(ComposeError, match="model_type 'llava', not 'clip'"):
        compose(llm, llm, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("earlier work")
    with pytest.raises(ComposeError, match="exists and is not empty"):
        compose(llm, clip, tmp_path / "b")
    other = tmp_path / "other"
    other.mkdir()
    for file in llm.iterdir():
        (other / file.name).write_bytes(file.read_bytes())
    siglip = json.loads((llm / "siglip_vision_config.json").read_text())
    (other / "siglip_vision_config.json").write_text(json.dumps({**siglip, "image_size": 112}))
    with pytest.raises(ComposeError, match=r"position_embedding.weight has shape \[16, 32\] .* needs \[64, 32\]"):
        compose(other, clip, tmp_path / "c")
    (other / "siglip_vision_config.json").unlink()  # SigLIP-so400m is assumed: 1152 wide, not 32
    with pytest.raises(ComposeError, match="mm_hidden_size=32 but the vision tower's hidden size is 1152"):
        compose(other, clip, tmp_path / "c")
    (other / "siglip_vision_config.json").write_text(json.dumps(siglip))
    vilamp = load_file(llm / "model.safetensors")  # a LLaVA folder that already holds a DFM
    vilamp["model.composer_projector.tau"] = torch.tensor(0.01)
    save_file(vilamp, other / "model.safetensors")
    with pytest.raises(ComposeError, match="holds model.composer_projector.tau, which has no place"):
        compose(other, clip, tmp_path / "c")
    assert not (tmp_path / "c").exists() and (tmp_path / "b" / "keep.txt").exists()
