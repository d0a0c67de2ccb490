"""DKS: the O(N*K) greedy pass equals the released N x N loop; the temporal fill matches the released outputs."""

import json

import pytest
import torch
import torch.nn.functional as F

from llava.model.selector import distribute_frames, greedy_keyframes, select_keyframes, uniform_keyframes
from tests.conftest import ORACLE


def released_greedy(image_embs, text_emb, max_frames, f2f_thrd, f2t_thrd):
    """Transcription of the released loop: full f2f matrix, a visited mask, one frame per step."""
    unit = F.normalize(image_embs, dim=1)
    f2f = unit @ unit.T
    f2t = (unit @ F.normalize(text_emb[None], dim=1).T).reshape(-1)
    visited = torch.zeros(len(f2t), dtype=torch.bool)
    picks = []
    scores, order = torch.sort(f2t, descending=True, stable=True)
    for score, frame in zip(scores.tolist(), order.tolist()):
        if len(picks) >= max_frames or score < f2t_thrd:
            break
        if visited[frame]:
            continue
        visited[frame] = True
        picks.append(frame)
        visited |= f2f[frame] > f2f_thrd
    return picks


@pytest.mark.parametrize("seed", range(40))
def test_greedy_equals_the_released_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 120, (1,), generator=gen))
    dim = int(torch.randint(2, 12, (1,), generator=gen))
    scenes = torch.randn(max(1, n // 6), dim, generator=gen)
    # Frames of a few scenes plus noise, some exact duplicates: similarity structure like a real video.
    embs = scenes[torch.randint(0, len(scenes), (n,), generator=gen)] + 0.3 * torch.randn(n, dim, generator=gen)
    embs[n // 2 :: 7] = embs[0]
    text = torch.randn(dim, generator=gen)
    k = int(torch.randint(1, 40, (1,), generator=gen))
    f2f = float(torch.empty(1).uniform_(0.3, 0.99, generator=gen))
    f2t = float(torch.empty(1).uniform_(-1.0, 0.3, generator=gen))
    picks, relevance = greedy_keyframes(embs, text, k, f2f, f2t)
    assert picks == released_greedy(embs, text, k, f2f, f2t)
    assert relevance.shape == (n,)


def test_fill_reproduces_every_released_case():
    for case in sorted(ORACLE.glob("case_*")):
        for record in json.loads((case / "distribute_frames.json").read_text()):
            assert distribute_frames(record["is_selected"], record["max_frame_num"]) == record["result"], record


@pytest.mark.parametrize("seed", range(30))
def test_fill_keeps_picks_and_reaches_exactly_k(seed):
    gen = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 60, (1,), generator=gen))
    k = int(torch.randint(1, 20, (1,), generator=gen))
    picks = torch.randperm(n, generator=gen)[: int(torch.randint(0, min(n, k) + 1, (1,), generator=gen))]
    mask = [int(i in picks.tolist()) for i in range(n)]
    filled = distribute_frames(mask, k)
    assert all(f >= m for f, m in zip(filled, mask))
    assert sum(filled) == min(k, n)


def test_every_frame_is_a_keyframe_when_the_video_is_short():
    embs, text = torch.randn(5, 8), torch.randn(8)
    assert select_keyframes(embs, text, 8, 0.0, 0.9).keyframes == [0, 1, 2, 3, 4]


def test_relevance_floor_stops_the_greedy_pass_and_the_fill_tops_up():
    embs = torch.eye(6)
    text = torch.tensor([1.0, 0.5, 0, 0, 0, 0])
    selection = select_keyframes(embs, text, 3, 0.85, 0.2)
    assert selection.greedy == [0, 1]
    assert len(selection.keyframes) == 3 and {0, 1} <= set(selection.keyframes)


def test_uniform_keyframes_are_evenly_spaced():
    assert uniform_keyframes(10, 4) == [0, 3, 6, 9]
    assert uniform_keyframes(3, 4) == [0, 1, 2]
    assert uniform_keyframes(7, 1) == [0]
