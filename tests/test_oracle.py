"""The released implementation's reference outputs (../shared/oracle) are reproduced, and the checker has teeth."""

import json

import pytest
import torch
from safetensors import safe_open

import llava.processing as processing

import llava.model.modeling_llava_qwen as modeling
import llava.model.selector as selector
import llava.tools.check_oracle as check_oracle
from llava.model.builder import load_config
from llava.model.modeling_llava_qwen import LlavaQwenForCausalLM
from tests.conftest import ORACLE

CASES = sorted(p.name for p in ORACLE.glob("case_*"))


def test_the_shared_cases_are_all_there():
    assert {"case_a", "case_b", "case_d", "case_i", "case_j"} <= set(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_every_stage_matches_the_released_code(case):
    stages = check_oracle.check_fixture(ORACLE / case)
    failed = [s.line() for s in stages if not s.ok]
    assert not failed, "\n".join(failed)
    names = {s.name for s in stages}
    assert {"forward.logits", "generate.greedy_tokens", "selector.hard_mask", "prepare.inputs_embeds"} <= names


@pytest.mark.slow
def test_checker_cli_exit_status(capsys):
    assert check_oracle.main([str(ORACLE / "case_a")]) == 0
    assert "22 of 22 stages within tolerance" in capsys.readouterr().out


def _failed(case):
    return {s.name for s in check_oracle.check_fixture(ORACLE / case) if not s.ok}


@pytest.mark.slow
def test_checker_catches_a_one_index_shift_in_the_dfm_reference(monkeypatch):
    original = modeling.reference_frames

    def shifted(keyframes, num_frames, rule):
        return [min(ref + 1, num_frames - 1) for ref in original(keyframes, num_frames, rule)]

    monkeypatch.setattr(modeling, "reference_frames", shifted)
    monkeypatch.setattr(check_oracle, "reference_frames", shifted)
    failed = _failed("case_b")
    assert {"encode.merged_tokens (non-keyframes)", "encode.sig_weights", "forward.logits"} <= failed


def test_checker_catches_a_one_index_shift_in_the_fill_step(monkeypatch):
    original = selector.fill_keyframes

    def shifted(picks, num_frames, max_frame_num):
        return {min(frame + 1, num_frames - 1) for frame in original(picks, num_frames, max_frame_num)}

    monkeypatch.setattr(selector, "fill_keyframes", shifted)  # used by the model's selection and the 0/1 interface
    failed = _failed("case_d")  # case_d's greedy pass stops early, so its keyframes need the fill
    assert {"selector.distribute_frames (8 cases)", "selector.hard_mask", "encode.keyframes"} <= failed


@pytest.mark.slow
def test_checker_catches_identical_frames_visited_in_frame_order(monkeypatch):
    """case_i's static shots tie exactly; a stable sort visits them in frame order and picks another member."""
    monkeypatch.setattr(selector, "visit_order", lambda relevance: torch.sort(relevance, descending=True, stable=True))
    failed = _failed("case_i")
    assert {"selector.greedy_mask", "selector.hard_mask", "encode.keyframes", "forward.logits"} <= failed


def test_checker_catches_an_untruncated_long_query(monkeypatch):
    """case_j's question is 127 CLIP tokens; the released scripts keep BOS + 75 tokens + EOS."""
    monkeypatch.setattr(processing, "CLIP_MAX_TOKENS", 128)
    assert {"preprocess.clip_query_ids", "preprocess.clip_query_mask"} <= _failed("case_j")


@pytest.mark.parametrize("case", CASES)
def test_save_pretrained_writes_the_released_key_set(case, tmp_path):
    model = LlavaQwenForCausalLM(load_config(ORACLE / case))
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        written = {key: list(f.get_slice(key).get_shape()) for key in f.keys()}
    expected = {}
    for line in (ORACLE / case / "keys.txt").read_text().splitlines():
        key, shape, _dtype = line.split("\t")
        expected[key] = json.loads(shape)
    assert written == expected


def test_released_configs_mean_the_legacy_reference_rule(tmp_path):
    config = load_config(ORACLE / "case_a")
    assert config.dfm_reference == "legacy"
    assert config.mm_vision_tower == "siglip-so400m-tiny-patch14-384"  # a folder that does not exist: not used
    assert config.vision_config["hidden_size"] == 32  # from siglip_vision_config.json beside the checkpoint
    config.save_pretrained(tmp_path)
    assert load_config(tmp_path).dfm_reference == "legacy"
