"""The five entry scripts end to end on the tiny model, real question rows and synthetic videos; resume, shards."""

import json
import runpy
import sys
from pathlib import Path

import pytest

import llava.inference
from llava.eval import activitynetqa, egoschema, longvideobench, mlvu, videomme
from llava.eval.harness import read_records, run
from llava.eval.synthetic import write_jsonl, write_video
from tests.conftest import BENCHMARKS, REPO
from tests.test_eval_datasets import write_videomme_parquet


def real_rows(name, count, key):
    """The first rows of a real file, taken from `count` different videos (all their rows)."""
    rows = [json.loads(line) for line in open(BENCHMARKS / name)]
    videos = list(dict.fromkeys(str(r[key]) for r in rows))[:count]
    return [r for r in rows if str(r[key]) in videos]


def common(tmp_path, checkpoint, data, videos, out="out", *extra):
    return ["--dataset_path", str(data), "--video_dir", str(videos), "--output_dir", str(tmp_path / out),
            "--version", str(checkpoint), "--max_frame_num", "6", *extra]


def records_of(directory):
    return [r for path in sorted(Path(directory).glob("*.jsonl")) for r in read_records(path)[0]]


def without_timing(records):
    return sorted((json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True) for r in records))


def test_mlvu_sample_end_to_end_with_missing_video(tmp_path, tiny_checkpoint, capsys):
    all_rows = [json.loads(line) for line in open(BENCHMARKS / "MLVU_val.json")]
    sample = [all_rows[0], all_rows[1], next(r for r in all_rows if r["question_type"] == "summary")]
    data = write_jsonl(tmp_path / "mlvu.json", sample)
    for r in sample[1:]:  # the first row's video is left missing
        write_video(tmp_path / "videos" / Path(r["video"]).name, seconds=3, fps=2)
    run(mlvu.BENCHMARK, common(tmp_path, tiny_checkpoint, data, tmp_path / "videos"))
    records = records_of(tmp_path / "out")
    assert [r["qid"] for r in records] == [item.qid for item in mlvu.BENCHMARK.load(
        type("A", (), {"dataset_path": data, "video_dir": tmp_path / "videos"}))]
    first, second, summary = records
    assert "video file not found" in first["error"] and first["correct"] is False
    assert str(Path(sample[0]["video"]).name) in first["error"]
    assert second["error"] is None and second["frames"] == 3 and second["correct"] in (True, False)
    assert second["question_type"] == "plotQA" and isinstance(second["keyframes"], list)
    assert summary["correct"] is None and summary["response"] is not None
    output = capsys.readouterr().out
    assert "M-Avg" in output and "failed items 1" in output
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["errors"] == 1


@pytest.mark.parametrize("adapter, name, key", [
    (longvideobench, "longvideobench_val.json", "video"),
    (egoschema, "egoschema_val.json", "videoID"),
    (activitynetqa, "ActivityNetQA_val.json", "videoID"),
])
def test_json_benchmarks_end_to_end(tmp_path, tiny_checkpoint, adapter, name, key):
    sample = real_rows(name, 2, key)[:4]
    data = write_jsonl(tmp_path / name, sample)
    items = adapter.BENCHMARK.load(type("A", (), {"dataset_path": data, "video_dir": tmp_path / "v"}))
    for item in items:
        write_video(item.videos[0], seconds=2, fps=2)
    run(adapter.BENCHMARK, common(tmp_path, tiny_checkpoint, data, tmp_path / "v", "out", "--limit", "3"))
    records = records_of(tmp_path / "out")
    assert [r["qid"] for r in records] == [item.qid for item in items[:3]]
    assert all(r["error"] is None and r["frames"] == 2 for r in records)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["missing"] == 0


def test_videomme_script_resume_after_interruption_equals_clean_run(tmp_path, tiny_checkpoint, monkeypatch):
    data = write_videomme_parquet(tmp_path / "videomme.parquet", videos=3)
    for v in range(3):
        write_video(tmp_path / "v" / f"vid{v}.mp4", seconds=2, fps=2)
    script = str(REPO / "exp_vMME.py")

    def script_run(out, *extra):
        monkeypatch.setattr(sys, "argv", [script, *common(tmp_path, tiny_checkpoint, data, tmp_path / "v", out, *extra)])
        runpy.run_path(script, run_name="__main__")

    script_run("clean")
    real_answer, calls = llava.inference.answer_video, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # the run is killed while answering the fifth question
        return real_answer(*args, **kwargs)

    monkeypatch.setattr(llava.inference, "answer_video", interrupted)
    with pytest.raises(KeyboardInterrupt):
        script_run("resumed")
    monkeypatch.setattr(llava.inference, "answer_video", real_answer)
    shard_file = tmp_path / "resumed" / "videomme_1_of_1.jsonl"
    assert len(read_records(shard_file)[0]) == 4
    with shard_file.open("a") as handle:
        handle.write('{"benchmark": "videomme", "qid": "002-1", "vid')  # a record cut short by the kill
    script_run("resumed")
    assert without_timing(records_of(tmp_path / "resumed")) == without_timing(records_of(tmp_path / "clean"))
    script_run("resumed")  # nothing left to do: nothing added
    assert len(records_of(tmp_path / "resumed")) == 9
    script_run("resumed", "--overwrite", "--limit", "2")
    assert [r["qid"] for r in records_of(tmp_path / "resumed")] == ["000-1", "000-2"]


def test_shards_cover_every_item_once(tmp_path, tiny_checkpoint, monkeypatch):
    data = write_videomme_parquet(tmp_path / "videomme.parquet", videos=3)
    for v in range(3):
        write_video(tmp_path / "v" / f"vid{v}.mp4", seconds=2, fps=2)
    for index in (1, 2):
        run(videomme.BENCHMARK, common(tmp_path, tiny_checkpoint, data, tmp_path / "v", "out", "--split", f"{index}_2"))
    first, second = (read_records(tmp_path / "out" / f"videomme_{i}_of_2.jsonl")[0] for i in (1, 2))
    assert {r["video_id"] for r in first} == {"vid0", "vid2"} and {r["video_id"] for r in second} == {"vid1"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["records"], summary["missing"], summary["duplicates"]) == (9, 0, 0)


def test_input_errors_stop_with_a_message(tmp_path, tiny_checkpoint, capsys):
    for args, message in [
        (["--split", "2_x"], "--split"),
        (["--dataset_path", str(tmp_path / "absent.json")], "dataset file not found"),
        (["--version", str(tmp_path / "no-model")], "--version"),
    ]:
        argv = common(tmp_path, tiny_checkpoint, tmp_path / "x.json", tmp_path) + args
        with pytest.raises(SystemExit) as stop:
            egoschema_main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.startswith("error: ") and message in err


def egoschema_main(argv):
    from llava.eval.harness import main

    main(egoschema.BENCHMARK, argv)


def test_shared_video_features_give_the_same_answers(tmp_path, tiny_checkpoint):
    data = write_videomme_parquet(tmp_path / "videomme.parquet", videos=2)  # three questions per video
    for v in range(2):
        write_video(tmp_path / "v" / f"vid{v}.mp4", seconds=4, fps=2)
    run(videomme.BENCHMARK, common(tmp_path, tiny_checkpoint, data, tmp_path / "v", "cached"))
    run(videomme.BENCHMARK, common(tmp_path, tiny_checkpoint, data, tmp_path / "v", "alone", "--feature_cache_gb", "0"))
    cached, alone = records_of(tmp_path / "cached"), records_of(tmp_path / "alone")
    assert len(cached) == 6 and without_timing(cached) == without_timing(alone)
