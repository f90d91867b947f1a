#!/bin/bash
# A popnet zoo as a SLURM job array: one array task per shard, then one merge job (docs/distributed.md).
#
#   CONFIG=nws_main WORKDIR=/shared/runs/main SHARDS=16 bash examples/slurm_array.sh    # submits both jobs
#
# Each task runs `python -m popnet.train --config $CONFIG --workdir $WORKDIR`: popnet reads its shard from SLURM's
# SLURM_ARRAY_TASK_ID / _MIN / _COUNT (task i of --array=0-(N-1) trains shard i/N) into
# $WORKDIR/shards/shard-<i>-of-<N>/, with its own lock and checkpoints. A task that is preempted (SIGTERM: the run
# stops at a checkpoint) or whose node dies is requeued (--requeue) and resumes; a failed task can be resubmitted
# alone (sbatch --array=<i> ...). The merge job runs once every task has succeeded (--dependency=afterok), and
# refuses with one line naming any shard that is missing, incomplete, duplicated or of another config.
# $WORKDIR must be on a filesystem every node shares; popnet must be installed (pip install popnet) on the nodes.
set -euo pipefail

CONFIG=${CONFIG:-nws_main}
WORKDIR=${WORKDIR:-/shared/runs/main}
SHARDS=${SHARDS:-16}
CPUS=${CPUS:-8}            # per shard; popnet exposes one XLA host device per core (up to 8)
TIME=${TIME:-24:00:00}     # per task; a task that runs out is requeued only if you resubmit it (it resumes)

mkdir -p "$WORKDIR/logs"
train=$(sbatch --parsable --job-name=popnet-shards --array=0-$((SHARDS - 1)) --cpus-per-task="$CPUS" \
  --time="$TIME" --requeue --output="$WORKDIR/logs/shard-%a.log" --open-mode=append \
  --wrap="python -m popnet.train --noprogress --config $CONFIG --workdir $WORKDIR")
echo "shards: job $train (array 0-$((SHARDS - 1)))"

merge=$(sbatch --parsable --job-name=popnet-merge --dependency=afterok:"$train" --cpus-per-task=1 \
  --output="$WORKDIR/logs/merge.log" \
  --wrap="python -m popnet.zoo status $WORKDIR && python -m popnet.zoo merge $WORKDIR --out $WORKDIR/merged")
echo "merge:  job $merge (after every shard succeeded)"
echo "watch:  python -m popnet.zoo status $WORKDIR"
