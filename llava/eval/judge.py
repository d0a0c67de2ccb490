"""Optional LLM judge of open-ended answers through an OpenAI-compatible chat endpoint, by the published
ActivityNet-QA protocol (the Video-ChatGPT evaluation, Maaz et al. 2023, also lmms-eval's): the judge is given the
question, the gold answer and the prediction, and replies with a yes/no verdict and an integer score from 0 to 5.
Reported: accuracy (share of "yes") and the mean score. The two prompts below restate that protocol's rubric and
reply format in this project's words (its exact wording is not copied here), so judge numbers follow the published
protocol but may differ slightly from those of its exact prompt text.

The API key is read from an environment variable at call time and never written anywhere. Verdicts are cached in
OUTPUT_DIR/judge_{model}.jsonl ({"qid", "judge", "score"} per line) so re-scoring asks only about new records.
"""

import ast
import json
import os
import re
import urllib.request
from pathlib import Path

from llava.eval.benchmark import EvalError

SYSTEM_PROMPT = (
    "You grade answers to questions about videos. Decide whether a predicted answer means the same as the reference "
    "answer. Rules: judge the meaning, not the wording; synonyms and paraphrases count as matches; a prediction "
    "that adds claims contradicting the reference does not match."
)
USER_PROMPT = (
    "Question: {question}\nReference answer: {answer}\nPredicted answer: {response}\n\n"
    "Grade the predicted answer. Reply with a Python dictionary and nothing else, with the keys 'pred' (the string "
    "'yes' if it matches the reference, otherwise 'no') and 'score' (an integer from 0 to 5, 5 for a complete "
    "match in meaning). Example reply: {{'pred': 'no', 'score': 1}}"
)


def ask(url: str, model: str, api_key: str | None, question: str, answer: str, response: str) -> str:
    """The judge's reply text to one question-answer pair (temperature 0)."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": USER_PROMPT.format(question=question, answer=answer, response=response)}]
    body = json.dumps({"model": model, "temperature": 0, "messages": messages})
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    request = urllib.request.Request(url.rstrip("/") + "/chat/completions", body.encode(), headers)
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.load(reply)["choices"][0]["message"]["content"]


def read_verdict(reply: str) -> tuple[bool, float]:
    """(yes?, score) from a reply such as "{'pred': 'yes', 'score': 4}" (the first {...} in it); ValueError when it
    has no such dictionary, `pred` is neither yes nor no, or the score is not a number from 0 to 5."""
    found = re.search(r"\{.*?\}", reply, re.DOTALL)
    try:
        verdict = ast.literal_eval(found.group(0)) if found else None
    except (ValueError, SyntaxError):
        verdict = None
    if not isinstance(verdict, dict):
        raise ValueError(f"no {{'pred': ..., 'score': ...}} in the judge's reply {reply!r}")
    pred, score = str(verdict.get("pred", "")).strip().lower(), verdict.get("score")
    if pred not in ("yes", "no") or isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 5:
        raise ValueError(f"judge reply {reply!r}: 'pred' must be yes or no and 'score' a number from 0 to 5")
    return pred == "yes", float(score)


def read_cache(path: Path) -> dict[str, tuple[bool, float]]:
    """qid -> (verdict, score) of a judge cache file; a line without a true/false verdict and a score is an
    EvalError naming the file and line (a cache of an older judge: move it away)."""
    verdicts = {}
    if not path.is_file():
        return verdicts
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        entry = json.loads(line)
        if not isinstance(entry.get("judge"), bool) or not isinstance(entry.get("score"), int | float):
            raise EvalError(f"{path}:{number}: a cached verdict needs 'judge' (true/false) and 'score' (0-5), got "
                            f"{line.strip()[:120]}; move the file away to ask the judge again")
        verdicts[entry["qid"]] = (entry["judge"], float(entry["score"]))
    return verdicts


def judge_records(records: list[dict], output_dir: Path, url: str, model: str, key_env: str) -> None:
    """Set `judge` (bool) and `judge_score` (0-5) on every answered open-ended record (those with `relaxed`)."""
    cache_path = Path(output_dir) / f"judge_{re.sub(r'[^A-Za-z0-9._-]', '_', model)}.jsonl"
    verdicts = read_cache(cache_path)
    api_key = os.environ.get(key_env)
    with cache_path.open("a", encoding="utf-8") as cache:
        for record in records:
            if "relaxed" not in record or record.get("error"):
                continue
            qid = record["qid"]
            if qid not in verdicts:
                try:
                    reply = ask(url, model, api_key, record["question"], record["answer"], record["response"])
                except OSError as error:
                    raise EvalError(f"judge endpoint {url}: {error} (verdicts so far kept in {cache_path})") from error
                try:
                    verdicts[qid] = read_verdict(reply)
                except ValueError as error:
                    raise EvalError(f"record {qid!r}: {error} (verdicts so far kept in {cache_path})") from error
                cache.write(json.dumps({"qid": qid, "judge": verdicts[qid][0], "score": verdicts[qid][1]}) + "\n")
                cache.flush()
            record["judge"], record["judge_score"] = verdicts[qid]
