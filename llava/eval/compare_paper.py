"""Our benchmark scores beside the paper's: published value, ours, our 95% CI, and whether the published value is in it.

    python -m llava.eval.compare_paper OUTPUT_ROOT

Every folder under OUTPUT_ROOT with a run.json is a run (as `scripts/eval/reproduce_paper.sh` writes them); each is
scored with `llava.eval.score.score_run` (which also rewrites its summary.json). The published values and where each
comes from are in `paper_results.json` beside this module; a value the paper does not give (or that was not found)
is null there and shown as "n/a". The interval is the scorer's: a normal-approximation 95% CI of the accuracy whose
variance is clustered by video (questions of one video are not independent), so it is wider than a Wilson interval
over questions. A run with missing questions is marked, since its interval describes only what was answered.
"""

import argparse
import json
from pathlib import Path

from llava.errors import command
from llava.eval.benchmark import EvalError
from llava.eval.records import MANIFEST
from llava.eval.score import score_run

PUBLISHED = Path(__file__).with_name("paper_results.json")


def published_results(path: Path = PUBLISHED) -> list[dict]:
    """The `results` entries of the data file: benchmark, group (a row of the summary), optional table title,
    label, value (percent, or None when not published / not found) and source."""
    return json.loads(path.read_text(encoding="utf-8"))["results"]


def find_row(summary: dict, group: str, table: str | None) -> dict | None:
    """The first row named `group` of the summary's tables (of the table titled `table` when given)."""
    for tab in summary["tables"]:
        if table is None or tab["title"] == table:
            for row in tab["rows"]:
                if row["group"] == group:
                    return row
    return None


def compare(output_root, published: list[dict] | None = None) -> list[dict]:
    """One comparison per published entry and run folder of its benchmark (an entry without a run: one row saying
    so). Accuracies in percent; `inside` is None when either the value or the interval is missing."""
    output_root = Path(output_root)
    if not output_root.is_dir():
        raise EvalError(f"OUTPUT_ROOT {output_root}: no such folder")
    published = published_results() if published is None else published
    runs: dict[str, list[tuple[Path, dict]]] = {}
    for manifest in sorted(output_root.rglob(MANIFEST)):
        try:
            summary = score_run(manifest.parent)
        except EvalError as error:
            raise EvalError(f"{manifest.parent}: cannot score this run: {error}") from error
        runs.setdefault(summary["benchmark"], []).append((manifest.parent, summary))
    comparisons = []
    for entry in published:
        base = {"label": entry["label"], "published": entry["value"], "source": entry["source"]}
        if entry["benchmark"] not in runs:
            comparisons.append({**base, "run": None, "ours": None, "ci95": None, "inside": None, "missing": None})
        for run_dir, summary in runs.get(entry["benchmark"], []):
            row = find_row(summary, entry["group"], entry.get("table"))
            ours = None if row is None else 100 * row["accuracy"]
            ci = None if row is None or row["ci95"] is None else [100 * bound for bound in row["ci95"]]
            inside = None if ci is None or entry["value"] is None else ci[0] <= entry["value"] <= ci[1]
            comparisons.append({**base, "run": str(run_dir), "ours": ours, "ci95": ci, "inside": inside,
                                "missing": summary["missing"]})
    return comparisons


def format_comparisons(comparisons: list[dict]) -> str:
    def number(value):
        return "n/a" if value is None else f"{value:.1f}"

    lines = [f"{'benchmark':<36}{'paper':>7}{'ours':>7}   {'95% CI (by video)':<18}{'inside':<8}run"]
    for c in comparisons:
        ci = "n/a" if c["ci95"] is None else f"[{c['ci95'][0]:.1f}, {c['ci95'][1]:.1f}]"
        inside = {None: "n/a", True: "yes", False: "NO"}[c["inside"]]
        where = "not run" if c["run"] is None else c["run"] + (
            f" (INCOMPLETE: {c['missing']} questions missing)" if c["missing"] else "")
        lines.append(f"{c['label'][:35]:<36}{number(c['published']):>7}{number(c['ours']):>7}   {ci:<18}{inside:<8}"
                     f"{where}")
    lines.append("\nSources:")
    for label, source in dict((c["label"], c["source"]) for c in comparisons).items():
        lines.append(f"  {label}: {source}")
    return "\n".join(lines)


@command
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Compare the runs under OUTPUT_ROOT with the paper's values.")
    parser.add_argument("output_root", type=Path, help="folder holding one run folder per benchmark")
    args = parser.parse_args(argv)
    print(format_comparisons(compare(args.output_root)))


if __name__ == "__main__":
    main()
