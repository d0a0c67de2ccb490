"""ViLAMP on Qwen2: `LlavaQwenForCausalLM`.

One video becomes, in temporal order, the pooled patch grid of every keyframe and one merged token of every other
frame, then one `image_newline` token. `VilampProcessor` puts exactly that many video tokens in the prompt; the model
scatters the block into them (`get_placeholder_mask` + `masked_scatter`, as transformers' LLaVA models do):

    [text] [frame 0] [frame 1] ... [frame N-1] [image_newline] [text]
    keyframe -> pool_keyframes(projector(SigLIP(frame)))  (K_tok tokens)      other frame -> DFM merge (1 token)

The vision side streams: frames are normalised, encoded and merged `vision_chunk_size` at a time, so its memory
holds one chunk, the DFM reference keys still needed and the outputs (pooled keyframes, one token per frame).
"""

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import Qwen2ForCausalLM, Qwen2Model
from transformers import initialization as init
from transformers.modeling_utils import PreTrainedModel

from llava.constants import IGNORE_INDEX
from llava.errors import VilampError
from llava.model.configuration_llava_qwen import LlavaQwenConfig
from llava.model.merger import SigPooling, composer_class, reference_frames
from llava.model.pooling import pool_keyframes
from llava.model.projector import build_vision_projector
from llava.model.selector import FrameSelector, KeyframeSelection, select_keyframes, uniform_keyframes
from llava.model.vision_tower import SiglipVisionTower
from llava.processing import VideoFrames, normalize_clip, normalize_siglip

# Frames per SigLIP / CLIP call at inference unless the config sets `vision_chunk_size`: on a GPU a chunk of the 7B
# model's features (64 x 729 x 3584, bf16) is ~0.3 GB and keeps the tensor cores busy; on a CPU smaller chunks lower
# the peak with no loss of speed.
VISION_CHUNK_SIZE = {"cuda": 64, "cpu": 16}
# Processor outputs that describe videos: consumed by the prefill only.
VIDEO_INPUTS = ("pixel_values_videos", "clip_pixel_values_videos", "video_num_frames", "clip_input_ids",
                "clip_attention_mask", "video_encodings", "video_caches")


class PromptTooLongError(VilampError, ValueError):
    """A sequence (video tokens + text) longer than the config's tokenizer_model_max_length; the message gives both."""


@dataclass
class VideoFeatureCache:
    """Query-independent features of ONE video, shared by the questions asked about it.

    CLIP frame embeddings are always kept (N x E floats). Projected SigLIP features of whole chunks are kept while
    they fit in `budget_bytes` and recomputed past it. Chunks have a fixed composition, so answers with and without
    the cache are the same.
    """

    budget_bytes: int = 0
    image_embs: torch.Tensor | None = None  # (N, E)
    chunks: dict[int, torch.Tensor] = field(default_factory=dict)  # chunk start -> (chunk, P, D)
    used_bytes: int = 0

    def offer(self, start: int, features: torch.Tensor) -> None:
        size = features.numel() * features.element_size()
        if self.used_bytes + size <= self.budget_bytes:
            self.chunks[start] = features
            self.used_bytes += size


@dataclass
class VideoInputs:
    """One video and its question, as the model consumes them."""

    frames: VideoFrames  # uint8 frames at the SigLIP and CLIP resolutions
    query_ids: torch.Tensor  # (T,) CLIP token ids of the question (the DKS / DFM query)
    query_mask: torch.Tensor | None = None  # (T,)
    cache: VideoFeatureCache | None = None  # reuse of features across questions about the same video


@dataclass
class VideoEncoding:
    """What the vision side produced for one video."""

    tokens: torch.Tensor  # (T_vis, D): the block that replaces <image>, image_newline included
    selection: KeyframeSelection
    keyframe_tokens: int  # tokens of all keyframes together
    merged_tokens: int  # the composer's tokens_per_frame per non-keyframe

    @property
    def keyframes(self) -> list[int]:
        return self.selection.keyframes

    def frame_spans(self) -> list[tuple[int, int]]:
        """[start, end) of every frame's tokens inside `tokens`, in frame order."""
        keyframes = set(self.keyframes)
        num_frames = len(self.selection.relevance)
        per_keyframe = self.keyframe_tokens // max(len(keyframes), 1)
        per_other = self.merged_tokens // max(num_frames - len(keyframes), 1)
        spans, start = [], 0
        for frame in range(num_frames):
            end = start + (per_keyframe if frame in keyframes else per_other)
            spans.append((start, end))
            start = end
        return spans


class LlavaQwenPreTrainedModel(PreTrainedModel):
    config_class = LlavaQwenConfig
    config: LlavaQwenConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Qwen2DecoderLayer", "SiglipEncoderLayer", "CLIPEncoderLayer"]
    _supports_flash_attn = True
    _supports_sdpa = True

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, LlavaQwenModel):
            init.normal_(module.image_newline, mean=0.0, std=module.config.hidden_size**-0.5)
        elif isinstance(module, SigPooling):
            for linear in (module.linear_iq, module.linear_ik, module.linear_q, module.linear_k):
                init.normal_(linear.weight, mean=0.0, std=0.02)
            init.constant_(module.tau, 0.01)


class LlavaQwenModel(LlavaQwenPreTrainedModel, Qwen2Model):
    """Qwen2 decoder plus the vision side, with the released state-dict names."""

    def __init__(self, config: LlavaQwenConfig):
        Qwen2Model.__init__(self, config)
        self.vision_tower = SiglipVisionTower(config.siglip_config, config.mm_vision_select_layer,
                                              config._attn_implementation)
        if config.mm_hidden_size != self.vision_tower.hidden_size:
            raise ValueError(
                f"mm_hidden_size={config.mm_hidden_size} but the vision tower's hidden size is "
                f"{self.vision_tower.hidden_size}: the vision config does not belong to this checkpoint"
            )
        self.mm_projector = build_vision_projector(config.mm_projector_type, config.mm_hidden_size, config.hidden_size)
        self.frame_selector = FrameSelector(config.frame_selector_clip_config)
        self.composer_projector = composer_class(config.composer_type)(config)
        # Initialised here: Qwen2Model.__init__ already ran post_init, so _init_weights would skip this module.
        self.image_newline = nn.Parameter(torch.randn(config.hidden_size) * config.hidden_size**-0.5)
        self.post_init()

    # ----- stages (each usable on its own: the oracle checker and the visualiser call them) -----

    def chunk_size(self, num_frames: int) -> int:
        """Frames per vision call: in training mode the whole video, so that every rank makes the same module calls
        whatever its video length (ZeRO-3 gathers weights per call); in eval mode the config's `vision_chunk_size`,
        else `VISION_CHUNK_SIZE` of the device."""
        if self.training:
            return max(num_frames, 1)
        return self.config.vision_chunk_size or VISION_CHUNK_SIZE.get(self.image_newline.device.type, 64)

    def embed_frames_clip(self, clip_frames: torch.Tensor) -> torch.Tensor:
        """(N, C, C, 3) uint8 -> (N, E) CLIP image embeddings in CLIP's dtype, a chunk at a time.

        Byte-identical frames (static shots, black frames) are embedded once and share that row, so their relevance
        ties exactly, as it does in the released code, and DKS visits them in the released order.
        """
        device = self.image_newline.device
        distinct, inverse = distinct_frames(clip_frames)
        size = self.chunk_size(len(distinct))
        chunks = [
            self.frame_selector.embed_images(normalize_clip(clip_frames[distinct[i : i + size]]).to(device))
            for i in range(0, len(distinct), size)
        ]
        return torch.cat(chunks)[inverse.to(device)]

    def embed_query(self, query_ids: torch.Tensor, query_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(T,) CLIP token ids -> (E,) CLIP text embedding in CLIP's dtype."""
        device = self.image_newline.device
        mask = None if query_mask is None else query_mask[None].to(device)
        return self.frame_selector.embed_text(query_ids[None].to(device), mask)[0]

    def choose_keyframes(self, image_embs: torch.Tensor, query_emb: torch.Tensor) -> KeyframeSelection:
        """(N, E), (E,) -> keyframes: DKS, or evenly spaced frames when `activate_frame_selector` is off."""
        cfg = self.config
        if cfg.activate_frame_selector:
            return select_keyframes(image_embs, query_emb, cfg.max_frame_num, cfg.f2f_thrd, cfg.f2t_thrd)
        relevance = torch.nn.functional.cosine_similarity(image_embs, query_emb[None], dim=-1)
        frames = uniform_keyframes(image_embs.shape[0], cfg.max_frame_num)
        return KeyframeSelection(frames, frames, relevance)

    def project_frames(self, siglip_frames: torch.Tensor) -> torch.Tensor:
        """(B, S, S, 3) uint8 -> (B, P, D) projected patch features (P = 729 for the released tower)."""
        pixels = normalize_siglip(siglip_frames).to(self.image_newline.device)
        return self.mm_projector(self.vision_tower(pixels))

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """(K, P, D) keyframe features -> (K, K_tok, D) pooled tokens."""
        cfg = self.config
        return pool_keyframes(features, self.vision_tower.grid_size, cfg.mm_spatial_pool_mode, cfg.mm_spatial_pool_stride)

    def encode_video(self, video: VideoInputs) -> VideoEncoding:
        """Run DKS, encode keyframes, merge the other frames and lay the tokens out in temporal order."""
        num_frames = len(video.frames)
        if num_frames == 0:
            raise ValueError("the video has no frames")
        cache = video.cache if video.cache is not None and not self.training else None
        if cache is not None and cache.image_embs is None:
            cache.image_embs = self.embed_frames_clip(video.frames.clip)
        image_embs = cache.image_embs if cache is not None else self.embed_frames_clip(video.frames.clip)
        query_emb = self.embed_query(video.query_ids, video.query_mask)
        selection = self.choose_keyframes(image_embs, query_emb)
        if self.composer_projector.uses_siglip:
            pooled, merged = self._encode_streaming(video.frames, selection.keyframes, query_emb, image_embs, cache)
        else:
            pooled, merged = self._encode_from_clip(video.frames, selection.keyframes, query_emb, image_embs)
        per_frame = [pooled[f] if f in pooled else merged[f] for f in range(num_frames)]
        if self._selector_is_trained():
            per_frame = _straight_through(per_frame, selection.relevance)
        tokens = torch.cat(per_frame + [self.image_newline[None].to(per_frame[0].dtype)])
        keyframe_tokens = sum(t.shape[0] for t in pooled.values())
        return VideoEncoding(tokens, selection, keyframe_tokens, sum(t.shape[0] for t in merged.values()))

    def get_video_features(self, pixel_values_videos: torch.Tensor, clip_pixel_values_videos: torch.Tensor,
                           video_num_frames: torch.Tensor, clip_input_ids: torch.Tensor,
                           clip_attention_mask: torch.Tensor | None = None,
                           video_caches: list[VideoFeatureCache | None] | None = None) -> list[VideoEncoding]:
        """The processor's video tensors -> one `VideoEncoding` per video, in prompt order.

        pixel_values_videos (sum N, S, S, 3) and clip_pixel_values_videos (sum N, C, C, 3) uint8, video_num_frames
        (V,), clip_input_ids / clip_attention_mask (V, T) (padding is dropped before CLIP sees the query);
        video_caches: one `VideoFeatureCache` (or None) per video, reused across questions about it.
        """
        counts = [int(n) for n in video_num_frames]
        if sum(counts) != pixel_values_videos.shape[0] or len(counts) != clip_input_ids.shape[0]:
            raise ValueError(f"video_num_frames {counts} does not match {pixel_values_videos.shape[0]} frames and "
                             f"{clip_input_ids.shape[0]} queries")
        caches = video_caches or [None] * len(counts)
        encodings, start = [], 0
        for v, count in enumerate(counts):
            frames = VideoFrames(pixel_values_videos[start : start + count], clip_pixel_values_videos[start : start + count])
            keep = clip_attention_mask[v].bool() if clip_attention_mask is not None else slice(None)
            ids = clip_input_ids[v][keep]
            encodings.append(self.encode_video(VideoInputs(frames, ids, torch.ones_like(ids), caches[v])))
            start += count
        return encodings

    def get_placeholder_mask(self, input_ids: torch.Tensor, video_features: torch.Tensor) -> torch.Tensor:
        """(B, L) ids, (T_all, D) features -> (B, L) bool mask of the video tokens; their count must be T_all."""
        token_id = self.config.video_token_id
        if token_id is None:
            raise ValueError("config.video_token_id is not set: load the checkpoint with load_pretrained_model, or "
                             "write its processor once with `python -m llava.convert CHECKPOINT`")
        mask = input_ids == token_id
        if int(mask.sum()) != video_features.shape[0]:
            raise ValueError(f"Video features and video tokens do not match: {int(mask.sum())} video tokens in the "
                             f"prompts, {video_features.shape[0]} features; build the inputs with VilampProcessor "
                             "for this checkpoint (the count depends on the frames and the config)")
        return mask

    def idle_vision_pass(self) -> torch.Tensor:
        """Run every vision module on a blank one-frame video; returns a zero-valued scalar tied to their weights.

        Text-only training samples call it so that every rank makes the same module calls on every step.
        """
        tower, clip = self.vision_tower.config.image_size, self.frame_selector.image_size
        frames = VideoFrames(torch.zeros(1, tower, tower, 3, dtype=torch.uint8), torch.zeros(1, clip, clip, 3, dtype=torch.uint8))
        return self.encode_video(VideoInputs(frames, torch.zeros(1, dtype=torch.long))).tokens.sum()

    def _selector_is_trained(self) -> bool:
        return self.training and any(p.requires_grad for p in self.frame_selector.parameters())

    def _encode_from_clip(self, frames: VideoFrames, keyframes: list[int], query_emb: torch.Tensor,
                          image_embs: torch.Tensor):
        """Composers without `uses_siglip`: only keyframes see SigLIP; the others merge from their CLIP embedding.
        Returns ({keyframe: (K_tok, D)}, {other frame: (T, D)})."""
        pooled = {}
        size = self.chunk_size(len(keyframes))
        for start in range(0, len(keyframes), size):
            batch = keyframes[start : start + size]
            pooled.update(zip(batch, self.pool(self.project_frames(frames.siglip[batch]))))
        others = [f for f in range(len(frames)) if f not in pooled]
        tokens = self.composer_projector.merge(None, image_embs[others], query_emb, None)
        return pooled, dict(zip(others, tokens))

    def _encode_streaming(self, frames: VideoFrames, keyframes: list[int], query_emb: torch.Tensor,
                          image_embs: torch.Tensor, cache: VideoFeatureCache | None = None):
        """Composers with `uses_siglip`: every frame goes through SigLIP, in fixed temporal chunks.
        Returns ({keyframe: (K_tok, D)}, {other frame: (T, D)}).

        Only the reference keys W_k r that later frames still need are kept between chunks. A chunk holding a
        reference that an EARLIER chunk needs (under `preceding_keyframe`: the first keyframe, for the frames before
        it) is processed first; such a chunk never needs references from other chunks.
        """
        num_frames = len(frames)
        keyframe_set = set(keyframes)
        composer = self.composer_projector
        with_refs = composer.uses_reference
        refs = reference_frames(keyframes, num_frames, self.config.dfm_reference) if with_refs else [0] * num_frames
        users = Counter(refs[f] for f in range(num_frames) if with_refs and f not in keyframe_set)
        keys: dict[int, torch.Tensor] = {}  # reference frame -> W_k r, dropped once its last user is merged
        pooled: dict[int, torch.Tensor] = {}
        merged: dict[int, torch.Tensor] = {}
        size = self.chunk_size(num_frames)

        def encode(start: int) -> None:
            chunk = list(range(start, min(start + size, num_frames)))
            features = cache.chunks.get(start) if cache is not None else None
            if features is None:
                features = self.project_frames(frames.siglip[chunk])
                if cache is not None:
                    cache.offer(start, features)
            new_refs = [row for row, frame in enumerate(chunk) if frame in users]
            if new_refs:
                keys.update(zip([chunk[r] for r in new_refs], composer.reference_keys(features[new_refs])))
            key_rows = [row for row, frame in enumerate(chunk) if frame in keyframe_set]
            if key_rows:
                pooled.update(zip([chunk[r] for r in key_rows], self.pool(features[key_rows])))
            other_rows = [row for row, frame in enumerate(chunk) if frame not in keyframe_set]
            if other_rows:
                others = [chunk[r] for r in other_rows]
                ref_keys = torch.stack([keys[refs[frame]] for frame in others]) if with_refs else None
                merged.update(zip(others, composer.merge(features[other_rows], image_embs[others], query_emb, ref_keys)))
                if with_refs:
                    users.subtract(refs[frame] for frame in others)
                    for ref in [r for r in keys if users[r] == 0]:
                        del keys[ref]

        others = [f for f in range(num_frames) if f not in keyframe_set]
        first = sorted({refs[f] // size * size for f in others if with_refs and refs[f] // size > f // size})
        for start in first + [s for s in range(0, num_frames, size) if s not in first]:
            encode(start)
        if not merged and self.training and any(True for _ in composer.parameters()):
            # All keyframes, no frame to merge: still call the merger so every rank runs the same modules.
            empty = self.image_newline.new_zeros(0, self.vision_tower.num_patches, self.config.hidden_size)
            unused = composer.merge(empty, image_embs[:0], query_emb,
                                    composer.reference_keys(empty) if with_refs else None)
            pooled[keyframes[0]] = pooled[keyframes[0]] + 0 * unused.sum()  # zero gradients, not None
        return pooled, merged


class LlavaQwenForCausalLM(LlavaQwenPreTrainedModel, Qwen2ForCausalLM):
    def __init__(self, config: LlavaQwenConfig):
        super(Qwen2ForCausalLM, self).__init__(config)  # PreTrainedModel only: no throw-away Qwen2Model
        self.model = LlavaQwenModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                pixel_values_videos=None, clip_pixel_values_videos=None, video_num_frames=None, clip_input_ids=None,
                clip_attention_mask=None, video_encodings: list[VideoEncoding] | None = None,
                video_caches: list[VideoFeatureCache | None] | None = None,
                logits_to_keep: int | torch.Tensor = 0, **kwargs):
        """Qwen2ForCausalLM.forward plus the processor's video tensors (see `LlavaQwenModel.get_video_features`),
        or `video_encodings` already computed by it; their tokens fill the prompt's video tokens, whose labels are
        ignored. `logits_to_keep` is explicit so that `generate` computes logits for the last position only."""
        if pixel_values_videos is not None or video_encodings is not None:
            if inputs_embeds is not None:
                raise ValueError("pass videos with input_ids, not with inputs_embeds")
            if video_encodings is None:
                video_encodings = self.model.get_video_features(pixel_values_videos, clip_pixel_values_videos,
                                                                video_num_frames, clip_input_ids, clip_attention_mask,
                                                                video_caches)
            inputs_embeds, labels = self._scatter_videos(input_ids, video_encodings, labels)
            input_ids = None
        elif input_ids is not None:
            if self.config.video_token_id is not None and bool((input_ids == self.config.video_token_id).any()):
                raise ValueError("the prompt holds video tokens but no video was given (pixel_values_videos)")
            if self.training:  # no video in the batch: one idle vision pass per sample, as in a batch of videos
                inputs_embeds = self.model.embed_tokens(input_ids) + 0 * self._idle_passes(input_ids.shape[0])
                input_ids = None
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            labels=labels,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    def _scatter_videos(self, input_ids: torch.Tensor, encodings: list[VideoEncoding], labels: torch.Tensor | None):
        """Token embeddings (B, L, D) with every video's block in its video tokens, and labels ignoring them."""
        embed = self.model.embed_tokens
        features = torch.cat([e.tokens for e in encodings]).to(embed.weight.dtype)
        mask = self.model.get_placeholder_mask(input_ids, features)
        limit = self.config.tokenizer_model_max_length
        if limit is not None and input_ids.shape[1] > limit:
            raise PromptTooLongError(f"a sequence of {input_ids.shape[1]} tokens exceeds "
                                     f"tokenizer_model_max_length={limit}; "
                                     "use fewer frames (max_frame_num) or a shorter prompt")
        # The video token may lie past the embedding table (a tokenizer that gained it after training): any id will do.
        embeds = embed(input_ids.masked_fill(mask, 0)).masked_scatter(mask[..., None], features)
        if self.training:  # text-only samples of a mixed batch
            embeds = embeds + 0 * self._idle_passes(int((~mask.any(dim=1)).sum()))
        return embeds, labels.masked_fill(mask, IGNORE_INDEX) if labels is not None else None

    def _idle_passes(self, count: int) -> torch.Tensor | int:
        """`count` idle vision passes (ZeRO-3: every rank makes one set of vision calls per sample)."""
        return sum(self.model.idle_vision_pass() for _ in range(count))

    def prepare_inputs_for_generation(self, input_ids, next_sequence_length=None, cache=None, attention_mask=None,
                                      inputs_embeds=None, is_first_iteration=False, **kwargs):
        """Videos enter at the prefill only; positions count real tokens only, so that a left-padded prompt sees
        the positions it would see alone."""
        if not is_first_iteration and kwargs.get("use_cache", True):
            for key in VIDEO_INPUTS:
                kwargs.pop(key, None)
        inputs = super().prepare_inputs_for_generation(
            input_ids, next_sequence_length=next_sequence_length, cache=cache, attention_mask=attention_mask,
            inputs_embeds=inputs_embeds, is_first_iteration=is_first_iteration, **kwargs,
        )
        if attention_mask is not None and inputs.get("position_ids") is None and attention_mask.ndim == 2:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            length = (inputs["input_ids"] if inputs.get("input_ids") is not None else inputs["inputs_embeds"]).shape[1]
            inputs["position_ids"] = positions[:, -length:]
        return inputs


def distinct_frames(frames: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """(N, ...) uint8 frames -> (index of the first occurrence of each distinct frame, (N,) position of every frame
    in that list). Frames are compared by a digest of their bytes."""
    first: dict[bytes, int] = {}
    inverse = [first.setdefault(hashlib.blake2b(frame.numpy().tobytes(), digest_size=16).digest(), len(first))
               for frame in frames.cpu()]
    distinct = [0] * len(first)
    for frame, slot in reversed(list(enumerate(inverse))):
        distinct[slot] = frame
    return distinct, torch.tensor(inverse, dtype=torch.long)


def _straight_through(per_frame: list[torch.Tensor], relevance: torch.Tensor) -> list[torch.Tensor]:
    """Scale frame f's tokens by 1 + s_f - stop_grad(s_f), s = softmax(relevance): values unchanged, while the
    loss reaches CLIP through the relevance of every frame (the released straight-through estimator, applied to the
    tokens instead of mutating the caller's pixels)."""
    soft = torch.softmax(relevance, dim=0)
    scale = 1 + soft - soft.detach()
    return [tokens * scale[f].to(tokens.dtype) for f, tokens in enumerate(per_frame)]
