"""Optional LLM judge of open-ended answers through an OpenAI-compatible chat endpoint.

The API key is read from an environment variable at call time and never written anywhere. Verdicts are cached in
OUTPUT_DIR/judge_{model}.jsonl (qid, verdict) so re-scoring asks only about new records.
"""

import json
import os
import re
import urllib.request
from pathlib import Path

from llava.eval.benchmark import EvalError

PROMPT = ("Question: {question}\nCorrect answer: {answer}\nPredicted answer: {response}\n"
          "Does the predicted answer match the correct answer in meaning? Reply with yes or no only.")


def ask(url: str, model: str, api_key: str | None, content: str) -> bool:
    """One chat completion; True when the reply starts with "yes"."""
    body = json.dumps({"model": model, "temperature": 0, "messages": [{"role": "user", "content": content}]})
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    request = urllib.request.Request(url.rstrip("/") + "/chat/completions", body.encode(), headers)
    with urllib.request.urlopen(request, timeout=60) as reply:
        text = json.load(reply)["choices"][0]["message"]["content"]
    return text.strip().lower().startswith("yes")


def judge_records(records: list[dict], output_dir: Path, url: str, model: str, key_env: str) -> None:
    """Set `judge` (bool) on every answered open-ended record (those with `relaxed`)."""
    cache_path = Path(output_dir) / f"judge_{re.sub(r'[^A-Za-z0-9._-]', '_', model)}.jsonl"
    verdicts = {}
    if cache_path.is_file():
        verdicts = {r["qid"]: r["judge"] for r in map(json.loads, cache_path.read_text().splitlines()) if r}
    api_key = os.environ.get(key_env)
    with cache_path.open("a") as cache:
        for record in records:
            if "relaxed" not in record or record.get("error"):
                continue
            if record["qid"] not in verdicts:
                content = PROMPT.format(question=record["question"], answer=record["answer"],
                                        response=record["response"])
                try:
                    verdicts[record["qid"]] = ask(url, model, api_key, content)
                except OSError as error:
                    raise EvalError(f"judge endpoint {url}: {error}") from error
                cache.write(json.dumps({"qid": record["qid"], "judge": verdicts[record["qid"]]}) + "\n")
                cache.flush()
            record["judge"] = verdicts[record["qid"]]
