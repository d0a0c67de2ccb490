"""Evaluate a ViLAMP checkpoint on ActivityNet-QA; see `python exp_activitynetqa.py --help`."""

from llava.eval.activitynetqa import BENCHMARK
from llava.eval.harness import main

if __name__ == "__main__":
    main(BENCHMARK)
