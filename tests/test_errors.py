"""Entry points run as commands: bad input ends with one `error:` line naming the file, status 2, no traceback."""

import subprocess
import sys

import pytest

from llava.errors import EXIT_INPUT_ERROR

from .conftest import REPO


def bad_registry(tmp_path):
    registry = tmp_path / "registry.yaml"
    registry.write_text("datasets:\n  - json_path: [data.json\n")
    return registry


# (command after `python`, the file the message must name), built from the test's tmp_path
CASES = {
    "cli, missing video": lambda tmp: (["-m", "llava.cli", tmp / "missing.mp4", "What is shown?"], tmp / "missing.mp4"),
    "demo, missing checkpoint": lambda tmp: (["-m", "llava.eval.demo", "--model", tmp / "no-model"], tmp / "no-model"),
    "check_oracle, missing checkpoint": lambda tmp: (["-m", "llava.tools.check_oracle", tmp / "none"], tmp / "none"),
    "train, bad registry": lambda tmp: (
        ["-m", "llava.train.train", "--model_name_or_path", tmp / "none", "--data_path", bad_registry(tmp),
         "--output_dir", tmp / "out"],
        tmp / "registry.yaml",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_ends_with_one_error_line(tmp_path, case):
    argv, named = CASES[case](tmp_path)
    result = subprocess.run([sys.executable, *map(str, argv)], cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == EXIT_INPUT_ERROR and result.stdout == "", result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(named) in lines[0], result.stderr
