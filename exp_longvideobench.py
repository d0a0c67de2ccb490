"""Evaluate a ViLAMP checkpoint on LongVideoBench; see `python exp_longvideobench.py --help`."""

from llava.eval.longvideobench import BENCHMARK
from llava.eval.harness import main

if __name__ == "__main__":
    main(BENCHMARK)
