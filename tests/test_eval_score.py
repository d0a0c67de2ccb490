"""Scoring on hand-made records with known accuracy, for every benchmark; clustered intervals; coverage."""

import json
import math

import pytest

from llava.eval.harness import MANIFEST
from llava.eval.score import clustered_accuracy, format_summary, score_run


def rec(benchmark, qid, video, correct, **fields):
    return {"benchmark": benchmark, "qid": qid, "video_id": video, "correct": correct, "choice": "A", "error": None,
            **fields}


def write_run(tmp_path, records, expected=None, files=1):
    for shard in range(files):
        lines = [json.dumps(r) + "\n" for i, r in enumerate(records) if i % files == shard]
        (tmp_path / f"x_{shard + 1}_of_{files}.jsonl").write_text("".join(lines))
    if expected is not None:
        (tmp_path / MANIFEST).write_text(json.dumps({"items": expected}))
    return tmp_path


def rows(summary, title_part):
    tab = next(t for t in summary["tables"] if title_part in t["title"])
    return {r["group"]: r for r in tab["rows"]}


def test_clustered_interval_matches_hand_computation():
    records = [{"video_id": v, "correct": c} for v, c in [("a", 1), ("a", 1), ("b", 0), ("c", 1)]]
    estimate, half = clustered_accuracy(records)
    assert estimate == 0.75
    influence = [(1 - .75 + 1 - .75) / 4, (0 - .75) / 4, (1 - .75) / 4]
    assert half == pytest.approx(1.959964 * math.sqrt(3 / 2 * sum(x * x for x in influence)))
    assert clustered_accuracy(records[:2])[1] is None  # one video: no interval


def test_videomme(tmp_path):
    records = [rec("videomme", f"q{i}", f"v{i // 3}", i % 2 == 0, duration=d, task_type=t, domain="x",
                   sub_category="y")
               for i, (d, t) in enumerate([("short", "OCR")] * 3 + [("long", "Counting")] * 3)]
    records[5].update(error="VideoDecodeError: v1.mp4: video file not found", choice=None)
    summary = score_run(write_run(tmp_path, records, [r["qid"] for r in records] + ["q6"], files=2))
    duration = rows(summary, "by duration")
    assert duration["overall"]["accuracy"] == pytest.approx(3 / 6)
    assert duration["short"]["accuracy"] == pytest.approx(2 / 3) and duration["long"]["accuracy"] == pytest.approx(1 / 3)
    assert rows(summary, "task type")["OCR"]["n"] == 3
    assert summary["missing"] == 1 and summary["missing_examples"] == ["q6"] and summary["errors"] == 1
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "summary.png").stat().st_size > 1000
    assert "Video-MME" in format_summary(summary)


def test_mlvu_m_avg_and_weighted_mean(tmp_path):
    records = [rec("mlvu", f"p{i}", f"v{i}", i < 3, question_type="plotQA") for i in range(4)]  # 3/4
    records += [rec("mlvu", f"c{i}", f"w{i}", i < 1, question_type="count") for i in range(2)]  # 1/2
    records += [rec("mlvu", "s0", "z", None, question_type="summary", choice=None)]
    summary = score_run(write_run(tmp_path, records))
    table = rows(summary, "MLVU")
    assert table["M-Avg (mean of task accuracies)"]["accuracy"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert table["sample-weighted mean (all questions)"]["accuracy"] == pytest.approx(4 / 6)
    assert table["count"]["accuracy"] == pytest.approx(0.5) and "summary" not in table
    assert summary["not_scored"] == 1


def test_longvideobench_egoschema_and_extraction_failures(tmp_path):
    records = [rec("longvideobench", f"q{i}", f"v{i}", i == 0, duration_group=g) for i, g in enumerate([15, 15, 600])]
    records[2]["choice"] = None  # the answer named no option: wrong, and counted
    (tmp_path / "lvb").mkdir()
    summary = score_run(write_run(tmp_path / "lvb", records))
    table = rows(summary, "LongVideoBench")
    assert table["overall"]["accuracy"] == pytest.approx(1 / 3) and table["15"]["accuracy"] == pytest.approx(0.5)
    assert summary["extraction_failures"] == 1 and summary["extraction_failure_rate"] == pytest.approx(1 / 3)
    (tmp_path / "ego").mkdir()
    ego = [rec("egoschema", f"q{i}", f"v{i}", i < 4) for i in range(5)]
    assert rows(score_run(write_run(tmp_path / "ego", ego)), "EgoSchema")["overall"]["accuracy"] == pytest.approx(0.8)


def test_activitynetqa_and_duplicates(tmp_path):
    records = [
        rec("activitynetqa", "a", "v1", True, answer_type="yes/no", relaxed=True),
        rec("activitynetqa", "b", "v1", False, answer_type="yes/no", relaxed=False),
        rec("activitynetqa", "c", "v2", False, answer_type="other", relaxed=True),
        rec("activitynetqa", "d", "v3", True, answer_type="other", relaxed=True),
    ]
    path = write_run(tmp_path, records)
    (tmp_path / "z_1_of_1.jsonl").write_text(json.dumps(dict(records[0], correct=False)) + "\n")
    summary = score_run(path)
    assert summary["duplicates"] == 1 and summary["duplicate_examples"] == ["a"]
    assert rows(summary, "yes/no")["overall"]["accuracy"] == pytest.approx(0.5)
    assert rows(summary, "exact match")["overall"]["accuracy"] == pytest.approx(0.5)
    assert rows(summary, "relaxed")["overall"]["accuracy"] == pytest.approx(0.75)


def test_judge_through_a_local_endpoint(tmp_path, monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.headers.get("Authorization"), body["model"]))
            verdict = "yes" if "Predicted answer: a black dog" in body["messages"][0]["content"] else "no"
            reply = json.dumps({"choices": [{"message": {"content": verdict}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("JUDGE_KEY", "secret-key")
    records = [rec("activitynetqa", q, v, False, answer_type="other", relaxed=True, question="what colour",
                   answer="black", response=resp) for q, v, resp in [("a", "v1", "a black dog"), ("b", "v2", "white")]]
    write_run(tmp_path, records)
    judge = {"url": f"http://127.0.0.1:{server.server_port}/v1", "model": "judge-m", "key_env": "JUDGE_KEY"}
    summary = score_run(tmp_path, judge)
    server.shutdown()
    assert seen == [("Bearer secret-key", "judge-m")] * 2
    assert rows(summary, "LLM judge")["overall"]["accuracy"] == pytest.approx(0.5)
    assert summary["judge_model"] == "judge-m"
    assert all("secret-key" not in p.read_text() for p in tmp_path.iterdir() if p.suffix in (".json", ".jsonl"))
    score_run(tmp_path, judge)  # cached verdicts: the endpoint is not asked again
    assert len(seen) == 2
