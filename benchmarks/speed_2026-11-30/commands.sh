#!/bin/bash
# BEFORE / AFTER: the src/ folders of two checkouts (here 18a29da and this commit); run from the repository root
BEFORE=${BEFORE:?set BEFORE to the src folder of a checkout before the change} AFTER=${AFTER:-$PWD/src}
# quiet-window benchmarks of session 5 (issue 16): before (18a29da) vs after (HEAD), fp32 vs bf16; 1 thread each, sequential
export OMP_NUM_THREADS=1
PY=${PY:-python}
O=${O:-speed_out}
mkdir -p "$O"
upd() { # tag pythonpath args...
  local tag=$1 pp=$2; shift 2
  PYTHONPATH=$pp $PY -m ssmworld bench update --repeats 7 --json $O/update_$tag.json "$@" > $O/update_$tag.log 2>&1
  echo "$tag: $(grep -m1 's per update' $O/update_$tag.log)"
}
for round in 1; do
  upd before_r2i_dmc_$round "$BEFORE" --preset r2i --env dmc:cartpole_balance
  upd after_r2i_dmc_$round "$AFTER" --preset r2i --env dmc:cartpole_balance
  upd after_r2i_dmc_bf16_$round "$AFTER" --preset r2i --env dmc:cartpole_balance agent.precision=bfloat16
  upd before_r2i_recall_$round "$BEFORE" --preset r2i --env builtin:recall/250 train.sequence_length=512
  upd after_r2i_recall_$round "$AFTER" --preset r2i --env builtin:recall/250 train.sequence_length=512
  upd after_r2i_recall_bf16_$round "$AFTER" --preset r2i --env builtin:recall/250 train.sequence_length=512 agent.precision=bfloat16
  upd before_dv3_recall_$round "$BEFORE" --preset dreamerv3 --env builtin:recall/250 train.sequence_length=512
  upd after_dv3_recall_$round "$AFTER" --preset dreamerv3 --env builtin:recall/250 train.sequence_length=512
  upd after_dv3_recall_bf16_$round "$AFTER" --preset dreamerv3 --env builtin:recall/250 train.sequence_length=512 agent.precision=bfloat16
  upd before_dv3_06M_$round "$BEFORE" --preset dreamerv3 --env dmc:cartpole_balance agent.world_model.units=64 agent.world_model.encoder_layers=3 agent.world_model.head_layers=3 agent.world_model.gru.width=512 agent.world_model.gru.blocks=8 agent.world_model.latent_groups=32 agent.world_model.latent_classes=4 agent.actor_critic.units=64 agent.actor_critic.layers=3 train.batch_size=16 train.sequence_length=64 agent.imagination.count=1024
  upd after_dv3_06M_$round "$AFTER" --preset dreamerv3 --env dmc:cartpole_balance agent.world_model.units=64 agent.world_model.encoder_layers=3 agent.world_model.head_layers=3 agent.world_model.gru.width=512 agent.world_model.gru.blocks=8 agent.world_model.latent_groups=32 agent.world_model.latent_classes=4 agent.actor_critic.units=64 agent.actor_critic.layers=3 train.batch_size=16 train.sequence_length=64 agent.imagination.count=1024
  upd after_dv3_06M_bf16_$round "$AFTER" --preset dreamerv3 --env dmc:cartpole_balance agent.world_model.units=64 agent.world_model.encoder_layers=3 agent.world_model.head_layers=3 agent.world_model.gru.width=512 agent.world_model.gru.blocks=8 agent.world_model.latent_groups=32 agent.world_model.latent_classes=4 agent.actor_critic.units=64 agent.actor_critic.layers=3 train.batch_size=16 train.sequence_length=64 agent.imagination.count=1024 agent.precision=bfloat16
done
for prec in float32 bfloat16; do
  PYTHONPATH="$AFTER" $PY -m ssmworld bench cores --cores s5,gru --lengths 256,1024,4096 --repeats 3 --precision $prec --json $O/cores_$prec.json > $O/cores_$prec.log 2>&1
  tail -n 14 $O/cores_$prec.log
done
PYTHONPATH="$BEFORE" $PY -m ssmworld bench cores --cores s5 --lengths 1024,4096 --repeats 3 --json $O/cores_before.json > $O/cores_before.log 2>&1
tail -n 8 $O/cores_before.log
for prec in float32 bfloat16; do
  PYTHONPATH="$AFTER" $PY -m ssmworld bench world-model --lengths 256,1024 --repeats 3 --precision $prec --json $O/wm_$prec.json > $O/wm_$prec.log 2>&1
  tail -n 12 $O/wm_$prec.log
done
OMP_NUM_THREADS=1 $PY benchmarks/small_softmax.py --json $O/small_softmax.json > $O/small_softmax.log 2>&1; cat $O/small_softmax.log
echo done $(date)
