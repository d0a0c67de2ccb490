"""Each benchmark's official annotation format, written here from its documented schema, read into the same items as
the released files; rows that cannot be scored are errors naming the file and row."""

import json
from pathlib import Path

import pytest

from llava.eval import activitynetqa, egoschema, longvideobench, lvbench, mlvu
from llava.eval.benchmark import EvalError
from llava.eval.harness import build_parser
from llava.eval.identity import dataset_sha256


def load(adapter, path, *argv):
    args = build_parser(adapter.BENCHMARK).parse_args(["--dataset_path", str(path), "--video_dir", "videos", *argv])
    return adapter.BENCHMARK.load(args)


def write_json(path, value):
    path.write_text(json.dumps(value))
    return path


def lvb_row(number, **extra):
    return {"video_id": f"vid{number}", "video_path": f"vid{number}.mp4", "question": f"What happens {number}?",
            "candidates": ["a cat", "a dog", "a bird"], "correct_choice": 1, "duration_group": 600,
            "question_category": "T3O", "topic_category": "NP-News-Programs", "id": f"vid{number}_0",
            "duration": 412.5, "subtitle_path": f"vid{number}_en.json", **extra}


def test_longvideobench_lvb_val_json(tmp_path):
    path = write_json(tmp_path / "lvb_val.json", [lvb_row(0), lvb_row(1, correct_choice=2, duration_group=15)])
    items = load(longvideobench, path)
    assert [i.qid for i in items] == ["vid0_0", "vid1_0"] and [i.answer for i in items] == ["B", "C"]
    assert items[0].options == ["A. a cat", "B. a dog", "C. a bird"]
    assert items[0].videos[0].as_posix() == "videos/vid0.mp4" and items[0].video_id == "vid0"
    assert items[1].fields == {"duration_group": 15, "question_category": "T3O"}
    test_set = load(longvideobench, write_json(tmp_path / "lvb_test_wo_gt.json",
                                               [{k: v for k, v in lvb_row(0).items() if k != "correct_choice"}]))
    assert test_set[0].answer is None and not test_set[0].scored
    for bad in (5, "1", True):
        with pytest.raises(EvalError, match=r"lvb_val\.json row 2: correct_choice"):
            load(longvideobench, write_json(tmp_path / "lvb_val.json", [lvb_row(0), lvb_row(1, correct_choice=bad)]))


def test_mlvu_per_task_files(tmp_path):
    folder = tmp_path / "json"
    folder.mkdir()
    write_json(folder / "1_plotQA.json", [
        {"video": "movie101_66.mp4", "duration": 246, "question": "What color is he?",
         "candidates": ["Yellow", "Red", "Green", "Blue"], "answer": "Red", "question_type": "plotQA"}])
    write_json(folder / "9_summary.json", [
        {"video": "217.mp4", "duration": 480, "question": "Please summarize this video.", "answer": "Whales.",
         "question_type": "summary"}])
    items = load(mlvu, folder)
    assert [(i.answer, i.scored) for i in items] == [("B", True), ("Whales.", False)]
    before = dataset_sha256(folder)  # a folder is the run's dataset: its files' names and contents identify it
    write_json(folder / "9_summary.json", [{"video": "217.mp4", "question": "Summarize.", "answer": "Whales."}])
    assert dataset_sha256(folder) != before
    assert items[0].options == ["A. Yellow", "B. Red", "C. Green", "D. Blue"]
    assert [p.as_posix() for p in items[0].videos] == ["videos/movie101_66.mp4", "videos/1_plotQA/movie101_66.mp4"]
    assert load(mlvu, folder / "1_plotQA.json")[0].prompt == items[0].prompt  # one task file alone
    # a released row with candidates and no options is multiple choice, not an unscored open question
    released = tmp_path / "released.json"
    released.write_text(json.dumps({"video": "dataset/MLVU/video/a.mp4", "question": "Which?", "answer": "A",
                                    "question_type": "count", "candidates": ["1", "2"]}) + "\n")
    assert load(mlvu, released)[0].options == ["A. 1", "B. 2"] and load(mlvu, released)[0].scored
    write_json(folder / "4_count.json", [{"video": "c.mp4", "question": "How many?", "answer": "2",
                                         "question_type": "count"}])
    with pytest.raises(EvalError, match=r"4_count\.json row 1: a count question without options or candidates"):
        load(mlvu, folder)
    write_json(folder / "4_count.json", [{"video": "c.mp4", "question": "How many?", "answer": "7",
                                         "question_type": "count", "candidates": ["1", "2"]}])
    with pytest.raises(EvalError, match=r"4_count\.json row 1: answer '7' is neither"):
        load(mlvu, folder)


def test_egoschema_questions_and_subset_answers(tmp_path):
    questions = [{"q_uid": f"uid-{n}", "google_drive_id": "x", "question": f"What is c doing {n}?",
                  **{f"option {i}": f"option text {n}.{i}" for i in range(5)}} for n in range(3)]
    path = write_json(tmp_path / "questions.json", questions)
    write_json(tmp_path / "subset_answers.json", {"uid-0": 3, "uid-2": 0})
    items = load(egoschema, path)
    assert [(i.qid, i.answer, i.scored) for i in items] == [("uid-0", "D", True), ("uid-1", None, False),
                                                            ("uid-2", "A", True)]
    assert items[0].options[4] == "E. option text 0.4" and items[0].videos[0].as_posix() == "videos/uid-0.mp4"
    other = write_json(tmp_path / "answers.json", {"uid-1": 7})
    with pytest.raises(EvalError, match=r"answers\.json: answer of 'uid-1' is 7"):
        load(egoschema, path, "--answers_path", str(other))


def test_activitynetqa_split_files(tmp_path):
    questions = [{"video_name": "abc", "question": "is the man indoors", "question_id": "v_abc_0"},
                 {"video_name": "abc", "question": "what color is the ball", "question_id": "v_abc_1"}]
    answers = [{"answer": "yes", "type": 3, "question_id": "v_abc_0"},
               {"answer": "red", "type": 4, "question_id": "v_abc_1"}]
    path = write_json(tmp_path / "test_q.json", questions)
    write_json(tmp_path / "test_a.json", answers)
    items = load(activitynetqa, path)
    assert [(i.qid, i.answer, i.fields["question_type"], i.fields["answer_type"]) for i in items] == [
        ("v_abc_0", "yes", "yes/no", "yes/no"), ("v_abc_1", "red", "color", "other")]
    assert items[0].prompt == "is the man indoors?" and items[0].videos[0].name == "v_abc.mp4"
    assert load(activitynetqa, path, "--short_answer")[1].prompt == (
        "what color is the ball? Answer the question using a single word or phrase.")
    write_json(tmp_path / "test_a.json", answers[:1])
    with pytest.raises(EvalError, match=r"test_q\.json row 2: question 'v_abc_1' has no answer in .*test_a\.json"):
        load(activitynetqa, path)
    write_json(tmp_path / "test_a.json", [answers[0], dict(answers[1], type=9)])
    with pytest.raises(EvalError, match=r"test_a\.json row 2: type 9"):
        load(activitynetqa, path)


def test_lvbench_meta_jsonl(tmp_path):
    def qa(uid, answer, abilities):
        return {"uid": uid, "question": f"What happens at {uid}?\n(A) one\n(B) two\n(C) three\n(D) four",
                "answer": answer, "question_type": abilities, "time_reference": "00:15-00:19"}

    videos = [{"key": "yt1", "type": "documentary", "video_info": {"duration_minutes": 70},
               "qa": [qa("1", "C", ["entity recognition", "key information retrieval"]), qa("2", "A", ["reasoning"])]},
              {"key": "yt2", "type": "sport", "qa": [qa("3", "D", ["temporal grounding"])]}]
    path = tmp_path / "video_info.meta.jsonl"
    path.write_text("".join(json.dumps(video) + "\n" for video in videos))
    items = load(lvbench, path)
    assert [(i.qid, i.video_id, i.answer) for i in items] == [("1", "yt1", "C"), ("2", "yt1", "A"), ("3", "yt2", "D")]
    assert items[0].question == "What happens at 1?" and items[0].options == ["A. one", "B. two", "C. three", "D. four"]
    assert items[0].fields == {"question_type": ["entity recognition", "key information retrieval"],
                               "video_type": "documentary"}
    assert items[2].videos[0].as_posix() == "videos/yt2.mp4"
    videos[1]["qa"][0]["question"] = "What happens?"
    path.write_text("".join(json.dumps(video) + "\n" for video in videos))
    with pytest.raises(EvalError, match=r"meta\.jsonl row 2, question 1: no '\(A\) \.\.\.' option lines"):
        load(lvbench, path)


def test_lvbench_script_end_to_end(tmp_path, tiny_checkpoint, capsys):
    """exp_lvbench.py on one video of two questions with the tiny checkpoint: records, tables, printed scores."""
    import runpy

    from llava.eval.synthetic import write_video

    options = "\n(A) one\n(B) two\n(C) three\n(D) four"
    questions = [{"uid": str(n), "question": f"What happens {n}?{options}", "answer": "B",
                  "question_type": ["reasoning", "summarization"][: n], "time_reference": "00:01-00:02"} for n in (1, 2)]
    path = tmp_path / "video_info.meta.jsonl"
    path.write_text(json.dumps({"key": "yt1", "type": "tv", "qa": questions}) + "\n")
    write_video(tmp_path / "v" / "yt1.mp4", seconds=2, fps=2)
    argv = ["exp_lvbench.py", "--dataset_path", str(path), "--video_dir", str(tmp_path / "v"), "--output_dir",
            str(tmp_path / "out"), "--version", str(tiny_checkpoint), "--max_frames", "4"]
    script = Path(__file__).resolve().parents[1] / "exp_lvbench.py"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", argv)
        runpy.run_path(str(script), run_name="__main__")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["benchmark"] == "lvbench" and summary["records"] == 2 and summary["errors"] == 0
    ability = {r["group"]: r for r in summary["tables"][0]["rows"]}
    assert ability["reasoning"]["n"] == 2 and ability["summarization"]["n"] == 1 and summary["tables"][1]["title"] == "LVBench accuracy by video category"
    assert "LVBench accuracy by ability" in capsys.readouterr().out
