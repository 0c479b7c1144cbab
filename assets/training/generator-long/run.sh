#!/bin/bash
# Continues the long generator run in runs/long on the host path (schedule of 40,000 steps of
# batch 16, ~160 epochs of the emoji set). Same command to resume; Ctrl+C checkpoints and stops.
cd "$(dirname "$0")/../../.."
exec nice -n 10 cargo run --quiet -- train-generator --model runs/long --resume --preset small --steps 40000 --batch 16 \
  --lr 0.0003 --stages-per-step 3 --ema-decay 0.995 --warmup 200 --checkpoint-every 200 --eval-every 200 --seed 0 --path host
