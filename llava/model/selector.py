"""Differential keyframe selection (DKS): pick K query-relevant, mutually distinct frames with CLIP.

The released `SeqFrameSelector` walks frames by descending frame-to-text similarity (f2t), stops below `f2t_thrd`
or after K picks, skips frames marked "visited", and marks every frame whose frame-to-frame similarity (f2f) with a
pick exceeds `f2f_thrd` (strict) as visited; `distribute_frames` then tops the picks up to exactly K. Here the walk is
the same, with the same f2t arithmetic and the same sort, but only the similarities between the examined frames and
the picks are computed: O(N*K) time, O(N) memory instead of the N x N matrix.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPConfig, CLIPModel


@dataclass
class KeyframeSelection:
    keyframes: list[int]  # sorted frame indices, exactly min(K, N) of them unless the greedy pass overfilled
    greedy: list[int]  # frames picked by the greedy pass, before the temporal fill
    relevance: torch.Tensor  # (N,) cosine(frame, query), float32


class FrameSelector(nn.Module):
    """CLIP wrapper; the released checkpoint stores it as `frame_selector.model` (a full CLIPModel)."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.model = CLIPModel(config)

    @property
    def image_size(self) -> int:
        return self.model.config.vision_config.image_size

    @property
    def embed_dim(self) -> int:
        return self.model.config.projection_dim

    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, C, C) CLIP-normalised pixels -> (B, P) projected image embeddings (not normalised)."""
        dtype = self.model.visual_projection.weight.dtype
        return self.model.get_image_features(pixel_values=pixel_values.to(dtype)).pooler_output

    def embed_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) CLIP token ids -> (B, P) projected text embeddings (not normalised)."""
        return self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(M, P), (N, P) -> (M, N) cosine similarities, as the released code computes them (sentence-transformers'
    `cos_sim`: L2-normalise both sides, then one `torch.mm`)."""
    return torch.mm(F.normalize(a, p=2, dim=1), F.normalize(b, p=2, dim=1).T)


def visit_order(relevance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) f2t -> (f2t sorted descending, frame indices in that order), by torch's default sort as released: not
    stable, so exact ties (identical frames) come in the order the sort gives on this device, not frame order."""
    return torch.sort(relevance, descending=True)


def greedy_keyframes(
    image_embs: torch.Tensor, text_emb: torch.Tensor, max_frames: int, f2f_thrd: float, f2t_thrd: float,
    block: int = 64,
) -> tuple[list[int], torch.Tensor]:
    """Greedy DKS pass. image_embs (N, P), text_emb (P,) -> (picked frame indices in pick order, f2t (N,)).

    Frames are visited in the released order (`visit_order`), on the device and in the dtype of the inputs. A frame
    is skipped when its similarity to a frame already picked exceeds `f2f_thrd`, which is when the released loop has
    marked it visited. Candidates are examined `block` at a time: one matmul gives their highest similarity to the
    picks so far, one more their similarities to each other, and the picks inside the block are made on those.
    Only the similarities the walk needs are computed: O(N*K) time, O(N) memory.
    """
    unit = F.normalize(image_embs, p=2, dim=1)
    relevance = torch.mm(unit, F.normalize(text_emb.reshape(1, -1), p=2, dim=1).T).reshape(-1)  # = cosine_matrix
    ranked, order = visit_order(relevance)
    order = order[: int((ranked >= f2t_thrd).sum())]  # the released walk stops at the first frame below the floor
    # The released comparison `f2f > f2f_thrd` rounds the threshold to the similarities' dtype first.
    threshold = float(torch.tensor(f2f_thrd, dtype=unit.dtype))
    picks: list[int] = []
    unit = unit.detach()  # the walk makes discrete choices; gradients reach CLIP through `relevance` only
    picked = unit.new_zeros(0, unit.shape[1])  # unit vectors of the picks
    for start in range(0, len(order), block):
        if len(picks) >= max_frames:
            break
        candidates = order[start : start + block]
        vectors = unit[candidates]
        closest = (vectors @ picked.T).amax(dim=1) if picks else vectors.new_full((len(candidates),), -torch.inf)
        closest = closest.float().cpu().numpy()
        among = (vectors @ vectors.T).float().cpu().numpy()
        chosen = []
        row = 0
        while len(picks) < max_frames:
            free = np.flatnonzero(closest[row:] <= threshold)
            if len(free) == 0:
                break
            row += int(free[0])
            chosen.append(row)
            picks.append(int(candidates[row]))
            np.maximum(closest, among[row], out=closest)
            row += 1
        picked = torch.cat([picked, vectors[chosen]])
    return picks, relevance


def distribute_frames(is_selected: list[int], max_frame_num: int) -> list[int]:
    """Temporal fill of the released selector on a 0/1 list (the released interface): see `fill_keyframes`."""
    picks = [i for i, value in enumerate(is_selected) if value]
    result = list(is_selected)
    for frame in fill_keyframes(picks, len(is_selected), max_frame_num):
        result[frame] = 1
    return result


def fill_keyframes(picks: list[int], num_frames: int, max_frame_num: int) -> set[int]:
    """Frames the released fill adds to the sorted `picks` so that `max_frame_num` are chosen. O(K log N).

    Finds the smallest spacing D (binary search over 1..N) such that cutting every unselected run of length L into
    pieces of at most D needs no more than the budget, places ceil(L/D)-1 evenly spaced frames in each run
    (step ceil(L/k+1), clamped to the run's end), then spends any leftover budget on the last free frames, walking
    the runs backwards from the end. Picks already over budget get nothing added.
    """
    budget = max_frame_num - len(picks)
    bounds = [-1, *picks, num_frames]
    runs = [(a + 1, b - 1) for a, b in zip(bounds, bounds[1:]) if a + 1 <= b - 1]

    def fills(length: int, spacing: int) -> int:
        return -(-length // spacing) - 1

    low, high = 1, num_frames
    while low < high:
        mid = (low + high) // 2
        if sum(fills(end - start + 1, mid) for start, end in runs) <= budget:
            high = mid
        else:
            low = mid + 1

    added: set[int] = set()
    placed = 0
    for start, end in runs:
        length = end - start + 1
        count = fills(length, low)
        if count > 0:
            placed += count
            step = -(-length // (count + 1))
            added.update(min(start + step * i, end) for i in range(1, count + 1))
    leftover = budget - placed
    for start, end in reversed(runs):
        for pos in range(end, start - 1, -1):
            if leftover <= 0:
                return added
            if pos not in added:
                added.add(pos)
                leftover -= 1
    return added


def select_keyframes(
    image_embs: torch.Tensor, text_emb: torch.Tensor, max_frames: int, f2f_thrd: float, f2t_thrd: float
) -> KeyframeSelection:
    """Full DKS: greedy pass, then temporal fill to exactly `max_frames` (every frame when N <= max_frames)."""
    picks, relevance = greedy_keyframes(image_embs, text_emb, max_frames, f2f_thrd, f2t_thrd)
    picks = sorted(picks)
    keyframes = sorted(set(picks) | fill_keyframes(picks, len(relevance), max_frames))
    return KeyframeSelection(keyframes, picks, relevance)


def uniform_keyframes(num_frames: int, max_frames: int) -> list[int]:
    """Evenly spaced keyframes (used when `activate_frame_selector` is false)."""
    if num_frames <= max_frames:
        return list(range(num_frames))
    if max_frames == 1:
        return [0]
    return [i * (num_frames - 1) // (max_frames - 1) for i in range(max_frames)]
