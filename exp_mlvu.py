"""Evaluate a ViLAMP checkpoint on MLVU; see `python exp_mlvu.py --help`."""

from llava.eval.mlvu import BENCHMARK
from llava.eval.harness import main

if __name__ == "__main__":
    main(BENCHMARK)
