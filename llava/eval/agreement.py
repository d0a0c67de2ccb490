"""Agreement of `extract_choice` with a person's reading, per class of response.

    python -m llava.eval.agreement CORPUS

CORPUS is JSON lines, one response a line: `class` (a name grouping similar phrasings), `options` ("A. text"
strings), `response` (what a model wrote) and `reading` (the letter a person reads in it, or null when it names no
option). The repository's corpus is tests/data/extraction_corpus.jsonl. Prints, per class, how many readings the
extractor matches, the overall rate, and every disagreement.
"""

import argparse
from collections import Counter

from llava.errors import command
from llava.eval.answers import extract_choice, split_option
from llava.eval.benchmark import EvalError, read_jsonl


def read_corpus(path) -> list[dict]:
    """The corpus rows, each checked; a row without its fields, with unlettered options or with a reading that is
    not one of its letters raises EvalError naming the file and row."""
    rows = read_jsonl(path)
    for number, row in enumerate(rows, 1):
        where = f"{path}: row {number}"
        missing = [key for key in ("class", "options", "response", "reading") if key not in row]
        if missing:
            raise EvalError(f"{where}: missing {', '.join(missing)}")
        if not isinstance(row["response"], str) or not isinstance(row["options"], list):
            raise EvalError(f"{where}: `response` must be a string and `options` a list")
        try:
            letters = [split_option(str(option))[0] for option in row["options"]]
        except ValueError as error:
            raise EvalError(f"{where}: {error}") from error
        if row["reading"] is not None and row["reading"] not in letters:
            raise EvalError(f"{where}: reading {row['reading']!r} is not one of the letters {letters}")
    return rows


def agreement(rows: list[dict]) -> tuple[dict[str, tuple[int, int]], list[tuple[dict, str | None]]]:
    """({class: (agreeing, total)} in order of first appearance, [(row, extracted) for every disagreement])."""
    agreeing, total, disagreements = Counter(), Counter(), []
    for row in rows:
        extracted = extract_choice(row["response"], row["options"])
        total[row["class"]] += 1
        if extracted == row["reading"]:
            agreeing[row["class"]] += 1
        else:
            disagreements.append((row, extracted))
    return {name: (agreeing[name], count) for name, count in total.items()}, disagreements


def format_table(by_class: dict[str, tuple[int, int]]) -> str:
    """The per-class table with an overall line."""
    overall = tuple(map(sum, zip(*by_class.values()))) if by_class else (0, 0)
    lines = [f"{'class':<26}{'agree':>7}{'total':>7}{'rate':>9}"]
    for name, (agree, count) in [*by_class.items(), ("overall", overall)]:
        lines.append(f"{name:<26}{agree:>7}{count:>7}{agree / max(count, 1):>9.1%}")
    return "\n".join(lines)


@command
def main(argv=None):
    parser = argparse.ArgumentParser(description="Agreement of the answer extractor with a person's reading.")
    parser.add_argument("corpus", help="JSON lines with class, options, response, reading")
    args = parser.parse_args(argv)
    by_class, disagreements = agreement(read_corpus(args.corpus))
    print(format_table(by_class))
    if disagreements:
        print(f"\ndisagreements ({len(disagreements)}):")
    for row, extracted in disagreements:
        print(f"  {row['class']}: read {row['reading']}, extracted {extracted}: {row['response']!r}")


if __name__ == "__main__":
    main()
