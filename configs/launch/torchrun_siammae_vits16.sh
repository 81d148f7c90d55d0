#!/bin/bash
# SiamMAE ViT-S/16 with torchrun: run this script once per node with NODE_RANK=0..NNODES-1.
# Lightning detects TorchElasticEnvironment; devices and num_nodes must match torchrun's arguments.
# Effective batch = per-GPU batch x GPUS x NNODES x accumulate_grad_batches; lr scales linearly (/256).
set -euo pipefail
NNODES=${NNODES:-1}; GPUS=${GPUS:-8}; NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}; MASTER_PORT=${MASTER_PORT:-29500}
ACCUM=$(( 2048 / (64 * GPUS * NNODES) )); [ "$ACCUM" -lt 1 ] && ACCUM=1
# Not a divisor of 2048 (e.g. 6 GPUs): the effective batch differs from the paper's; the lr still follows it.
echo "effective batch $(( 64 * GPUS * NNODES * ACCUM )) = 64 x $GPUS GPUs x $NNODES nodes x accumulate $ACCUM"
# Resume after a crash/preemption: rerun with the same settings plus --ckpt_path <run>/checkpoints/last.ckpt.
export OMP_NUM_THREADS=1
.venv/bin/torchrun --nnodes "$NNODES" --nproc_per_node "$GPUS" --node_rank "$NODE_RANK" \
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" -m lightning_modules fit \
  --config configs/siammae.yaml --trainer configs/trainer/gpu.yaml \
  --trainer.num_nodes "$NNODES" --trainer.devices "$GPUS" --trainer.accumulate_grad_batches "$ACCUM" \
  --data.root "${DATA:-/datasets/kinetics400/train}" "$@"
