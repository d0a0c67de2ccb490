"""Differential feature merging (DFM): one token per non-keyframe.

`composer_type` (released names):
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


class SigPooling(nn.Module):
    """Keys `linear_iq`, `linear_ik`, `linear_q`, `linear_k`, `tau` as in the released checkpoints."""

    def __init__(self, hidden_size: int, query_dim: int, tau: float = 0.01):
        super().__init__()
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


def build_composer(composer_type: str, hidden_size: int, composer_proj_dim: int, mlp_depth: int) -> nn.Module | None:
    """The module stored as `composer_projector` (None for `average_pooling`, which has no weights)."""
    if composer_type == "sig_pooling":
        return SigPooling(hidden_size, composer_proj_dim)
    if composer_type == "single_token":
        return build_gelu_mlp(composer_proj_dim, hidden_size, mlp_depth)
    if composer_type == "average_pooling":
        return None
    raise ValueError(f"composer_type={composer_type!r} is not supported")


def average_tokens(frames: torch.Tensor) -> torch.Tensor:
    """(F, P, D) -> (F, D): plain mean over patches (sum / P, as released)."""
    return frames.sum(1) / frames.shape[1]


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
