"""Scoring on hand-made records with known accuracy, for every benchmark; clustered intervals; coverage; one run per
folder; re-grading from the responses; the import seam."""

import ast
import json
import math
from pathlib import Path

import pytest

from llava.eval.benchmark import BENCHMARKS, EvalError, registered
from llava.eval.records import MANIFEST
from llava.eval.score import format_summary, score_run
from llava.eval.tables import clustered_accuracy

RUN = "run-under-test"


def rec(benchmark, qid, video, correct, **fields):
    """A multiple-choice record whose response grades to `correct` (None: generated, not scored)."""
    return {"benchmark": benchmark, "run": RUN, "qid": qid, "video_id": video, "question": "q?", "prompt": "q?",
            "options": ["A. yes", "B. no"], "answer": "A", "scored": correct is not None,
            "response": "A" if correct else "B", "error": None, **fields}


def open_rec(qid, video, gold, response, **fields):
    """An open-ended ActivityNet-QA record."""
    return {"benchmark": "activitynetqa", "run": RUN, "qid": qid, "video_id": video, "question": "what colour",
            "prompt": "what colour?", "options": None, "answer": gold, "scored": True, "response": response,
            "error": None, **fields}


def write_run(tmp_path, records, expected=None, files=1):
    """Shard files of `records` and the run.json of run RUN (expected: the question ids it covers)."""
    for shard in range(files):
        lines = [json.dumps(r) + "\n" for i, r in enumerate(records) if i % files == shard]
        (tmp_path / f"x_{shard + 1}_of_{files}.jsonl").write_text("".join(lines))
    benchmark = records[0]["benchmark"]
    (tmp_path / MANIFEST).write_text(json.dumps({
        "benchmark": benchmark, "adapter": f"llava.eval.{benchmark}", "run": RUN,
        "identity": {}, "checkpoint": "ckpt",
        "items": expected if expected is not None else [r["qid"] for r in records]}))
    return tmp_path


def rows(summary, title_part):
    tab = next(t for t in summary["tables"] if title_part in t["title"])
    return {r["group"]: r for r in tab["rows"]}


def test_clustered_interval_matches_hand_computation():
    records = [{"video_id": v, "correct": c} for v, c in [("a", True), ("a", True), ("b", False), ("c", True)]]
    estimate, half = clustered_accuracy(records)
    assert estimate == 0.75
    influence = [(1 - .75 + 1 - .75) / 4, (0 - .75) / 4, (1 - .75) / 4]
    assert half == pytest.approx(1.959964 * math.sqrt(3 / 2 * sum(x * x for x in influence)))
    assert clustered_accuracy(records[:2])[1] is None  # one video: no interval


def test_videomme(tmp_path):
    records = [rec("videomme", f"00{i // 3}-{i % 3}", f"v{i // 3}", i % 2 == 0, duration=d, task_type=t,
                   domain="Sports", sub_category="Football", video_number=f"00{i // 3}")
               for i, (d, t) in enumerate([("short", "OCR")] * 3 + [("long", "Counting")] * 3)]
    records[5].update(error="VideoDecodeError: v1.mp4: video file not found", response=None)
    records[1]["response"] = "I cannot tell"  # names no option: wrong for us, dropped by the official scorer
    summary = score_run(write_run(tmp_path, records, [r["qid"] for r in records] + ["q6"], files=2))
    duration = rows(summary, "by duration")
    assert duration["overall"]["accuracy"] == pytest.approx(3 / 6)
    assert duration["short"]["accuracy"] == pytest.approx(2 / 3) and duration["long"]["accuracy"] == pytest.approx(1 / 3)
    assert rows(summary, "task type")["OCR"]["n"] == 3
    assert rows(summary, "by domain")["Sports"]["n"] == 6 and rows(summary, "sub-category")["Football"]["n"] == 6
    official = rows(summary, "official scorer")
    assert official["overall"]["n"] == 4 and official["overall"]["accuracy"] == pytest.approx(3 / 4)
    assert official["short"]["accuracy"] == pytest.approx(1.0)
    assert summary["missing"] == 1 and summary["missing_examples"] == ["q6"] and summary["errors"] == 1
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "summary.png").stat().st_size > 1000
    printed = format_summary(summary)
    assert "Video-MME" in printed and "as the official scorer reports it" in printed
    assert "wrote videomme_results.json" in printed


def test_mlvu_m_avg_and_weighted_mean(tmp_path):
    records = [rec("mlvu", f"p{i}", f"v{i}", i < 3, question_type="plotQA") for i in range(4)]  # 3/4
    records += [rec("mlvu", f"c{i}", f"w{i}", i < 1, question_type="count") for i in range(2)]  # 1/2
    records += [rec("mlvu", "s0", "z", None, question_type="summary")]
    summary = score_run(write_run(tmp_path, records))
    table = rows(summary, "MLVU")
    assert table["M-Avg (mean of task accuracies)"]["accuracy"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert table["sample-weighted mean (all questions)"]["accuracy"] == pytest.approx(4 / 6)
    assert table["count"]["accuracy"] == pytest.approx(0.5) and "summary" not in table
    assert summary["not_scored"] == 1


def test_longvideobench_egoschema_and_extraction_failures(tmp_path):
    records = [rec("longvideobench", f"q{i}", f"v{i}", i == 0, duration_group=g) for i, g in enumerate([15, 15, 600])]
    records[2]["response"] = "I cannot tell"  # the answer names no option: wrong, and counted
    (tmp_path / "lvb").mkdir()
    summary = score_run(write_run(tmp_path / "lvb", records))
    table = rows(summary, "by duration group")
    assert table["overall"]["accuracy"] == pytest.approx(1 / 3) and table["15"]["accuracy"] == pytest.approx(0.5)
    assert summary["extraction_failures"] == 1 and summary["extraction_failure_rate"] == pytest.approx(1 / 3)
    (tmp_path / "ego").mkdir()
    ego = [rec("egoschema", f"q{i}", f"v{i}", i < 4) for i in range(5)]
    assert rows(score_run(write_run(tmp_path / "ego", ego)), "EgoSchema")["overall"]["accuracy"] == pytest.approx(0.8)


def test_activitynetqa_and_duplicates(tmp_path):
    records = [
        open_rec("a", "v1", "yes", "Yes.", answer_type="yes/no"),  # exact and relaxed
        open_rec("b", "v1", "no", "yes", answer_type="yes/no"),  # neither
        open_rec("c", "v2", "black dog", "a black dog", answer_type="other"),  # relaxed only
        open_rec("d", "v3", "black dog", "Black dog", answer_type="other"),  # exact and relaxed
    ]
    path = write_run(tmp_path, records)
    (tmp_path / "z_1_of_1.jsonl").write_text(json.dumps(dict(records[0], response="no")) + "\n")
    summary = score_run(path)
    assert summary["duplicates"] == 1 and summary["duplicate_examples"] == ["a"]
    assert rows(summary, "yes/no")["overall"]["accuracy"] == pytest.approx(0.5)
    assert rows(summary, "exact match")["overall"]["accuracy"] == pytest.approx(0.5)
    assert rows(summary, "relaxed")["overall"]["accuracy"] == pytest.approx(0.75)


def test_judge_through_a_local_endpoint(tmp_path, monkeypatch):
    """The published protocol: system and user prompts, a {'pred', 'score'} reply; accuracy and mean score."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.headers.get("Authorization"), body["model"], [m["role"] for m in body["messages"]]))
            good = "Predicted answer: a black dog" in body["messages"][1]["content"]
            verdict = "{'pred': 'yes', 'score': 4}" if good else "Sure! {'pred': 'no', 'score': 1}"
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
    records = [open_rec(q, v, "black", resp, answer_type="other") for q, v, resp in [("a", "v1", "a black dog"),
                                                                                      ("b", "v2", "white")]]
    write_run(tmp_path, records)
    judge = {"url": f"http://127.0.0.1:{server.server_port}/v1", "model": "judge-m", "key_env": "JUDGE_KEY"}
    summary = score_run(tmp_path, judge)
    server.shutdown()
    assert seen == [("Bearer secret-key", "judge-m", ["system", "user"])] * 2
    judged = rows(summary, "GPT judge")["overall"]
    assert judged["accuracy"] == pytest.approx(0.5) and judged["mean_score"] == pytest.approx(2.5)
    assert rows(summary, "relaxed match")["overall"]["accuracy"] == pytest.approx(0.5)  # ours, kept beside it
    assert summary["judge_model"] == "judge-m" and "mean score (0-5)" in format_summary(summary)
    assert all("secret-key" not in p.read_text() for p in tmp_path.iterdir() if p.suffix in (".json", ".jsonl"))
    score_run(tmp_path, judge)  # cached verdicts: the endpoint is not asked again
    assert len(seen) == 2
    (tmp_path / "judge_judge-m.jsonl").write_text('{"qid": "a", "judge": "yes", "score": 4}\n')
    with pytest.raises(EvalError, match=r"judge_judge-m\.jsonl:1: a cached verdict needs 'judge' \(true/false\)"):
        score_run(tmp_path, judge)


def test_judge_replies_are_read_by_the_protocol():
    from llava.eval.judge import read_verdict

    assert read_verdict("{'pred': 'yes', 'score': 4.8}") == (True, 4.8)
    assert read_verdict('Here: {"pred": "No", "score": 0}') == (False, 0.0)
    for reply in ("yes", "{'pred': 'maybe', 'score': 3}", "{'pred': 'yes', 'score': 9}", "{'pred': 'yes'}"):
        with pytest.raises(ValueError):
            read_verdict(reply)


def test_a_correct_field_that_is_not_a_boolean_is_an_error():
    records = [{"qid": "q0", "video_id": "a", "correct": True}, {"qid": "q1", "video_id": "b", "correct": 1}]
    with pytest.raises(EvalError, match=r"record 'q1': 'correct' is 1, not true or false"):
        clustered_accuracy(records)


def test_official_videomme_letter_reading():
    from llava.eval.videomme import official_letter

    assert official_letter("The answer is C.") == "C" and official_letter("(B) green") == "B"
    assert official_letter("Best answer: C") == "B"  # its prefix list removes "Best answer:" only with "Best option:"
    assert official_letter("I cannot tell") is None and official_letter(None) is None
    assert official_letter("Doing the dishes") == "D"  # the first capital A-D anywhere


def test_exports_for_the_official_scorers(tmp_path):
    records = [rec("videomme", f"001-{q}", "yt1", q != 2, duration="short", domain="Knowledge",
                   sub_category="Astronomy", task_type="Counting Problem", video_number="001") for q in (1, 2, 3)]
    records[2].update(error="VideoDecodeError: yt1.mp4: corrupt", response=None)
    summary = score_run(write_run(tmp_path, records))
    assert summary["exports"] == [{"file": "videomme_results.json", "format": "Video-MME official results template",
                                   "questions": 3}]
    exported = json.loads((tmp_path / "videomme_results.json").read_text())
    assert exported == [{"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Astronomy",
                         "questions": [{"question_id": f"001-{q}", "task_type": "Counting Problem", "question": "q?",
                                        "options": ["A. yes", "B. no"], "answer": "A", "response": response}
                                       for q, response in ((1, "A"), (2, "B"), (3, ""))]}]
    (tmp_path / "ego").mkdir()
    ego = [rec("egoschema", f"q{i}", f"uid-{i}", None if i == 2 else True) for i in range(4)]
    ego[1]["response"], ego[3]["response"] = "B", "I cannot tell"
    summary = score_run(write_run(tmp_path / "ego", ego))
    assert json.loads((tmp_path / "ego" / "egoschema_submission.json").read_text()) == {"uid-0": 0, "uid-1": 1,
                                                                                        "uid-2": 1}
    assert summary["exports"][0]["without_choice"] == 1  # uid-3 names no option
    assert rows(summary, "EgoSchema")["overall"]["n"] == 3  # uid-2 (not in the subset) is exported, not scored


def test_lvbench_by_ability_and_category(tmp_path):
    records = [rec("lvbench", "1", "yt1", True, question_type=["reasoning", "entity recognition"], video_type="tv"),
               rec("lvbench", "2", "yt1", False, question_type=["reasoning"], video_type="tv"),
               rec("lvbench", "3", "yt2", True, question_type=["summarization"], video_type="sport")]
    summary = score_run(write_run(tmp_path, records))
    ability = rows(summary, "by ability")
    assert ability["overall"]["n"] == 3 and ability["reasoning"]["accuracy"] == pytest.approx(0.5)
    assert ability["entity recognition"]["n"] == 1 and rows(summary, "video category")["sport"]["accuracy"] == 1.0


def test_scorer_regrades_from_the_response(tmp_path):
    record = dict(rec("egoschema", "q0", "v0", True), response="The answer is (A).", choice=None, correct=False)
    summary = score_run(write_run(tmp_path, [record, rec("egoschema", "q1", "v1", False)]))
    assert rows(summary, "EgoSchema")["overall"]["accuracy"] == pytest.approx(0.5)  # stored grades are not trusted
    assert summary["extraction_failures"] == 0


def test_scorer_never_mixes_runs(tmp_path):
    records = [rec("egoschema", f"q{i}", f"v{i}", True) for i in range(3)]
    write_run(tmp_path, records, files=1)
    (tmp_path / "x_1_of_2.jsonl").write_text(json.dumps(dict(records[0], run="another-run")) + "\n")
    with pytest.raises(EvalError, match=r"x_1_of_2\.jsonl: record 'q0' is of another run \(another-run"):
        score_run(tmp_path)
    (tmp_path / MANIFEST).unlink()
    with pytest.raises(EvalError, match="run.json: missing"):
        score_run(tmp_path)


def test_scorer_drops_a_record_cut_inside_a_utf8_character(tmp_path):
    records = [rec("egoschema", f"q{i}", f"v{i}", True, question="¿qué?") for i in range(3)]
    write_run(tmp_path, records[:2], expected=[r["qid"] for r in records])
    cut = json.dumps(records[2], ensure_ascii=False).encode()
    cut = cut[: cut.index("é".encode()) + 1]  # the first of the two bytes of "é"
    with (tmp_path / "x_1_of_1.jsonl").open("ab") as handle:
        handle.write(cut)
    summary = score_run(tmp_path)
    assert (summary["records"], summary["missing"], summary["missing_examples"]) == (2, 1, ["q2"])


def test_benchmarks_register_in_one_place():
    import llava.eval.videomme

    assert BENCHMARKS["videomme"] is llava.eval.videomme.BENCHMARK
    for name in ("mlvu", "longvideobench", "egoschema", "activitynetqa", "lvbench", "generic"):
        assert registered(name, f"llava.eval.{name}").module == f"llava.eval.{name}"  # imported on demand
    with pytest.raises(EvalError, match="cannot be imported"):
        registered("nothing", "llava.eval.nothing")


def test_evaluation_modules_import_no_cycle():
    """The import graph of llava.eval (imports inside functions included) has no cycle."""
    folder = Path(__file__).resolve().parents[1] / "llava" / "eval"
    graph = {}
    for path in folder.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
        graph[path.stem] = {name.split(".")[2] for name in names if name.startswith("llava.eval.")}
    graph = {module: {other for other in targets if other in graph and other != module}
             for module, targets in graph.items()}

    def reaches(start, goal, seen=()):
        return any(other == goal or (other not in seen and reaches(other, goal, (*seen, other)))
                   for other in graph[start])

    assert [module for module in graph if reaches(module, module)] == []
