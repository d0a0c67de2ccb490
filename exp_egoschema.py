"""Evaluate a ViLAMP checkpoint on EgoSchema; see `python exp_egoschema.py --help`."""

from llava.eval.egoschema import BENCHMARK
from llava.eval.harness import main

if __name__ == "__main__":
    main(BENCHMARK)
