"""Run the yolo-attn benchmarks (same as ``yolo-attn bench``): ``python scripts/benchmark.py [--quick] ...``."""

import sys

from yolo_attn.bench import main

if __name__ == "__main__":
    sys.exit(main())
