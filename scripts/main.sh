#!/usr/bin/env bash
# The README's main command: set up .venv, then run the offline demo (stock YOLOv8n against every registered attention
# layer after SPPF, all fine-tuned from the shipped pretrained weights on generated data, 2 seeds; table with error bars
# and pictures in runs/yolo_attn_demo/). Extra arguments go to `yolo-attn demo`. Installs only what the demo needs
# (scripts/setup_env.sh demo); the test command, scripts/test.sh, adds the test and deployment extras.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh demo
export YOLO_OFFLINE=1
exec .venv/bin/yolo-attn demo "$@"
