"""Evaluate a ViLAMP checkpoint on LVBench; see `python exp_lvbench.py --help`."""

from llava.eval.lvbench import BENCHMARK
from llava.eval.harness import main

if __name__ == "__main__":
    main(BENCHMARK)
