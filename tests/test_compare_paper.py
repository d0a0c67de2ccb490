"""compare_paper on run folders this test writes with the harness's own record and manifest writers; the
reproduction script's commands, through a stub interpreter."""

import json
import math
import subprocess
from pathlib import Path

import pytest

from llava.eval.benchmark import EvalError, multiple_choice_item, registered
from llava.eval.compare_paper import PUBLISHED, compare, format_comparisons, published_results
from llava.eval.harness import make_record
from llava.eval.records import shard_path, write_manifest

RUN = "run-under-test"


def write_run(folder: Path, name: str, outcomes: list[tuple[bool, dict]], extra_items: tuple[str, ...] = ()) -> Path:
    """A one-shard run of benchmark `name`: question i is about video i and answered right when outcomes[i][0]."""
    benchmark = registered(name, f"llava.eval.{name}")
    records = []
    for i, (correct, fields) in enumerate(outcomes):
        item = multiple_choice_item("test", f"q{i}", f"v{i}", (folder / f"v{i}.mp4",), "which?", ["A. yes", "B. no"],
                                    "A", 1, fields)
        records.append(make_record(benchmark, RUN, item, "A" if correct else "B", None, 600, [0], 0.1))
    folder.mkdir(parents=True)
    shard_path(folder, name, 1, 1).write_text("".join(json.dumps(r) + "\n" for r in records))
    write_manifest(folder, {"benchmark": name, "adapter": benchmark.module, "run": RUN, "identity": {},
                            "checkpoint": "ckpt", "items": [r["qid"] for r in records] + list(extra_items)})
    return folder


@pytest.fixture(scope="module")
def output_root(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("paper")
    durations = ["short", "medium", "long"] * 10
    videomme = [(i % 3 != 2, {"duration": d, "task_type": "OCR", "domain": "x", "sub_category": "y",
                              "video_number": f"{i:03d}"}) for i, d in enumerate(durations)]  # 20 of 30 right; short and medium all right, long all wrong
    write_run(tmp_path / "videomme", "videomme", videomme)
    mlvu = [(False, {"question_type": task, "duration": 100}) for task in ["count", "order"] * 5]
    write_run(tmp_path / "mlvu", "mlvu", mlvu, extra_items=("q-never-answered",))
    write_run(tmp_path / "egoschema", "egoschema", [(True, {}), (False, {})])
    return tmp_path


@pytest.fixture(scope="module")
def comparisons(output_root):
    return compare(output_root)


def by_label(comparisons):
    return {c["label"]: c for c in comparisons}


def test_published_value_inside_our_clustered_interval(comparisons):
    rows = by_label(comparisons)
    overall = rows["Video-MME w/o subtitles"]
    assert overall["published"] == 67.5 and overall["ours"] == pytest.approx(200 / 3)
    half = 100 * 1.959964 * math.sqrt((2 / 3) * (1 / 3) / 29)  # one question per video: sqrt(p(1-p)/(n-1))
    assert overall["ci95"] == pytest.approx([200 / 3 - half, 200 / 3 + half])
    assert overall["inside"] is True and overall["missing"] == 0
    assert rows["Video-MME w/o subtitles, short"]["ours"] == 100.0
    assert rows["Video-MME w/o subtitles, long"]["ours"] == 0.0 and rows["Video-MME w/o subtitles, long"]["inside"] is False


def test_outside_missing_not_run_and_unpublished(output_root, comparisons):
    rows = by_label(comparisons)
    mlvu = rows["MLVU dev M-Avg"]
    assert mlvu["ours"] == 0.0 and mlvu["inside"] is False and mlvu["missing"] == 1
    assert rows["LongVideoBench val"]["run"] is None and rows["LongVideoBench val"]["inside"] is None
    egoschema = rows["EgoSchema"]
    assert egoschema["published"] is None and egoschema["ours"] == 50.0 and egoschema["inside"] is None
    text = format_comparisons(comparisons)
    assert "INCOMPLETE: 1 questions missing" in text and "not run" in text
    line = next(line for line in text.splitlines() if line.startswith("MLVU dev M-Avg"))
    assert "72.6" in line and "NO" in line
    assert (output_root / "videomme" / "summary.json").is_file()  # scored through score_run


def test_every_published_value_names_its_source():
    entries = published_results()
    assert {e["benchmark"] for e in entries} >= {"videomme", "mlvu", "longvideobench", "lvbench", "egoschema",
                                                 "activitynetqa"}
    for entry in entries:
        assert entry["source"], entry
        if entry["value"] is None:
            assert entry["source"].startswith("not found"), entry
        else:
            assert 0 < entry["value"] < 100
    assert "arXiv:2504.02438" in json.loads(PUBLISHED.read_text())["paper"]


def test_missing_output_root_is_named(tmp_path):
    with pytest.raises(EvalError, match="no-such-folder"):
        compare(tmp_path / "no-such-folder")


def run_kit(tmp_path, **env):
    """scripts/eval/reproduce_paper.sh with PYTHON replaced by a stub that logs its arguments (and fails for the
    script named in FAIL_ON); returns (exit status, logged command lines)."""
    calls = tmp_path / "calls.txt"
    stub = tmp_path / "python"
    stub.write_text('#!/bin/bash\necho "$*" >> "$CALLS"\n[[ -n "$FAIL_ON" && "$*" == *"$FAIL_ON"* ]] && exit 3\nexit 0\n')
    stub.chmod(0o755)
    script = Path(__file__).resolve().parents[1] / "scripts" / "eval" / "reproduce_paper.sh"
    environment = {"PATH": "/usr/bin:/bin", "PYTHON": str(stub), "CALLS": str(calls), "FAIL_ON": "", **env}
    result = subprocess.run(["bash", str(script), str(tmp_path / "out")], env=environment, capture_output=True,
                            text=True, timeout=60)
    return result.returncode, calls.read_text().splitlines(), result.stderr


def test_kit_runs_each_benchmark_over_the_gpus_then_compares(tmp_path):
    status, calls, _ = run_kit(tmp_path, GPUS="4", BENCHMARKS="videomme mlvu", MODEL="models/x",
                               MLVU_DATASET="/data/mlvu.json", MLVU_VIDEOS="/data/mlvu")
    assert status == 0 and len(calls) == 3
    videomme, mlvu, compare_call = calls
    assert videomme.startswith("-m torch.distributed.run --nproc_per_node 4 exp_vMME.py --version models/x")
    assert f"--output_dir {tmp_path}/out/videomme --max_frames 600" in videomme and "--dataset_path" not in videomme
    assert "exp_mlvu.py" in mlvu and mlvu.endswith("--dataset_path /data/mlvu.json --video_dir /data/mlvu")
    assert compare_call == f"-m llava.eval.compare_paper {tmp_path}/out"


def test_kit_goes_on_after_a_failure_and_leaves_comparing_to_the_last_job_of_an_array(tmp_path):
    status, calls, stderr = run_kit(tmp_path, GPUS="1", BENCHMARKS="mlvu nosuch egoschema", SPLIT="2_3",
                                    FAIL_ON="exp_mlvu.py")
    assert status == 1 and "failed or skipped: mlvu nosuch" in stderr
    assert [call.split()[0] for call in calls] == ["exp_mlvu.py", "exp_egoschema.py"]  # one process each, no torchrun
    assert all(call.endswith("--split 2_3") for call in calls)
