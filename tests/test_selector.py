"""DKS: the O(N*K) greedy pass equals the released N x N loop; the temporal fill matches the released outputs."""

import json

import pytest
import torch

from llava.bench import released_greedy
from llava.model.selector import cosine_matrix, distribute_frames, greedy_keyframes, select_keyframes, uniform_keyframes
from tests.conftest import ORACLE

MARGIN = 1e-5  # f2f values closer than this to the threshold are decided by float rounding, not by the algorithm


def threshold_with_margin(similarities: torch.Tensor, wanted: float) -> float:
    """The threshold nearest `wanted` (in [-1, 1]) that no similarity comes within MARGIN of: our f2f entries are
    the same dot products as the released N x N matrix's but computed by smaller matmuls, which may round them to a
    neighbouring float; only a value within rounding of the threshold could be decided differently."""
    values = torch.cat([torch.tensor([-2.0, 2.0]), similarities.flatten().double()]).unique()  # sorted
    gaps = [(float(a + b) / 2, float(b - a)) for a, b in zip(values[:-1], values[1:]) if b - a > 2 * MARGIN]
    return min((mid for mid, _ in gaps), key=lambda mid: abs(mid - wanted))


def video_like_embeddings(gen: torch.Generator, n: int, dim: int) -> torch.Tensor:
    """(n, dim): frames of a few scenes plus noise; a static shot (a run of identical frames, longer than 16 when n
    allows, so the default sort reorders its ties) and a shot that returns later."""
    scenes = torch.randn(max(1, n // 6), dim, generator=gen)
    embs = scenes[torch.randint(0, len(scenes), (n,), generator=gen)] + 0.3 * torch.randn(n, dim, generator=gen)
    static = int(torch.randint(0, n, (1,), generator=gen))
    embs[static : static + 20] = embs[static]
    embs[n // 2 :: 7] = embs[0]
    return embs


@pytest.mark.parametrize("seed", range(40))
def test_greedy_equals_the_released_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 120, (1,), generator=gen))
    dim = int(torch.randint(2, 12, (1,), generator=gen))
    embs = video_like_embeddings(gen, n, dim)
    text = torch.randn(dim, generator=gen)
    k = int(torch.randint(1, 40, (1,), generator=gen))
    f2f = threshold_with_margin(cosine_matrix(embs, embs), float(torch.empty(1).uniform_(0.3, 0.99, generator=gen)))
    f2t = float(torch.empty(1).uniform_(-1.0, 0.3, generator=gen))
    picks, relevance = greedy_keyframes(embs, text, k, f2f, f2t)
    assert picks == released_greedy(embs, text, k, f2f, f2t)
    assert torch.equal(relevance, cosine_matrix(embs, text[None]).reshape(-1))


@pytest.mark.parametrize("block", [1, 3, 64])
def test_identical_frames_are_visited_in_the_released_order(block):
    """A static shot of 40 identical frames, the most relevant: the pick is the member that the released walk
    reaches first under torch's default sort (with this CPU build, frame 40: ties are not visited in frame order)."""
    gen = torch.Generator().manual_seed(0)
    embs = torch.randn(100, 16, generator=gen)
    text = torch.randn(16, generator=gen)
    embs[30:70] = text + 0.1 * torch.randn(16, generator=gen)
    picks, _ = greedy_keyframes(embs, text, 5, 0.9, -1.0, block=block)
    assert picks == released_greedy(embs, text, 5, 0.9, -1.0)
    assert 30 <= picks[0] < 70 and sum(30 <= p < 70 for p in picks) == 1


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
