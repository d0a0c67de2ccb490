"""Model assembly: DFM reference rules, streaming = direct computation, pooling, token layout, save/load."""

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from llava.constants import IGNORE_INDEX
from llava.model import LlavaQwenConfig, VideoInputs
from llava.model.builder import load_model
from llava.model.merger import reference_frames
from llava.model.pooling import pool_keyframes, pooled_tokens_per_keyframe
from llava.processing import VideoFrames, video_token_count
from llava.tiny import write_tiny_checkpoint


def test_reference_rules_on_a_hand_built_case():
    keyframes, n = [3, 7], 10
    #                                          frames: 0  1  2  3  4  5  6  7  8  9
    assert reference_frames(keyframes, n, "legacy") == [0, 1, 2, 0, 0, 0, 0, 1, 1, 1]
    assert reference_frames(keyframes, n, "preceding_keyframe") == [3, 3, 3, 3, 3, 3, 3, 7, 7, 7]


def test_new_configs_use_the_paper_rule():
    assert LlavaQwenConfig().dfm_reference == "preceding_keyframe"
    with pytest.raises(ValueError, match="dfm_reference"):
        LlavaQwenConfig(dfm_reference="nearest")


def _video(num_frames, seed=0, grid=384, clip=32):
    gen = torch.Generator().manual_seed(seed)
    siglip = torch.randint(0, 256, (num_frames, grid, grid, 3), dtype=torch.uint8, generator=gen)
    clip_frames = torch.randint(0, 256, (num_frames, clip, clip, 3), dtype=torch.uint8, generator=gen)
    return VideoInputs(VideoFrames(siglip, clip_frames), torch.tensor([0, 5, 9, 13, 1]))


def _tensors(*videos: VideoInputs) -> dict:
    """The processor's video tensors for `videos` (in prompt order)."""
    width = max(len(v.query_ids) for v in videos)
    return {
        "pixel_values_videos": torch.cat([v.frames.siglip for v in videos]),
        "clip_pixel_values_videos": torch.cat([v.frames.clip for v in videos]),
        "video_num_frames": torch.tensor([len(v.frames) for v in videos]),
        "clip_input_ids": torch.stack([torch.nn.functional.pad(v.query_ids, (0, width - len(v.query_ids)), value=1)
                                       for v in videos]),
        "clip_attention_mask": torch.stack([(torch.arange(width) < len(v.query_ids)).long() for v in videos]),
    }


def _ids(model, before: list[int], video: VideoInputs | None, after: list[int]) -> list[int]:
    """A prompt row: `before`, the video's tokens (as the processor expands them), `after`."""
    config = model.config
    count = video_token_count(len(video.frames), config.max_frame_num, config.tokens_per_keyframe) if video else 0
    return before + [config.video_token_id] * count + after


def _merged_rows(encoding):
    spans = encoding.frame_spans()
    return {f: encoding.tokens[spans[f][0]] for f in range(len(spans)) if f not in set(encoding.keyframes)}


@pytest.mark.parametrize("rule", ["legacy", "preceding_keyframe"])
def test_streaming_encoder_equals_the_direct_computation(own_model, rule):
    inner = own_model.model
    video = _video(13)
    inner.config.dfm_reference = rule
    with torch.no_grad():
        inner.config.vision_chunk_size = 3
        encoding = inner.encode_video(video)
        inner.config.vision_chunk_size = 64
        image_embs = inner.embed_frames_clip(video.frames.clip)
        whole = inner._encode_streaming(video.frames, encoding.keyframes, inner.embed_query(video.query_ids), image_embs)
        # Direct: all frames at once, reference features picked by the rule.
        features = inner.project_frames(video.frames.siglip)
        query = inner.embed_query(video.query_ids)
        refs = reference_frames(encoding.keyframes, 13, rule)
        keys = inner.composer_projector.reference_keys(features[refs])
        direct = inner.composer_projector(features, query, keys)
        pooled = inner.pool(features[encoding.keyframes])
    assert len(encoding.keyframes) == 8
    for frame, token in _merged_rows(encoding).items():
        torch.testing.assert_close(token, direct[frame], rtol=0, atol=1e-5)
        torch.testing.assert_close(token, whole[1][frame][0], rtol=0, atol=1e-5)
    spans = encoding.frame_spans()
    for j, frame in enumerate(encoding.keyframes):
        torch.testing.assert_close(encoding.tokens[spans[frame][0] : spans[frame][1]], pooled[j], rtol=0, atol=1e-5)
        torch.testing.assert_close(whole[0][frame], pooled[j], rtol=0, atol=1e-5)
    torch.testing.assert_close(encoding.tokens[-1], inner.image_newline)


def test_the_two_rules_give_different_tokens_where_references_differ(own_model):
    inner = own_model.model
    video = _video(13, seed=1)
    with torch.no_grad():
        query = inner.embed_query(video.query_ids)
        image_embs = inner.embed_frames_clip(video.frames.clip)
        keyframes = inner.encode_video(video).keyframes
        merged = {}
        for rule in ("legacy", "preceding_keyframe"):
            inner.config.dfm_reference = rule
            merged[rule] = inner._encode_streaming(video.frames, keyframes, query, image_embs)[1]
    legacy_refs = reference_frames(keyframes, 13, "legacy")
    paper_refs = reference_frames(keyframes, 13, "preceding_keyframe")
    assert legacy_refs != paper_refs
    for frame in merged["legacy"]:
        same = torch.allclose(merged["legacy"][frame], merged["preceding_keyframe"][frame], atol=1e-6)
        assert same == (legacy_refs[frame] == paper_refs[frame]), frame


def test_pooling_modes_and_token_counts():
    features = torch.randn(2, 27 * 27, 5)
    for mode, side in (("bilinear", 14), ("average", 13), ("max", 13), ("none", 27)):
        pooled = pool_keyframes(features, 27, mode, 2)
        assert pooled.shape == (2, side * side, 5) == (2, pooled_tokens_per_keyframe(27, mode, 2), 5)
    grid = features.view(2, 27, 27, 5)
    expected = grid[:, :26, :26].reshape(2, 13, 2, 13, 2, 5).amax(dim=(2, 4)).reshape(2, 169, 5)
    torch.testing.assert_close(pool_keyframes(features, 27, "max", 2), expected)


@pytest.mark.parametrize("composer", ["average_pooling", "single_token"])
def test_other_composers(composer, tmp_path):
    model = load_model(write_tiny_checkpoint(tmp_path / composer, composer=composer))
    video = _video(11, seed=2)
    with torch.no_grad():
        encoding = model.model.encode_video(video)
        image_embs = model.model.embed_frames_clip(video.frames.clip)
        features = model.model.project_frames(video.frames.siglip)
    assert encoding.merged_tokens == 3 and encoding.keyframe_tokens == 8 * 196
    for frame, token in _merged_rows(encoding).items():
        expected = features[frame].mean(0) if composer == "average_pooling" else model.model.composer_projector(image_embs[frame])
        torch.testing.assert_close(token, expected, rtol=0, atol=1e-5)


def test_video_tokens_are_filled_in_order_labels_ignore_them(tiny_model):
    _, model, _, _ = tiny_model
    video = _video(9, seed=3)
    row = _ids(model, [5, 6], video, [7, 8])
    ids = torch.tensor([row, [5, 6, 7] + [0] * (len(row) - 3)])
    mask = torch.tensor([[1] * len(row), [1, 1, 1] + [0] * (len(row) - 3)])
    labels = ids.clone()
    labels[1, 3:] = IGNORE_INDEX
    with torch.no_grad():
        (encoding,) = model.model.get_video_features(**_tensors(video))
        embeds, kept = model._scatter_videos(ids, [encoding], labels)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels, **_tensors(video)).loss
    visual = encoding.tokens.shape[0]
    assert visual == 8 * 196 + 1 + 1 == len(row) - 4  # 8 keyframes, 1 merged frame, image_newline
    torch.testing.assert_close(embeds[0, 2 : 2 + visual], encoding.tokens)
    embed = model.model.embed_tokens
    torch.testing.assert_close(embeds[0, -1], embed.weight[8])
    torch.testing.assert_close(embeds[1, :3], embed.weight[[5, 6, 7]])
    assert (kept[0, 2 : 2 + visual] == IGNORE_INDEX).all() and kept[0, -2:].tolist() == [7, 8]
    assert torch.equal(kept[1], labels[1]) and torch.isfinite(loss)


def test_placeholder_errors(tiny_model):
    _, model, _, _ = tiny_model
    video = _video(4)
    with pytest.raises(ValueError, match="Video features and video tokens do not match"):
        model(input_ids=torch.tensor([_ids(model, [5], video, [6])[:-3]]), **_tensors(video))
    with pytest.raises(ValueError, match="Video features and video tokens do not match"):
        model(input_ids=torch.tensor([_ids(model, [5], video, [6]) * 2]), **_tensors(video))
    with pytest.raises(ValueError, match="no video was given"):
        model(input_ids=torch.tensor([_ids(model, [5], video, [6])]))
    with pytest.raises(ValueError, match="no frames"):
        model.model.encode_video(_video(0))


def test_save_and_reload_give_identical_logits(tiny_model, tmp_path):
    _, model, _, _ = tiny_model
    video = _video(10, seed=4)
    ids = torch.tensor([_ids(model, [5], video, [7, 8])])
    with torch.no_grad():
        before = model(input_ids=ids, **_tensors(video)).logits
        model.save_pretrained(tmp_path)
        reloaded = load_model(tmp_path)
        after = reloaded(input_ids=ids, **_tensors(video)).logits
    assert torch.equal(before, after)
    assert reloaded.config.dfm_reference == "preceding_keyframe"
    assert reloaded.config.vision_config == model.config.vision_config


def test_registered_with_the_auto_classes_and_generate_returns_prompt_and_answer(tiny_checkpoint):
    config = AutoConfig.from_pretrained(tiny_checkpoint)
    assert type(config).__name__ == "LlavaQwenConfig"
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    assert type(model).__name__ == "LlavaQwenForCausalLM"
    video = _video(3)
    ids = torch.tensor([_ids(model, [5], video, [7])])
    out = model.generate(input_ids=ids, **_tensors(video), max_new_tokens=2, min_new_tokens=2, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 2) and torch.equal(out[:, : ids.shape[1]], ids)
    text_only = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=2, min_new_tokens=2, do_sample=False)
    assert text_only.shape == (1, 5)


def test_frames_can_be_numpy_of_any_size(tiny_model):
    video_processor = tiny_model[2].video_processor
    frames = video_processor(np.zeros((3, 50, 70, 3), dtype=np.uint8))
    assert frames.siglip.shape == (3, 384, 384, 3) and frames.clip.shape == (3, 32, 32, 3)
    with pytest.raises(ValueError, match="uint8"):
        video_processor(np.zeros((2, 10, 10, 3), dtype=np.float32))


@pytest.mark.parametrize("budget", [0, 10**9])
def test_feature_cache_gives_the_same_tokens(own_model, budget):
    from llava.model.modeling_llava_qwen import VideoFeatureCache

    inner = own_model.model
    video = _video(14, seed=10)
    cache = VideoFeatureCache(budget)
    inner.config.vision_chunk_size = 3  # several chunks; the first keyframe's chunk may have to go first
    with torch.no_grad():
        for query in ([0, 5, 9, 1], [0, 22, 31, 40, 1], [0, 7, 1]):
            ids = torch.tensor(query)
            alone = inner.encode_video(VideoInputs(video.frames, ids))
            shared = inner.encode_video(VideoInputs(video.frames, ids, cache=cache))
            assert alone.keyframes == shared.keyframes
            assert torch.equal(alone.tokens, shared.tokens)  # the same arithmetic on the same chunks
    assert cache.image_embs is not None
    assert (len(cache.chunks) == 5) == (budget > 0) and cache.used_bytes <= budget


@pytest.mark.parametrize("rule", ["legacy", "preceding_keyframe"])
def test_chunk_order_when_the_first_keyframe_comes_late(own_model, rule):
    inner = own_model.model
    video = _video(12, seed=11)
    query = torch.randn(16)
    results = []
    inner.config.dfm_reference = rule
    with torch.no_grad():
        image_embs = inner.embed_frames_clip(video.frames.clip)
        for chunk in (2, 64):
            inner.config.vision_chunk_size = chunk
            results.append(inner._encode_streaming(video.frames, [7, 10], query, image_embs))
    (pooled_a, merged_a), (pooled_b, merged_b) = results
    assert sorted(merged_a) == sorted(merged_b) == [f for f in range(12) if f not in (7, 10)]
    for frame in merged_a:
        torch.testing.assert_close(merged_a[frame], merged_b[frame], rtol=0, atol=1e-5)
    for frame in (7, 10):
        torch.testing.assert_close(pooled_a[frame], pooled_b[frame], rtol=0, atol=1e-5)


def test_half_precision_keeps_the_dfm_softmax_in_float32(tiny_checkpoint):
    video = _video(10, seed=12)
    full = load_model(tiny_checkpoint)
    half = load_model(tiny_checkpoint, dtype="bf16")
    assert half.model.mm_projector[0].weight.dtype == torch.bfloat16
    with torch.no_grad():
        keyframes = full.model.encode_video(video).keyframes  # bf16 relevance may rank near-ties otherwise
        reference = full.model._encode_streaming(video.frames, keyframes, full.model.embed_query(video.query_ids),
                                                 full.model.embed_frames_clip(video.frames.clip))
        query = half.model.embed_query(video.query_ids)
        pooled, merged = half.model._encode_streaming(video.frames, keyframes, query,
                                                      half.model.embed_frames_clip(video.frames.clip))
        features = half.model.project_frames(video.frames.siglip[:2])
        keys = half.model.composer_projector.reference_keys(features)
        weights = half.model.composer_projector.patch_weights(features, query, keys)
    assert merged[next(iter(merged))].dtype == torch.bfloat16 and weights.dtype == torch.float32
    scale = max(tokens.abs().max() for part in reference for tokens in part.values())
    for ours, theirs in ((pooled, reference[0]), (merged, reference[1])):
        for frame, tokens in theirs.items():
            assert (ours[frame].float() - tokens).abs().max() < 0.05 * scale, frame


def test_generation_computes_logits_for_the_last_position_only(tiny_model):
    _, model, _, _ = tiny_model
    widths = []
    hook = model.lm_head.register_forward_hook(lambda m, i, o: widths.append(i[0].shape[1]))
    video = _video(6)
    try:
        model.generate(input_ids=torch.tensor([_ids(model, [5], video, [7, 8])]), **_tensors(video), max_new_tokens=3,
                       min_new_tokens=3, do_sample=False)
    finally:
        hook.remove()
    assert widths == [1, 1, 1]  # prefill of ~1,500 tokens, then two decoding steps: one position each


def test_a_new_model_has_every_weight_initialised():
    from llava.tiny import build_clip_tokenizer, build_qwen_tokenizer, tiny_config
    from llava.model import LlavaQwenForCausalLM

    model = LlavaQwenForCausalLM(tiny_config(build_qwen_tokenizer(), build_clip_tokenizer()))
    for name, param in model.named_parameters():
        assert torch.isfinite(param).all() and param.abs().max() < 100, name
    newline = model.model.image_newline
    assert 0.5 < newline.norm() < 2.0  # N(0, 1/hidden): unit norm on average
    assert model.model.composer_projector.tau.item() == pytest.approx(0.01)
