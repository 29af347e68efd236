#!/bin/bash
# The actor-critic update before and after freezing the world model's parameters while imagining (commit c61360c),
# `ssmworld bench update` of both in alternated processes, 3 rounds, 1 thread. Run from the repository root:
#   git worktree add /tmp/base3 c61360c~1
#   BEFORE=/tmp/base3/src bash benchmarks/frozen_dynamics_2026-12-03/commands.sh
#   python benchmarks/speed_since_issue16/summary.py benchmarks/frozen_dynamics_2026-12-03
BEFORE=${BEFORE:?set BEFORE to the src folder of a checkout of c61360c~1} AFTER=${AFTER:-$PWD/src}
export OMP_NUM_THREADS=1
O=${O:-benchmarks/frozen_dynamics_2026-12-03}
M06="agent.world_model.units=64 agent.world_model.encoder_layers=3 agent.world_model.head_layers=3
 agent.world_model.latent_groups=32 agent.world_model.latent_classes=4 agent.actor_critic.units=64
 agent.actor_critic.layers=3 train.batch_size=16 train.sequence_length=64 agent.world_model.gru.width=512
 agent.world_model.gru.blocks=8 agent.imagination.count=1024"
for r in 1 2 3; do
  order="before after"; [ "$r" = 2 ] && order="after before"
  for v in $order; do
    src=$AFTER; [ "$v" = before ] && src=$BEFORE
    PYTHONPATH=$src python -m ssmworld bench update --repeats 5 --preset r2i --env dmc:cartpole_balance \
      --json "$O/r2i_small_${v}_$r.json" > /dev/null
    PYTHONPATH=$src python -m ssmworld bench update --repeats 5 --preset dreamerv3 --env dmc:cartpole_balance \
      --json "$O/dreamerv3_small_${v}_$r.json" > /dev/null
    # shellcheck disable=SC2086
    PYTHONPATH=$src python -m ssmworld bench update --repeats 5 --preset dreamerv3 --env dmc:cartpole_balance $M06 \
      --json "$O/model06_${v}_$r.json" > /dev/null
  done
done
