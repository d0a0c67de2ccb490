"""Score a run: merge every shard file of an output folder, check coverage, print accuracy tables.

    python -m llava.eval.score OUTPUT_DIR [--judge_url URL --judge_model NAME [--judge_key_env OPENAI_API_KEY]]

Writes OUTPUT_DIR/summary.json and OUTPUT_DIR/summary.png, and the benchmark's official submission file where it has
one (Video-MME's results template, EgoSchema's answers). Every record is re-graded from its `response`; a record of
another run than OUTPUT_DIR/run.json's is an error. Every accuracy comes with a 95% confidence interval clustered by
video (questions of one video are correlated). Failed items and answers that name no option count as wrong; both are
reported.
"""

import argparse
import json
from collections import Counter
from pathlib import Path

from llava.errors import command
from llava.eval.answers import grade_record
from llava.eval.benchmark import EvalError, registered
from llava.eval.records import MANIFEST, read_manifest, read_records, shard_files
from llava.files import atomic_write


def run_manifest(output_dir: Path) -> dict:
    """run.json of a run folder; its absence is an EvalError (the folder was not written by the harness)."""
    manifest = read_manifest(output_dir)
    if manifest is None or "run" not in manifest:
        raise EvalError(f"{output_dir / MANIFEST}: missing or without a run id; is {output_dir} a run folder written "
                        "by the evaluation harness (of this version)?")
    return manifest


def load_run(output_dir) -> tuple[list[dict], dict]:
    """All records of the run in `output_dir` (first copy of each qid), re-graded from their `response`, and a
    coverage report. A record of another run than run.json's is an EvalError naming its file."""
    output_dir = Path(output_dir)
    manifest = run_manifest(output_dir)
    files = shard_files(output_dir)
    if not files:
        raise EvalError(f"{output_dir}: no shard files (*_of_*.jsonl) to score")
    records, copies = [], Counter()
    for path in files:
        for record in read_records(path)[0]:
            if record.get("run") != manifest["run"]:
                raise EvalError(f"{path}: record {record['qid']!r} is of another run ({record.get('run')}; "
                                f"{MANIFEST} is run {manifest['run']}); a folder holds one run: re-run that shard "
                                "with --overwrite, or move the file away")
            copies[record["qid"]] += 1
            if copies[record["qid"]] == 1:
                records.append(record | grade_record(record))
    expected = manifest["items"]
    missing = sorted(set(expected) - set(copies))
    coverage = {
        "run": manifest["run"],
        "checkpoint": manifest["checkpoint"],
        "files": [path.name for path in files],
        "expected": len(expected),
        "missing": len(missing),
        "missing_examples": missing[:10],
        "duplicates": sum(n - 1 for n in copies.values()),
        "duplicate_examples": sorted(qid for qid, n in copies.items() if n > 1)[:10],
    }
    return records, coverage


def score_run(output_dir, judge: dict | None = None) -> dict:
    """Merge, score and write summary.json / summary.png. `judge`: {"url", "model", "key_env"} or None."""
    output_dir = Path(output_dir)
    records, coverage = load_run(output_dir)
    manifest = run_manifest(output_dir)
    adapter = registered(manifest["benchmark"], manifest["adapter"])
    if judge:
        from llava.eval.judge import judge_records

        judge_records(records, output_dir, **judge)
    graded = [record for record in records if record["correct"] is not None]
    answered = [r for r in graded if not r.get("error")]
    no_choice = sum(r.get("choice") is None for r in answered)
    summary = {
        "benchmark": adapter.name,
        "title": adapter.title,
        "records": len(records),
        **coverage,
        "errors": sum(bool(r.get("error")) for r in records),
        "not_scored": len(records) - len(graded),
        "extraction_failures": no_choice,
        "extraction_failure_rate": no_choice / len(answered) if answered else None,
        "judge_model": judge["model"] if judge else None,
        "tables": adapter.summarize(graded),
        "exports": [adapter.export(records, output_dir)] if adapter.export else [],
    }
    with atomic_write(output_dir / "summary.json") as temporary:
        temporary.write_text(json.dumps(summary, indent=2))
    plot_summary(summary, output_dir / "summary.png")
    return summary


# ----- presenting -----


def format_summary(summary: dict) -> str:
    lines = [f"{summary['title']}, {summary['checkpoint']} (run {summary['run']}): {summary['records']} records from "
             f"{len(summary['files'])} shard file(s)"]
    lines.append(f"  expected {summary['expected']}, missing {summary['missing']}"
                 + (f" (e.g. {summary['missing_examples'][:3]})" if summary["missing"] else ""))
    lines.append(f"  duplicates {summary['duplicates']}, failed items {summary['errors']} (counted wrong), "
                 f"not scored {summary['not_scored']}")
    if summary["extraction_failure_rate"] is not None:
        lines.append(f"  answers naming no option: {summary['extraction_failures']} "
                     f"({100 * summary['extraction_failure_rate']:.1f}%, counted wrong)")
    if summary["judge_model"]:
        lines.append(f"  judge: {summary['judge_model']}")
    for export in summary["exports"]:
        lines.append(f"  wrote {export['file']} ({export['format']}, {export['questions']} questions)")
    for tab in summary["tables"]:
        lines.append(f"\n{tab['title']}")
        scored = any("mean_score" in r for r in tab["rows"])
        lines.append(f"  {'group':<40}{'n':>7}{'videos':>8}{'accuracy':>10}   {'95% CI (by video)':<18}"
                     + ("mean score (0-5)" if scored else ""))
        for r in tab["rows"]:
            ci = "n/a" if r["ci95"] is None else f"[{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"
            lines.append(f"  {r['group'][:40]:<40}{r['n']:>7}{r['videos']:>8}{100 * r['accuracy']:>9.1f}%   {ci:<18}"
                         + (f"{r['mean_score']:.2f}" if scored else ""))
    return "\n".join(line.rstrip() for line in lines)


def plot_summary(summary: dict, path: Path) -> None:
    """One horizontal bar chart (accuracy with 95% CI) per table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = [tab for tab in summary["tables"] if tab["rows"]]
    if not tables:
        return
    heights = [max(1.5, 0.35 * len(tab["rows"]) + 0.8) for tab in tables]
    fig, axes = plt.subplots(len(tables), 1, figsize=(8, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, tab in zip(axes[:, 0], tables):
        rows = tab["rows"][::-1]
        values = [100 * r["accuracy"] for r in rows]
        errors = [[0 if r["ci95"] is None else 100 * (r["accuracy"] - r["ci95"][0]) for r in rows],
                  [0 if r["ci95"] is None else 100 * (r["ci95"][1] - r["accuracy"]) for r in rows]]
        ax.barh([r["group"] for r in rows], values, xerr=errors, color="tab:blue", capsize=3)
        ax.set_xlim(0, 100)
        ax.set_title(tab["title"], fontsize=10)
        ax.set_xlabel("accuracy (%)")
    fig.tight_layout()
    with atomic_write(path) as temporary:
        fig.savefig(temporary, format="png", dpi=100)
    plt.close(fig)


@command
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Merge the shard files of a run and print its accuracy tables.")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--judge_url", help="OpenAI-compatible endpoint base URL (e.g. https://host/v1)")
    parser.add_argument("--judge_model", help="model name the judge endpoint serves")
    parser.add_argument("--judge_key_env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    args = parser.parse_args(argv)
    if bool(args.judge_url) != bool(args.judge_model):
        parser.error("--judge_url and --judge_model go together")
    judge = {"url": args.judge_url, "model": args.judge_model, "key_env": args.judge_key_env} if args.judge_url else None
    print(format_summary(score_run(args.output_dir, judge)))


if __name__ == "__main__":
    main()
