"""Compare every stage of this implementation with a reference-output fixture of the released code.

    python -m llava.tools.check_oracle ../shared/oracle/case_a [--attn eager]

A fixture directory holds a checkpoint in the released layout (config.json, model.safetensors,
siglip_vision_config.json, clip_config.json), `inputs.safetensors`, `outputs.safetensors`, `meta.json` and
`distribute_frames.json` (format: ../shared/oracle/README.md), and optionally `clip_tokenizer/` with the query text
in `meta.json` (`clip_query_text`). Each stage prints its max absolute difference; the exit
status is 0 only if every stage is within tolerance. Stages whose reference the fixture lacks are skipped.
"""

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from llava.constants import IMAGE_TOKEN_INDEX
from llava.errors import command
from llava.model.builder import load_model
from llava.model.merger import reference_frames
from llava.model.modeling_llava_qwen import LlavaQwenForCausalLM, VideoInputs
from llava.model.selector import cosine_matrix, distribute_frames, select_keyframes, visit_order
from llava.processing import (VideoFrames, VideoProcessor, expand_video_tokens, normalize_clip, normalize_siglip,
                              tokenize_query, video_token_count)

EXACT = 0.0
FEATURES = 1e-5
LOGITS = 1e-4
# Float tolerances scale with the reference's magnitude: tol * max(1, max|reference|). The fixtures' own float32
# noise is amplified 1/tau = 100x by the DFM softmax; measured against a float64 evaluation of the same weights, the
# released code's merged tokens are off by up to 2.2e-5 (case_b, magnitude 5), so a flat 1e-5 would test noise.


@dataclass
class Stage:
    name: str
    diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.diff <= self.tolerance

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name:<40} max|diff| {self.diff:.3e}  (tolerance {self.tolerance:.1e})"


def max_diff(ours, theirs) -> float:
    ours, theirs = torch.as_tensor(ours), torch.as_tensor(theirs)
    if ours.shape != theirs.shape:
        return float("inf")
    if ours.numel() == 0:
        return 0.0
    return float((ours.double() - theirs.double()).abs().max())


def mismatch(ours: list, theirs: list) -> float:
    """0 when two integer lists are equal, else the number of differing places (inf on a length mismatch)."""
    if len(ours) != len(theirs):
        return float("inf")
    return float(sum(a != b for a, b in zip(ours, theirs)))


def fixture_frames(inputs: dict, siglip_size: int, clip_size: int) -> VideoFrames:
    """The fixture's low-res frames, nearest-upsampled to the tower resolution, then preprocessed as usual."""
    low = inputs["frames_lowres_uint8"]
    factor = siglip_size // low.shape[1]
    full = low.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)
    return VideoProcessor(siglip_size, clip_size)(full.numpy())


def check_fixture(fixture: Path, attn_implementation: str = "eager") -> list[Stage]:
    torch.manual_seed(0)
    model: LlavaQwenForCausalLM = load_model(fixture, attn_implementation=attn_implementation)
    inner = model.model
    inputs = load_file(fixture / "inputs.safetensors")
    expected = load_file(fixture / "outputs.safetensors")
    meta = json.loads((fixture / "meta.json").read_text())
    config = model.config
    stages: list[Stage] = []

    def stage(name, ours, theirs, tolerance):
        theirs = torch.as_tensor(theirs)
        scale = max(1.0, float(theirs.abs().max())) if tolerance and theirs.numel() else 1.0
        stages.append(Stage(name, max_diff(ours, theirs), tolerance * scale))

    frames = fixture_frames(inputs, inner.vision_tower.config.image_size, inner.frame_selector.image_size)
    video = VideoInputs(frames, inputs["clip_query_input_ids"][0], inputs["clip_query_attention_mask"][0])
    if (fixture / "clip_tokenizer").is_dir() and "clip_query_text" in meta:
        clip_tokenizer = AutoTokenizer.from_pretrained(fixture / "clip_tokenizer")
        ids, mask = tokenize_query(clip_tokenizer, meta["clip_query_text"])
        stages.append(Stage("preprocess.clip_query_ids", mismatch(ids.tolist(), video.query_ids.tolist()), EXACT))
        stages.append(Stage("preprocess.clip_query_mask", mismatch(mask.tolist(), video.query_mask.tolist()), EXACT))
    stage("preprocess.clip_pixels", normalize_clip(frames.clip), inputs["clip_pixel_values"], EXACT)
    digest = hashlib.sha256(normalize_siglip(frames.siglip).numpy().tobytes()).hexdigest()
    stages.append(Stage("preprocess.siglip_pixels_sha256", float(digest != meta["siglip_pixel_values_sha256_f32"]), EXACT))

    with torch.no_grad():
        image_embs = inner.embed_frames_clip(frames.clip)
        query_emb = inner.embed_query(video.query_ids, video.query_mask)
        stage("selector.img_embs", image_embs, expected["selector.img_embs"], FEATURES)
        stage("selector.text_embs", query_emb[None], expected["selector.text_embs"], FEATURES)
        stage("selector.f2f_scores", cosine_matrix(image_embs, image_embs), expected["selector.f2f_scores"], FEATURES)
        selection = inner.choose_keyframes(image_embs, query_emb)
        stage("selector.f2t_scores", selection.relevance, expected["selector.f2t_scores"], FEATURES)
        if "selector_sorted_indices_unstable" in meta:
            order = visit_order(selection.relevance)[1].tolist()
            stages.append(Stage("selector.visit_order", mismatch(order, meta["selector_sorted_indices_unstable"]), EXACT))
        n = image_embs.shape[0]
        greedy_mask = [int(i in selection.greedy) for i in range(n)]
        final_mask = [int(i in selection.keyframes) for i in range(n)]
        stages.append(Stage("selector.greedy_mask", mismatch(greedy_mask, meta["selector_greedy_before_distribute"]), EXACT))
        stages.append(Stage("selector.hard_mask", mismatch(final_mask, expected["selector.hard_mask"].tolist()), EXACT))
        for threshold, run in meta.get("extra_selector_runs_by_f2t_thrd", {}).items():
            other = select_keyframes(image_embs, query_emb, config.max_frame_num, config.f2f_thrd, float(threshold))
            mask = [int(i in other.keyframes) for i in range(n)]
            greedy = [int(i in other.greedy) for i in range(n)]
            diff = mismatch(mask, run["hard_mask"]) + mismatch(greedy, run["greedy_before_distribute"])
            stages.append(Stage(f"selector.f2t_thrd={threshold}", diff, EXACT))
        fill_file = fixture / "distribute_frames.json"
        if fill_file.exists():
            cases = json.loads(fill_file.read_text())
            wrong = sum(distribute_frames(c["is_selected"], c["max_frame_num"]) != c["result"] for c in cases)
            stages.append(Stage(f"selector.distribute_frames ({len(cases)} cases)", float(wrong), EXACT))

        keyframes = meta["keyframe_indices"]
        for name, rows in (("encode.tower_out_frames01", [0, 1]), ("encode.tower_out_keyframes01", keyframes[:2])):
            if name in expected:
                tower_out = inner.vision_tower(normalize_siglip(frames.siglip[rows]))
                stage(name, tower_out, expected[name], FEATURES)
        keyframe_features = inner.project_frames(frames.siglip[keyframes])
        stage("encode.keyframe0_features_prepool", keyframe_features[0], expected["encode.keyframe0_features_prepool"], FEATURES)
        if "encode.keyframe_features_pooled" in expected:
            stage("encode.keyframe_features_pooled", inner.pool(keyframe_features), expected["encode.keyframe_features_pooled"], FEATURES)
        if "encode.sig_weights" in expected:
            all_features = inner.project_frames(frames.siglip)
            refs = reference_frames(keyframes, n, config.dfm_reference)
            keys = inner.composer_projector.reference_keys(all_features[refs])
            weights = inner.composer_projector.patch_weights(all_features, query_emb, keys)
            stage("encode.sig_weights", weights, expected["encode.sig_weights"], FEATURES)
        if "encode.composer_hidden" in expected:
            hidden = inner.composer_projector[1](inner.composer_projector[0](image_embs))
            stage("encode.composer_hidden", hidden, expected["encode.composer_hidden"], FEATURES)

        encoding = inner.encode_video(video)
        spans = encoding.frame_spans()
        others = [f for f in range(n) if f not in set(encoding.keyframes)]
        merged = encoding.tokens[[spans[f][0] for f in others]]  # (N - K, D); empty when every frame is a keyframe
        stage("encode.merged_tokens (non-keyframes)", merged, expected["encode.img_embs"][others], FEATURES)
        stages.append(Stage("encode.keyframes", mismatch(encoding.keyframes, keyframes), EXACT))

        # The released prompt holds one <image> id; ours holds the video's tokens (an unused id stands for them).
        config.video_token_id = config.vocab_size
        count = iter([video_token_count(n, config.max_frame_num, config.tokens_per_keyframe)])
        released_ids = inputs["input_ids"][0].tolist()
        input_ids = torch.tensor([expand_video_tokens([config.video_token_id if t == IMAGE_TOKEN_INDEX else t
                                                       for t in released_ids], config.video_token_id, count)])
        video_tensors = {"pixel_values_videos": frames.siglip, "clip_pixel_values_videos": frames.clip,
                         "video_num_frames": torch.tensor([n]), "clip_input_ids": video.query_ids[None],
                         "clip_attention_mask": video.query_mask[None]}
        embeds, _ = model._scatter_videos(input_ids, model.model.get_video_features(**video_tensors), None)
        stage("prepare.inputs_embeds", embeds, expected["prepare.inputs_embeds"], FEATURES)
        logits = model(input_ids=input_ids, **video_tensors).logits
        stage("forward.logits", logits, expected["forward.logits"], LOGITS)
        output = model.generate(input_ids, **video_tensors, max_new_tokens=len(meta["generate_new_tokens"]),
                                do_sample=False, pad_token_id=config.bos_token_id)
        new_tokens = output[0, input_ids.shape[1]:].tolist()
        stages.append(Stage("generate.greedy_tokens", mismatch(new_tokens, meta["generate_new_tokens"]), EXACT))
    return stages


@command
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fixture", type=Path, help="fixture directory, e.g. ../shared/oracle/case_a")
    parser.add_argument("--attn", default="eager", choices=["eager", "sdpa"], help="LLM attention (fixtures: eager)")
    args = parser.parse_args(argv)
    stages = check_fixture(args.fixture, args.attn)
    for s in stages:
        print(s.line())
    failed = [s.name for s in stages if not s.ok]
    print(f"{args.fixture}: {len(stages) - len(failed)} of {len(stages)} stages within tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
