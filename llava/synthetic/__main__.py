"""python -m llava.synthetic OUT_DIR --train 300 --test 60 --seed 0"""

import argparse
import time
from pathlib import Path

from llava.errors import command
from llava.synthetic import generate


@command
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic needle-colour video QA task.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--train", type=int, default=300, help="training videos")
    parser.add_argument("--test", type=int, default=60, help="held-out test videos")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    generate(args.out_dir, args.train, args.test, args.seed)
    print(f"wrote {args.train} training and {args.test} test videos to {args.out_dir} "
          f"in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
