"""Accuracy tables of the adapters' `summarize`: rows with 95% confidence intervals clustered by video.

A table is {"title", "rows": [{"group", "n", "videos", "accuracy", "ci95": [low, high] or None}]}; records are the
scored records of a run (`correct` True / False, `video_id`).
"""

import math
from collections import defaultdict

Z95 = 1.959964


def clustered_accuracy(records: list[dict], task_of=None) -> tuple[float, float | None]:
    """(estimate, 95% half-width) of the mean of per-task accuracies (one task when `task_of` is None).

    The interval is the cluster-robust (by `video_id`) linearisation variance with a G/(G-1) correction; None
    with fewer than two videos.
    """
    tasks: dict = defaultdict(list)
    for record in records:
        tasks[task_of(record) if task_of else None].append(record)
    rates = {task: sum(bool(r["correct"]) for r in rs) / len(rs) for task, rs in tasks.items()}
    estimate = sum(rates.values()) / len(rates)
    influence: dict = defaultdict(float)
    for task, rs in tasks.items():
        for record in rs:
            influence[record["video_id"]] += (bool(record["correct"]) - rates[task]) / (len(rs) * len(tasks))
    clusters = len(influence)
    if clusters < 2:
        return estimate, None
    variance = clusters / (clusters - 1) * sum(value * value for value in influence.values())
    return estimate, Z95 * math.sqrt(variance)


def row(group: str, records: list[dict], task_of=None) -> dict:
    """One table row: accuracy of `records` (mean of per-task accuracies with `task_of`) and its 95% CI."""
    estimate, half = clustered_accuracy(records, task_of)
    ci = None if half is None else [max(0.0, estimate - half), min(1.0, estimate + half)]
    return {"group": group, "n": len(records), "videos": len({r["video_id"] for r in records}),
            "accuracy": estimate, "ci95": ci}


def table(title: str, records: list[dict], by: str | None = None) -> dict:
    """"overall" and, with `by`, one row per value of that record field (in sorted order)."""
    rows = [row("overall", records)] if records else []
    if by:
        groups: dict = defaultdict(list)
        for record in records:
            groups[str(record.get(by))].append(record)
        rows += [row(group, groups[group]) for group in sorted(groups)]
    return {"title": title, "rows": rows}

