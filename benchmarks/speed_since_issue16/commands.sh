#!/bin/bash
# Issue 16's "imagination >= 1.5x faster than at the issue's start", measured in one run: `ssmworld bench update` of
# the code at the issue's start (BEFORE: the src folder of a checkout of 39f7e99, the commit that added the bench)
# against this checkout, eager and with agent.compile_imagination=true, processes alternated round by round.
# The same settings in both (the keys were renamed since: core_cfg -> gru, imagination_starts -> imagination.count).
# Run from the repository root on quiet cores:
#   git worktree add /tmp/base 39f7e99
#   BEFORE=/tmp/base/src bash benchmarks/speed_since_issue16/commands.sh
#   python benchmarks/speed_since_issue16/summary.py speed_out
BEFORE=${BEFORE:?set BEFORE to the src folder of a checkout of 39f7e99} AFTER=${AFTER:-$PWD/src}
export OMP_NUM_THREADS=1
PY=${PY:-python} O=${O:-speed_out} ROUNDS=${ROUNDS:-3} REPEATS=${REPEATS:-7}
mkdir -p "$O"
upd() { # config variant round pythonpath args...
  local tag=$1_$2_$3 pp=$4; shift 4
  PYTHONPATH=$pp $PY -m ssmworld bench update --repeats "$REPEATS" --json "$O/$tag.json" "$@" > "$O/$tag.log" 2>&1 \
    || { echo "$tag failed, see $O/$tag.log"; return; }
  echo "$tag: $(grep -m1 's per update' "$O/$tag.log")"
}
M06="agent.world_model.units=64 agent.world_model.encoder_layers=3 agent.world_model.head_layers=3
 agent.world_model.latent_groups=32 agent.world_model.latent_classes=4 agent.actor_critic.units=64
 agent.actor_critic.layers=3 train.batch_size=16 train.sequence_length=64"
M06_BEFORE="$M06 agent.world_model.core_cfg.width=512 agent.world_model.core_cfg.blocks=8 agent.imagination_starts=1024"
M06_AFTER="$M06 agent.world_model.gru.width=512 agent.world_model.gru.blocks=8 agent.imagination.count=1024"
COMPILED=agent.compile_imagination=true
variant_args() { # config variant -> the pythonpath and arguments of that cell
  local src=$AFTER extra="" base="--env dmc:cartpole_balance"
  [ "$2" = before ] && src=$BEFORE
  [ "$2" = compiled ] && extra=$COMPILED
  case $1 in
    r2i_small) echo "$src --preset r2i $base $extra" ;;
    dreamerv3_small) echo "$src --preset dreamerv3 $base $extra" ;;
    model06) if [ "$2" = before ]; then echo "$src --preset dreamerv3 $base $M06_BEFORE"
             else echo "$src --preset dreamerv3 $base $M06_AFTER $extra"; fi ;;
  esac
}
for round in $(seq 1 "$ROUNDS"); do
  order="before eager compiled"
  [ $((round % 2)) = 0 ] && order="compiled eager before"  # no variant always first
  for config in r2i_small dreamerv3_small model06; do
    for variant in $order; do
      # shellcheck disable=SC2046
      upd $config $variant $round $(variant_args $config $variant)
    done
  done
done
echo done $(date)
