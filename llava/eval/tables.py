"""Accuracy tables of the adapters' `summarize`: rows with 95% confidence intervals clustered by video.

A table is {"title", "rows": [{"group", "n", "videos", "accuracy", "ci95": [low, high] or None}]} (rows of a judged
table also carry "mean_score"); records are the scored records of a run (`correct` True / False, `video_id`).
"""

import math
from collections import defaultdict

from llava.eval.benchmark import EvalError

Z95 = 1.959964


def truth(record: dict, key: str = "correct") -> bool:
    """`record[key]` when it is a boolean; anything else (1, "yes", None) is an EvalError naming the record."""
    value = record.get(key)
    if not isinstance(value, bool):
        raise EvalError(f"record {record.get('qid')!r}: {key!r} is {value!r}, not true or false")
    return value


def clustered_accuracy(records: list[dict], task_of=None) -> tuple[float, float | None]:
    """(estimate, 95% half-width) of the mean of per-task accuracies (one task when `task_of` is None).

    The interval is the cluster-robust (by `video_id`) linearisation variance with a G/(G-1) correction; None
    with fewer than two videos.
    """
    tasks: dict = defaultdict(list)
    for record in records:
        tasks[task_of(record) if task_of else None].append(record)
    rates = {task: sum(truth(r) for r in rs) / len(rs) for task, rs in tasks.items()}
    estimate = sum(rates.values()) / len(rates)
    influence: dict = defaultdict(float)
    for task, rs in tasks.items():
        for record in rs:
            influence[record["video_id"]] += (truth(record) - rates[task]) / (len(rs) * len(tasks))
    clusters = len(influence)
    if clusters < 2:
        return estimate, None
    variance = clusters / (clusters - 1) * sum(value * value for value in influence.values())
    return estimate, Z95 * math.sqrt(variance)


def row(group: str, records: list[dict], task_of=None, score: str | None = None) -> dict:
    """One table row: accuracy of `records` (mean of per-task accuracies with `task_of`) and its 95% CI; with
    `score`, also the mean of that numeric record field."""
    estimate, half = clustered_accuracy(records, task_of)
    ci = None if half is None else [max(0.0, estimate - half), min(1.0, estimate + half)]
    result = {"group": group, "n": len(records), "videos": len({r["video_id"] for r in records}),
              "accuracy": estimate, "ci95": ci}
    if score:
        result["mean_score"] = sum(r[score] for r in records) / len(records)
    return result


def group_order(name: str) -> tuple:
    """Numbers in numeric order (duration groups 15 < 60 < 600), then text in alphabetical order."""
    try:
        return (0, float(name), "")
    except ValueError:
        return (1, 0.0, name)


def table(title: str, records: list[dict], by: str | None = None, score: str | None = None) -> dict:
    """"overall" and, with `by`, one row per value of that record field; a list value (a question of several
    categories) puts the record in each of its groups."""
    rows = [row("overall", records, score=score)] if records else []
    if by:
        groups: dict = defaultdict(list)
        for record in records:
            values = record.get(by)
            for value in values if isinstance(values, list) else [values]:
                groups[str(value)].append(record)
        rows += [row(group, groups[group], score=score) for group in sorted(groups, key=group_order)]
    return {"title": title, "rows": rows}
