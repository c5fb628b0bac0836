#!/usr/bin/env bash
# The model zoo data-parallel (issue 17): resnet50, vit-lite, vit-tiny and efficientnet-b0 (and
# the transformer and squeeze-excitation layers, dropout and drop path in them) train at np 2,
# and the replicas stay bitwise identical: the trainer compares a checksum of every rank's
# parameters and BN statistics after each epoch and stops with an error naming the rank
# otherwise; here two epochs of two steps each, and the final line must be printed.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
MPI=(mpirun --oversubscribe --bind-to none -np 2)
run() {   # run NAME DATA ARGS...
  local name=$1 data=$2 rc=0
  shift 2
  timeout 600 "${MPI[@]}" "$DPT" train --model "$SRC/models/$name.cfg" --data "$data" --batch 2 \
    --epochs 2 --threads 1 --no-progress --no-eval --allreduce ring "$@" > "$TMP/$name.txt" 2>&1 || rc=$?
  [[ $rc -eq 0 ]] && grep -q "^final" "$TMP/$name.txt" && ok \
    || bad "$name at np 2: exit $rc: $(tail -3 "$TMP/$name.txt")"
}
run vit-tiny synthetic:8:1:28:28:10 --optimizer adamw --lr 0.001
run vit-lite synthetic:8:3:32:32:10 --optimizer adamw --lr 0.001
run efficientnet-b0 synthetic:8:3:32:32:10 --lr 0.05
run resnet50 synthetic:8:3:32:32:10 --lr 0.05
finish
