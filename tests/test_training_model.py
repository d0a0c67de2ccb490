"""Model behaviour while training: gradients reach DKS and DFM, values are unchanged, module calls are uniform."""

import torch

from llava.model.builder import load_model
from tests.test_model import _ids, _tensors, _video


def test_gradients_reach_the_selector_merger_and_projector(tiny_checkpoint):
    model = load_model(tiny_checkpoint).train()
    video = _video(12, seed=5)
    ids = torch.tensor([_ids(model, [5], video, [7, 8])])
    loss = model(input_ids=ids, labels=ids, **_tensors(video)).loss
    loss.backward()
    inner = model.model
    for name, param in (
        ("CLIP image projection", inner.frame_selector.model.visual_projection.weight),
        ("CLIP text projection", inner.frame_selector.model.text_projection.weight),
        ("DFM W_q", inner.composer_projector.linear_q.weight),
        ("DFM W_k", inner.composer_projector.linear_k.weight),
        ("DFM tau", inner.composer_projector.tau),
        ("projector", inner.mm_projector[0].weight),
        ("SigLIP", inner.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight),
    ):
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_straight_through_leaves_the_tokens_unchanged(tiny_checkpoint):
    model = load_model(tiny_checkpoint)
    video = _video(12, seed=6)
    with torch.no_grad():
        plain = model.model.encode_video(video).tokens
    model.train()  # the estimator is on; whole-video calls instead of chunks: float32 rounding apart
    with_grad = model.model.encode_video(video).tokens
    torch.testing.assert_close(with_grad.detach(), plain, rtol=0, atol=1e-5 * max(1.0, float(plain.abs().max())))
    assert with_grad.requires_grad


def _module_calls(model, video):
    calls = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
        for name, module in model.model.named_modules()
        if name.startswith(("vision_tower", "mm_projector", "frame_selector", "composer_projector")) and name.count(".") <= 2
    ]
    model.model.encode_video(video)
    for hook in hooks:
        hook.remove()
    return calls


def test_every_module_runs_the_same_number_of_times_whatever_the_video(tiny_checkpoint):
    model = load_model(tiny_checkpoint).train()
    model.config.vision_chunk_size = 2  # inference chunking must not leak into training
    long_video, all_keyframes = _video(40, seed=7), _video(3, seed=8)
    assert _module_calls(model, long_video) == _module_calls(model, all_keyframes)


def test_text_only_samples_still_run_the_vision_modules(tiny_checkpoint):
    model = load_model(tiny_checkpoint).train()
    video = _video(5, seed=9)
    with_video = _module_calls(model, video)
    calls = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
        for name, module in model.model.named_modules()
        if name in with_video
    ]
    ids = torch.tensor([[5, 6, 7]])
    loss = model(input_ids=ids, labels=ids).loss
    for hook in hooks:
        hook.remove()
    assert calls == with_video
    loss.backward()
    assert model.model.composer_projector.linear_q.weight.grad is not None
