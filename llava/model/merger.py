"""Differential feature merging (DFM) and the other composers: what a non-keyframe becomes.

A composer is one `Composer` subclass registered under its `composer_type` name (`register_composer`); config
validation, the model, the processor's token count, `llava.tiny`, the CLI, the visualiser and the oracle checker read
the registry, so a new merger is one class in one file. Built in (released names):
- `sig_pooling`: token = sum_p w_p x_p with w = softmax_p((cos(q, iq_p) - cos(k_p, ik_p)) / tau), where x (P, D) is
  the frame's projected patches, iq = W_iq x, ik = W_ik x, q = W_q t (t: CLIP text embedding), k = W_k r and r the
  patches of the frame's reference frame. Keeps patches that match the query and differ from the reference.
- `single_token`: token = MLP(CLIP image embedding of the frame); the SigLIP tower never sees non-keyframes.
- `average_pooling`: token = mean of the frame's projected patches.

Reference rules (`dfm_reference`): `preceding_keyframe` (the paper) compares each frame with the nearest keyframe
before it, and frames before the first keyframe with the first keyframe. `legacy` is what the released code does
and its weights were trained with: for the j-th keyframe segment [kf_j, kf_{j+1}) the reference is FRAME INDEX j
(not keyframe j), and frames before the first keyframe are their own reference.
"""

import torch
import torch.nn.functional as F
from torch import nn

from llava.model.projector import build_gelu_mlp


class Composer(nn.Module):
    """How the model turns every non-keyframe into `tokens_per_frame` tokens; stored as `composer_projector`.

    Class attributes a subclass sets:
      uses_siglip     True: every frame goes through SigLIP and `merge` gets the frame's projected patches;
                      False: only keyframes do, and `merge` gets the frame's CLIP image embedding instead.
      uses_reference  True: `merge` also gets keys of the frame's reference frame (`dfm_reference` rule),
                      computed by `reference_keys` from that frame's projected patches.
      tokens_per_frame  tokens of one non-keyframe.
      description     one line for people ("averages all patches of each non-keyframe equally").
    The constructor takes the `LlavaQwenConfig`.
    """

    uses_siglip: bool = True
    uses_reference: bool = False
    tokens_per_frame: int = 1
    description: str = ""

    def reference_keys(self, reference: torch.Tensor) -> torch.Tensor:
        """(R, P, D) reference patches -> (R, P, D) keys (composers with `uses_reference`)."""
        raise NotImplementedError(f"{type(self).__name__} does not use reference frames")

    def merge(self, features: torch.Tensor | None, image_embs: torch.Tensor, query: torch.Tensor,
              keys: torch.Tensor | None) -> torch.Tensor:
        """features (F, P, D) projected patches (None unless `uses_siglip`), image_embs (F, E) CLIP embeddings,
        query (E,) CLIP text embedding, keys (F, P, D) reference keys (None unless `uses_reference`)
        -> (F, tokens_per_frame, D)."""
        raise NotImplementedError


COMPOSERS: dict[str, type[Composer]] = {}


def register_composer(name: str, cls: type[Composer]) -> type[Composer]:
    """Make `cls` the composer of `composer_type=name` (replacing any earlier one); returns `cls`."""
    if not (isinstance(cls, type) and issubclass(cls, Composer)):
        raise TypeError(f"register_composer({name!r}, {cls!r}): the class must subclass llava.model.Composer")
    COMPOSERS[name] = cls
    return cls


def composer_class(name: str) -> type[Composer]:
    if name not in COMPOSERS:
        raise ValueError(f"composer_type={name!r} is not registered; registered: {', '.join(sorted(COMPOSERS))}")
    return COMPOSERS[name]


class SigPooling(Composer):
    """Keys `linear_iq`, `linear_ik`, `linear_q`, `linear_k`, `tau` as in the released checkpoints."""

    uses_reference = True
    description = "keeps the patches of each non-keyframe that match the question and differ from its reference frame"

    def __init__(self, config, tau: float = 0.01):
        super().__init__()
        hidden_size, query_dim = config.hidden_size, config.composer_proj_dim
        self.linear_iq = nn.Linear(hidden_size, hidden_size)
        self.linear_ik = nn.Linear(hidden_size, hidden_size)
        self.linear_q = nn.Linear(query_dim, hidden_size)
        self.linear_k = nn.Linear(hidden_size, hidden_size)
        self.tau = nn.Parameter(torch.tensor(tau))

    def reference_keys(self, reference: torch.Tensor) -> torch.Tensor:
        """(R, P, D) reference patches -> (R, P, D) keys W_k r."""
        return self.linear_k(reference)

    def patch_weights(self, frames: torch.Tensor, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """frames (F, P, D), query (E,) CLIP text embedding, keys (F, P, D) -> softmax weights (F, P), float32."""
        q = self.linear_q(query.to(self.linear_q.weight.dtype)).float()
        to_query = F.cosine_similarity(q, self.linear_iq(frames).float(), dim=-1)
        to_reference = F.cosine_similarity(keys.float(), self.linear_ik(frames).float(), dim=-1)
        return torch.softmax((to_query - to_reference) / self.tau.float(), dim=-1)

    def forward(self, frames: torch.Tensor, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """frames (F, P, D), query (E,), keys (F, P, D) -> (F, D) merged tokens."""
        weights = self.patch_weights(frames, query, keys)
        return (weights.to(frames.dtype).unsqueeze(-1) * frames).sum(1)

    def merge(self, features, image_embs, query, keys):
        return self(features, query, keys)[:, None]


class SingleToken(Composer, nn.Sequential):
    """MLP(CLIP image embedding of the frame); keys `0`, `2`, ... as the released `composer_projector`."""

    uses_siglip = False
    description = "turns each non-keyframe into one token from its CLIP embedding"

    def __init__(self, config):
        clip_dim = config.frame_selector_clip_config.projection_dim
        if config.composer_proj_dim != clip_dim:
            raise ValueError(f"composer_proj_dim={config.composer_proj_dim} must equal the CLIP projection_dim "
                             f"{clip_dim} for composer_type='single_token'")
        nn.Sequential.__init__(self, *build_gelu_mlp(config.composer_proj_dim, config.hidden_size,
                                                     config.composer_proj_mlp_depth))

    def merge(self, features, image_embs, query, keys):
        return self(image_embs.to(self[0].weight.dtype))[:, None]


class AveragePooling(Composer):
    """Mean of the frame's projected patches (sum / P, as released); no weights."""

    description = "averages all patches of each non-keyframe equally"

    def __init__(self, config=None):
        super().__init__()

    def merge(self, features, image_embs, query, keys):
        return (features.sum(1) / features.shape[1])[:, None]


register_composer("sig_pooling", SigPooling)
register_composer("single_token", SingleToken)
register_composer("average_pooling", AveragePooling)


def reference_frames(keyframes: list[int], num_frames: int, rule: str) -> list[int]:
    """Reference frame index of every frame (N,) under `rule`; keyframes' own entries are never used."""
    if not keyframes:
        raise ValueError("DFM needs at least one keyframe")
    refs = []
    segment = -1
    for frame in range(num_frames):
        while segment + 1 < len(keyframes) and keyframes[segment + 1] <= frame:
            segment += 1
        if segment < 0:
            refs.append(frame if rule == "legacy" else keyframes[0])
        elif rule == "legacy":
            refs.append(segment)
        elif rule == "preceding_keyframe":
            refs.append(keyframes[segment])
        else:
            raise ValueError(f"dfm_reference={rule!r} is not supported")
    return refs
