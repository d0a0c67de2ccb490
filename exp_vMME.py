"""Evaluate a ViLAMP checkpoint on Video-MME; see `python exp_vMME.py --help`."""

from llava.eval.videomme import BENCHMARK
from llava.eval.harness import main

if __name__ == "__main__":
    main(BENCHMARK)
