"""The entry scripts end to end on the tiny model, real question rows and synthetic videos; resume, shards; run
identity, the shard lock, cut records, --retry_errors, and which failures become error records."""

import json
import os
import runpy
import shutil
import socket
import sys
from pathlib import Path

import pytest

import llava.inference
from llava.eval import activitynetqa, egoschema, generic, harness, longvideobench, mlvu, videomme
from llava.eval.benchmark import read_jsonl
from llava.eval.harness import read_records, run
from llava.eval.records import shard_lock
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
    items = adapter.BENCHMARK.load(harness.build_parser(adapter.BENCHMARK).parse_args(
        ["--dataset_path", str(data), "--video_dir", str(tmp_path / "v")]))
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


# ----- run identity, one writer per shard, safe resume, which failures become records -----


def generic_task(tmp_path, videos=2, questions=2, name="task.jsonl", missing=()):
    """A multiple-choice JSON-lines task with non-ASCII text; videos vid{v}.mp4 in tmp_path/v, except `missing`."""
    rows = [{"video": f"vid{v}.mp4", "question": f"¿Qué color {q}?", "options": ["rojo", "verde", "azul"],
             "answer": "ABC"[q % 3], "id": f"{v}-{q}"} for v in range(videos) for q in range(questions)]
    (tmp_path / "v").mkdir(exist_ok=True)
    for v in range(videos):
        if v not in missing:
            write_video(tmp_path / "v" / f"vid{v}.mp4", seconds=2, fps=2)
    return write_jsonl(tmp_path / name, rows)


def generic_main(argv):
    from llava.eval.harness import main

    main(generic.BENCHMARK, argv)


def refused(capsys, argv) -> str:
    """The one-line message with which the generic entry point refuses `argv` (exit status 2)."""
    with pytest.raises(SystemExit) as stop:
        generic_main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def no_model(monkeypatch):
    """Loading the model fails the test: what is refused must be refused before."""

    def load_model(*args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(harness, "load_model", load_model)


def test_resume_with_other_settings_is_refused(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    data = generic_task(tmp_path, videos=1)
    monkeypatch.chdir(tmp_path)
    run(generic.BENCHMARK, ["--dataset_path", str(data), "--video_dir", "v", "--version", str(tiny_checkpoint),
                            "--max_frames", "6"])
    out = tmp_path / "outputs" / "generic" / tiny_checkpoint.name  # the default folder names the checkpoint
    first = read_records(out / "generic_1_of_1.jsonl")[0]
    manifest = json.loads((out / "run.json").read_text())
    assert [r["run"] for r in first] == [manifest["run"]] * 2
    assert first[0]["prompt"].startswith("¿Qué color 0?") and first[0]["options"][0] == "A. rojo"
    assert (first[0]["scored"], first[0]["max_new_tokens"]) == (True, 128)
    assert manifest["identity"]["max_frames"] == 6 and manifest["identity"]["checkpoint"]["weights"][0]["bytes"] > 0

    other = tmp_path / "other-checkpoint"
    shutil.copytree(tiny_checkpoint, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(dict(config, tokenizer_model_max_length=4096)))
    longer = write_jsonl(tmp_path / "task2.jsonl", read_jsonl(data) + [dict(read_jsonl(data)[0], id="new")])
    monkeypatch.setattr(harness, "load_model", lambda *args: pytest.fail("the model was loaded"))
    base = ["--dataset_path", str(data), "--video_dir", "v", "--output_dir", str(out), "--max_frames", "6",
            "--version", str(tiny_checkpoint)]
    for extra, changed in [
        (["--version", str(other)], "checkpoint.config.tokenizer_model_max_length: 32768 -> 4096"),
        (["--max_frames", "4"], "max_frames: 6 -> 4"),
        (["--max_new_tokens", "8"], "generation.max_new_tokens: [128] -> [8]"),
        (["--dataset_path", str(longer)], 'dataset.file: "task.jsonl" -> "task2.jsonl"'),
    ]:
        err = refused(capsys, base + extra)
        assert "its run was made with other settings" in err and changed in err and "--overwrite" in err, err
    with (other / "model.safetensors").open("r+b") as handle:  # same config, other weights
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 1]))
    (other / "config.json").write_text(json.dumps(config))
    assert "checkpoint.weights" in refused(capsys, base + ["--version", str(other)])
    assert read_records(out / "generic_1_of_1.jsonl")[0] == first  # nothing was added

    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    run(generic.BENCHMARK, base + ["--max_frames", "4", "--overwrite"])
    records = read_records(out / "generic_1_of_1.jsonl")[0]
    assert len(records) == 2 and records[0]["run"] != first[0]["run"]
    assert json.loads((out / "run.json").read_text())["identity"]["max_frames"] == 4


def test_invalid_settings_are_refused_before_the_model_loads(tmp_path, tiny_checkpoint, capsys, no_model):
    data = generic_task(tmp_path, videos=1)
    base = common(tmp_path, tiny_checkpoint, data, tmp_path / "v")
    for extra, message in [
        (["--max_new_tokens", "0"], "argument --max_new_tokens: 0: must be at least 1"),
        (["--max_frames", "0"], "argument --max_frames/--max_frame_num: 0: must be at least 1"),
        (["--limit", "0"], "argument --limit: 0: must be at least 1"),
        (["--dataset_path", str(tmp_path / "absent.jsonl")], "--dataset_path"),
        (["--video_dir", str(tmp_path / "absent")], "--video_dir"),
    ]:
        assert message in refused(capsys, base + extra)
    assert not (tmp_path / "out" / "generic_1_of_1.jsonl").exists()


def test_a_second_writer_of_a_shard_is_refused(tmp_path, tiny_checkpoint, capsys, no_model):
    data = generic_task(tmp_path, videos=1)
    shard_file = tmp_path / "out" / "generic_1_of_1.jsonl"
    shard_file.parent.mkdir()
    with shard_lock(shard_file):  # held as another process would hold it (flock: per open file)
        err = refused(capsys, common(tmp_path, tiny_checkpoint, data, tmp_path / "v"))
    assert f"another process is writing this shard (pid {os.getpid()} host {socket.gethostname()}" in err


def test_a_record_cut_inside_a_utf8_character_is_redone(tmp_path, tiny_checkpoint):
    data = generic_task(tmp_path, videos=2)
    run(generic.BENCHMARK, common(tmp_path, tiny_checkpoint, data, tmp_path / "v", "clean"))
    run(generic.BENCHMARK, common(tmp_path, tiny_checkpoint, data, tmp_path / "v", "cut"))
    shard_file = tmp_path / "cut" / "generic_1_of_1.jsonl"
    lines = shard_file.read_bytes().splitlines(keepends=True)
    last = lines[-1]
    cut = last[: last.index("é".encode()) + 1]  # inside the two bytes of "é"
    shard_file.write_bytes(b"".join(lines[:-1]) + cut)
    run(generic.BENCHMARK, common(tmp_path, tiny_checkpoint, data, tmp_path / "v", "cut"))
    assert without_timing(records_of(tmp_path / "cut")) == without_timing(records_of(tmp_path / "clean"))


def test_retry_errors_redoes_failed_items(tmp_path, tiny_checkpoint, capsys):
    data = generic_task(tmp_path, videos=2, missing=(1,))
    argv = common(tmp_path, tiny_checkpoint, data, tmp_path / "v")
    run(generic.BENCHMARK, argv)
    assert [r["error"] is None for r in records_of(tmp_path / "out")] == [True, True, False, False]
    write_video(tmp_path / "v" / "vid1.mp4", seconds=2, fps=2)  # the missing video is found
    capsys.readouterr()
    run(generic.BENCHMARK, argv)  # a plain resume keeps the failed records
    assert "4 recorded, 0 to do" in capsys.readouterr().out
    run(generic.BENCHMARK, argv + ["--retry_errors"])
    assert "2 recorded, 2 to do" in capsys.readouterr().out
    records = records_of(tmp_path / "out")
    assert sorted(r["qid"] for r in records) == ["0-0", "0-1", "1-0", "1-1"]
    assert all(r["error"] is None and r["frames"] == 2 for r in records)


def test_only_expected_failures_become_error_records(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    import torch

    import llava.inference

    data = generic_task(tmp_path, videos=2)
    real_load, real_answer = harness.load_model, llava.inference.answer_video

    def short_context(*args):
        model, processor = real_load(*args)
        model.config.tokenizer_model_max_length = 20
        return model, processor

    monkeypatch.setattr(harness, "load_model", short_context)
    run(generic.BENCHMARK, common(tmp_path, tiny_checkpoint, data, tmp_path / "v", "short"))
    records = records_of(tmp_path / "short")
    assert len(records) == 4 and all(r["error"].startswith("PromptTooLongError: a sequence of") for r in records)
    monkeypatch.setattr(harness, "load_model", real_load)

    def failing(failure):
        calls = []

        def answer(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise failure
            return real_answer(*args, **kwargs)

        return answer

    argv = common(tmp_path, tiny_checkpoint, data, tmp_path / "v")
    monkeypatch.setattr(llava.inference, "answer_video", failing(torch.OutOfMemoryError("CUDA out of memory")))
    err = refused(capsys, argv)
    assert "out of memory answering '0-1' (video vid0.mp4" in err and "--max_frames" in err
    assert [r["qid"] for r in records_of(tmp_path / "out")] == ["0-0"]
    monkeypatch.setattr(llava.inference, "answer_video", failing(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug") as stop:
        run(generic.BENCHMARK, argv)
    assert "stopped at '1-0'" in stop.value.__notes__[0]
    assert [r["qid"] for r in records_of(tmp_path / "out")] == ["0-0", "0-1"]
    monkeypatch.setattr(llava.inference, "answer_video", real_answer)
    run(generic.BENCHMARK, argv)
    records = records_of(tmp_path / "out")
    assert [r["qid"] for r in records] == ["0-0", "0-1", "1-0", "1-1"] and all(r["error"] is None for r in records)
