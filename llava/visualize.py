"""One picture of what the model looked at in a video: `visualize(...)` or `python -m llava.cli VIDEO Q --visualize`.

From top to bottom:
- a timeline of the whole video (x: seconds, with hh:mm:ss on top) with the CLIP relevance of every sampled frame to
  the question, the keyframes (red dots and lines) and the frames whose DFM weights are shown (lettered diamonds);
- the keyframes as thumbnails, in time order, in rows of at most 16; above each row a fan of lines joins every
  thumbnail to its place on a ruler as long as the timeline, so no label on the timeline is needed;
- for a few non-keyframes, evenly spread, the DFM patch weights (`sig_pooling` only) over the frame.

Frames are shown as the model sees them: the SigLIP input, squashed to a square. The figure is drawn with
matplotlib's object API (no pyplot, no global state); its pixel size is `FIGURE_WIDTH` x the height its rows need.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:  # the model stack is imported only when heatmaps are computed: `timestamp` stays cheap for the CLI
    from llava.inference import VideoAnswer
    from llava.video import DecodedVideo

DPI = 100
FIGURE_WIDTH = 16.0  # inches: 1600 pixels
LEFT, RIGHT = 1.0, 0.5  # inches of margin beside the plots
THUMBNAIL_COLUMNS = 16  # most thumbnails in a row
MIN_COLUMNS = 8  # fewer keyframes leave columns empty rather than grow
HEATMAP_COUNT = 6
MIN_RELEVANCE_SPAN = 0.05  # y range of a flat relevance curve (keeps tick labels short)
# Section heights, inches.
HEADER, TIMELINE, FAN, LABEL, SECTION_TITLE, NOTE = 1.0, 2.6, 0.55, 0.3, 0.35, 0.5
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800)  # seconds
MAX_TICKS = 10
KEYFRAME_COLOUR, CURVE_COLOUR, HEATMAP_COLOUR = "#d62728", "#1f77b4", "#ff9f1c"
def timestamp(seconds: float) -> str:
    """Seconds -> "hh:mm:ss" (rounded to the second)."""
    total = int(round(seconds))
    return f"{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}"


@dataclass
class Heatmap:
    """DFM patch weights of one merged frame."""

    frame: int  # index into the sampled frames
    reference: int  # the frame its patches were compared with
    weights: np.ndarray  # (grid, grid) softmax weights, summing to 1


def heatmap_frames(keyframes: list[int], num_frames: int, count: int = HEATMAP_COUNT) -> list[int]:
    """Up to `count` non-keyframes spread evenly over the non-keyframes, in time order."""
    chosen = set(keyframes)
    others = [frame for frame in range(num_frames) if frame not in chosen]
    if not others:
        return []
    picks = np.linspace(0, len(others) - 1, min(count, len(others))).round().astype(int)
    return [others[i] for i in sorted(set(picks.tolist()))]


@torch.no_grad()
def patch_heatmaps(model, processor, video: DecodedVideo, question: str, keyframes: list[int],
                   rows: list[int]) -> list[Heatmap]:
    """The `sig_pooling` weights the merger gives the patches of frames `rows` (non-keyframes) for `question`."""
    from llava.model.merger import reference_frames
    from llava.processing import tokenize_query

    inner = model.model
    query_emb = inner.embed_query(*tokenize_query(processor.clip_tokenizer, question))
    refs = reference_frames(keyframes, len(video.frames), model.config.dfm_reference)
    features = inner.project_frames(video.frames.siglip[rows])
    keys = inner.composer_projector.reference_keys(inner.project_frames(video.frames.siglip[[refs[f] for f in rows]]))
    weights = inner.composer_projector.patch_weights(features, query_emb, keys).cpu().numpy()
    grid = inner.vision_tower.grid_size
    return [Heatmap(frame, refs[frame], w.reshape(grid, grid)) for frame, w in zip(rows, weights)]


def heatmaps_or_reason(model, processor, video: DecodedVideo, question: str,
                       answer: VideoAnswer) -> list[Heatmap] | str:
    """Heatmaps of a few non-keyframes, or the sentence the figure shows instead."""
    composer = model.model.composer_projector
    if not hasattr(composer, "patch_weights"):
        return (f"No DFM heatmaps: this checkpoint's merger (composer_type={model.config.composer_type!r}) "
                f"{composer.description}, "
                "so there are no patch weights to show.")
    rows = heatmap_frames(answer.keyframes, answer.num_frames)
    if not rows:
        return "No DFM heatmaps: every sampled frame is a keyframe, so no frame was merged."
    return patch_heatmaps(model, processor, video, question, answer.keyframes, rows)


def tick_step(duration: float) -> int:
    """The smallest round step (seconds) that puts at most MAX_TICKS + 1 ticks on [0, duration]."""
    return next((step for step in TICK_STEPS if duration / step <= MAX_TICKS), TICK_STEPS[-1])


def _escape(text: str) -> str:
    """Text shown verbatim (matplotlib would read $...$ as math)."""
    return text.replace("$", r"\$")


def _one_line(text: str, width: int) -> str:
    """One shortened line; characters with no glyph (control characters) shown as U+FFFD."""
    text = "".join(char if char.isprintable() else "\ufffd" for char in " ".join(text.split()))
    return textwrap.shorten(text, width, placeholder=" ...") or "(empty)"


class _Layout:
    """Places axes top to bottom in inches on a figure of fixed width."""

    def __init__(self, height: float):
        self.height, self.top = height, 0.0

    def take(self, height: float) -> tuple[float, float]:
        """Reserve `height` inches below the previous section -> (bottom, height) as figure fractions."""
        self.top += height
        return 1 - self.top / self.height, height / self.height


def _thumbnail_side(columns: int) -> float:
    return (FIGURE_WIDTH - LEFT - RIGHT) / columns * 0.92


def _heatmap_side() -> float:
    return (FIGURE_WIDTH - LEFT - RIGHT) / HEATMAP_COUNT * 0.8


def _columns(num_keyframes: int) -> int:
    return min(max(num_keyframes, MIN_COLUMNS), THUMBNAIL_COLUMNS)


def figure_height(num_keyframes: int, has_heatmaps: bool) -> float:
    """Height in inches of the figure for `num_keyframes` keyframes (rounded to whole pixels)."""
    columns = _columns(num_keyframes)
    rows = -(-num_keyframes // columns)
    height = HEADER + TIMELINE + SECTION_TITLE + rows * (FAN + _thumbnail_side(columns) + LABEL) + SECTION_TITLE
    height += _heatmap_side() + 2 * LABEL if has_heatmaps else NOTE
    return round(height * DPI) / DPI


def draw(video: DecodedVideo, answer: VideoAnswer, question: str, heatmaps: list[Heatmap] | str,
         name: str = "video") -> Figure:
    """The figure for one answered question; `heatmaps` is a list, or the reason there are none."""
    times = np.asarray(video.indices, dtype=float) / video.fps
    duration = max(video.total_frames / video.fps, float(times[-1]), 1e-3)
    relevance = answer.encoding.selection.relevance.float().cpu().numpy()
    keyframes = answer.keyframes
    height = figure_height(len(keyframes), isinstance(heatmaps, list))
    figure = Figure(figsize=(FIGURE_WIDTH, height), dpi=DPI)
    layout = _Layout(height)
    x0, width = LEFT / FIGURE_WIDTH, (FIGURE_WIDTH - LEFT - RIGHT) / FIGURE_WIDTH

    bottom, size = layout.take(HEADER)
    header = [
        (f"{_escape(name)}: {timestamp(duration)}, {_plural(len(times), 'frame')} sampled, "
         f"{_plural(len(keyframes), 'keyframe')}; tokens: {answer.keyframe_tokens} keyframe + "
         f"{answer.merged_tokens} merged + 1 newline + {answer.text_tokens} text", "bold"),
        (f"Q: {_escape(_one_line(question, 170))}", "normal"),
        (f"A: {_escape(_one_line(answer.text, 170))}", "normal"),
    ]
    for line, (text, weight) in enumerate(header):
        figure.text(x0, bottom + size * (0.78 - 0.28 * line), text, fontsize=12 if line == 0 else 11,
                    fontweight=weight, va="center")

    bottom, size = layout.take(TIMELINE)
    timeline = figure.add_axes((x0, bottom + size * 0.22, width, size * 0.6), label="timeline")
    _draw_timeline(timeline, times, relevance, keyframes, heatmaps, duration)

    bottom, size = layout.take(SECTION_TITLE)
    per_keyframe = answer.keyframe_tokens // len(keyframes)
    figure.text(x0, bottom + size * 0.35, f"Keyframes ({len(keyframes)}, {per_keyframe} tokens each), in time order; "
                "the lines join each one to its time", fontsize=11, fontweight="bold")
    _draw_keyframes(figure, layout, video, times, keyframes, duration, x0, width)

    bottom, size = layout.take(SECTION_TITLE)
    figure.text(x0, bottom + size * 0.35, "DFM patch weights of merged frames (one token each): bright patches make "
                "the token, i.e. match the question and differ from the reference frame", fontsize=11,
                fontweight="bold")
    if isinstance(heatmaps, str):
        bottom, size = layout.take(NOTE)
        figure.text(x0, bottom + size * 0.5, heatmaps, fontsize=11, va="center", style="italic")
    else:
        _draw_heatmaps(figure, layout, video, times, heatmaps, x0, width)
    return figure


def _draw_timeline(ax, times, relevance, keyframes, heatmaps, duration) -> None:
    ax.plot(times, relevance, color=CURVE_COLOUR, linewidth=1.2, marker="." if len(times) <= 60 else None,
            label="CLIP relevance of each sampled frame")
    for frame in keyframes:
        ax.axvline(times[frame], color=KEYFRAME_COLOUR, linewidth=0.6, alpha=0.35, zorder=1)
    ax.scatter(times[keyframes], relevance[keyframes], s=36, color=KEYFRAME_COLOUR, zorder=4, gid="keyframes",
               label="keyframe")
    if not isinstance(heatmaps, str):
        rows = [heatmap.frame for heatmap in heatmaps]
        ax.scatter(times[rows], relevance[rows], s=60, marker="D", color=HEATMAP_COLOUR, edgecolor="black",
                   zorder=5, gid="heatmap_frames", label="merged frame shown below")
        for letter, frame in zip(_letters(len(rows)), rows):
            ax.annotate(letter, (times[frame], relevance[frame]), xytext=(0, 9), textcoords="offset points",
                        ha="center", fontsize=10, fontweight="bold")
    step = tick_step(duration)
    ticks = np.arange(0, duration + 1e-9, step)
    ax.set_xlim(0, duration)
    ax.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
    ax.set_xlabel("time (s)")
    top = ax.secondary_xaxis("top")
    top.set_xticks(ticks, [timestamp(tick) for tick in ticks], fontsize=8, color="dimgray")
    low, high = float(relevance.min()), float(relevance.max())
    middle, half = (low + high) / 2, max(high - low, MIN_RELEVANCE_SPAN) * 0.65
    ax.set_ylim(middle - half, middle + half)
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.set_ylabel("relevance\n(cos frame, question)")
    ax.set_title("Timeline: how well each sampled frame matches the question (CLIP), and what was kept",
                 fontsize=12, fontweight="bold", loc="left", pad=22)
    ax.legend(loc="upper right", bbox_to_anchor=(1, -0.12), fontsize=9, ncols=3, frameon=False)
    ax.grid(axis="x", alpha=0.3)


def _draw_keyframes(figure, layout, video, times, keyframes, duration, x0, width) -> None:
    """Rows of thumbnails, each under a fan from a time ruler (same span as the timeline) to the thumbnails."""
    columns = _columns(len(keyframes))
    cell, thumbnail = width / columns, _thumbnail_side(columns)
    for start in range(0, len(keyframes), columns):
        row = keyframes[start : start + columns]
        bottom, size = layout.take(FAN)
        fan = figure.add_axes((x0, bottom, width, size), label=f"fan {start // columns}")
        fan.set_xlim(0, 1)
        fan.set_ylim(0, 1)
        fan.axis("off")
        fan.plot([0, 1], [0.92, 0.92], color="gray", linewidth=1)
        for edge, text in ((0, "00:00:00"), (1, timestamp(duration))):
            fan.text(edge, 0.98, text, ha="left" if edge == 0 else "right", va="bottom", fontsize=7, color="gray")
        for column, frame in enumerate(row):
            x = times[frame] / duration
            fan.plot([x, x], [0.84, 1.0], color=KEYFRAME_COLOUR, linewidth=1.2)
            fan.plot([x, (column + 0.5) / columns], [0.84, 0.0], color=KEYFRAME_COLOUR, linewidth=0.7, alpha=0.6)
        bottom, size = layout.take(thumbnail + LABEL)
        for column, frame in enumerate(row):
            ax = figure.add_axes((x0 + column * cell + cell * 0.04, bottom + size * LABEL / (thumbnail + LABEL),
                                  cell * 0.92, size * thumbnail / (thumbnail + LABEL)), label=f"keyframe {frame}")
            ax.imshow(video.frames.siglip[frame].numpy(), aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor(KEYFRAME_COLOUR)
                spine.set_linewidth(1.5)
            ax.set_xlabel(f"#{start + column + 1}  {timestamp(times[frame])}", fontsize=8, labelpad=2)


def _draw_heatmaps(figure, layout, video, times, heatmaps, x0, width) -> None:
    """One panel per heatmap (at least one): the frame, its weights on top, and one colour bar."""
    panel = _heatmap_side()
    bottom, size = layout.take(panel + 2 * LABEL)
    cell = width / HEATMAP_COUNT
    side = video.frames.siglip.shape[1]
    for column, (letter, heatmap) in enumerate(zip(_letters(len(heatmaps)), heatmaps)):
        ax = figure.add_axes((x0 + column * cell + cell * 0.1, bottom + size * LABEL / (panel + 2 * LABEL),
                              cell * 0.8, size * panel / (panel + 2 * LABEL)), label=f"heatmap {heatmap.frame}")
        ax.imshow(video.frames.siglip[heatmap.frame].numpy(), aspect="auto")
        peak = float(heatmap.weights.max())
        scaled = heatmap.weights / peak
        image = ax.imshow(scaled, extent=(0, side, side, 0), cmap="inferno", vmin=0, vmax=1,
                          alpha=0.2 + 0.75 * scaled, interpolation="nearest", aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([])
        reference = "itself" if heatmap.reference == heatmap.frame else timestamp(times[heatmap.reference])
        ax.set_title(f"{letter}  {timestamp(times[heatmap.frame])}  (reference {reference})", fontsize=9)
        ax.set_xlabel(f"peak weight {peak:.3f} of {heatmap.weights.size} patches", fontsize=8, labelpad=2)
    right = x0 + (len(heatmaps) - 0.1) * cell + 0.08 / FIGURE_WIDTH  # just right of the last panel
    bar = figure.add_axes((right, bottom + size * 0.3, 0.12 / FIGURE_WIDTH, size * 0.5))
    figure.colorbar(image, cax=bar)
    bar.set_ylabel("weight / frame's peak", fontsize=8)
    bar.tick_params(labelsize=7)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _letters(count: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(count)]


def visualize(model, processor, video: DecodedVideo, question: str, answer: VideoAnswer, path,
              name: str = "video") -> Figure:
    """Draw the figure for `answer` and save it to `path` (format from the suffix); returns the figure."""
    figure = draw(video, answer, question, heatmaps_or_reason(model, processor, video, question, answer), name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return figure
