"""The README's main command: the shipped trained tiny ViLAMP answers held-out needle questions through the harness."""

import json

from llava.eval import demo


def test_the_demo_shows_a_model_that_answers(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no models/ here: the shipped checkpoint is used
    accuracy = demo.main(["--videos", "24"])
    out = capsys.readouterr().out
    assert f"checkpoint: {demo.SHIPPED}" in out
    assert accuracy >= 0.8, out  # chance 0.25; measured 1.0 (a float-rounding flip or two must not matter)
    assert "chance 25%" in out
    summary = json.loads((tmp_path / demo.OUTPUT_DIR / "summary.json").read_text())
    assert summary["errors"] == 0 and summary["missing"] == 0
    for figure in ("summary.png", "keyframes.png"):
        assert (tmp_path / demo.OUTPUT_DIR / figure).stat().st_size > 10_000
