#!/usr/bin/env bash
# Mixed clusters: ranks on CPUs of different ISAs must keep bitwise-identical replicas. One
# machine stands in for two nodes: rank 0 runs oneDNN capped at SSE4.1 (DNNL_MAX_CPU_ISA) and
# OpenBLAS's Nehalem kernels (OPENBLAS_CORETYPE), rank 1 whatever this CPU has. Their local
# gradients differ in the last bits; the averaged gradients, and so the update, are the same on
# both, and the per-epoch replica check (every rank's parameter checksum against rank 0's) must
# pass. The binary is the portable default build (no -march=native), which both "nodes" run.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
args=(train --model "$SRC/models/fmnist-cnn.cfg" --data synthetic:512:1:28:28:10 --epochs 2
      --threads 1 --lr 0.05 --batch 32 --allreduce ring --no-progress)
# the verbose lines name the ISA each rank's oneDNN and OpenBLAS use
low=(env DNNL_VERBOSE=1 DNNL_MAX_CPU_ISA=SSE41 OPENBLAS_VERBOSE=2 OPENBLAS_CORETYPE=Nehalem)
high=(env DNNL_VERBOSE=1 OPENBLAS_VERBOSE=2)
rc=0
timeout 300 mpirun --oversubscribe --bind-to none -np 1 --output-filename "$TMP/out" "${low[@]}" "$DPT" "${args[@]}" : \
  -np 1 "${high[@]}" "$DPT" "${args[@]}" > "$TMP/run.txt" 2>&1 || rc=$?
r0=$(cat "$TMP"/out/1/rank.0/std* 2> /dev/null) r1=$(cat "$TMP"/out/1/rank.1/std* 2> /dev/null)
isa0=$(grep -m1 -o 'cpu,isa:.*' <<< "$r0") isa1=$(grep -m1 -o 'cpu,isa:.*' <<< "$r1")
[[ $isa0 == *"SSE4.1"* && -n $isa1 && $isa1 != "$isa0" ]] && ok \
  || bad "the ranks did not run different oneDNN ISAs: rank 0 '$isa0', rank 1 '$isa1'"
[[ $r0 == *"Core: Nehalem"* ]] && ok || bad "rank 0 did not run OpenBLAS's Nehalem kernels"
[[ $rc -eq 0 ]] && ok || bad "mixed-ISA run: exit $rc: $(grep -v onednn_verbose "$TMP/run.txt" | tail -5)"
grep -q "^epoch 2/2 " <<< "$r0" && grep -q "^final test accuracy: .*param_crc" <<< "$r0" && ok \
  || bad "mixed-ISA run: no epoch line or final line (replica check failed?): $(grep -v onednn_verbose <<< "$r0" | tail -4)"
finish
