cd /work/main
export OMP_NUM_THREADS=1
for round in 1 2 3; do
  order="before after"; [ $((round % 2)) = 0 ] && order="after before"
  for env in dmc:cartpole_balance bsuite:memory_len/22; do
    for v in $order; do
      src=$PWD/src; [ $v = before ] && src=/tmp/base_eager/src
      tag=$(echo $env | tr ':/' '__')_${v}_$round
      PYTHONPATH=$src .venv/bin/python -m ssmworld bench update --preset r2i --env $env --repeats 7 --json /tmp/eager_ab/$tag.json > /tmp/eager_ab/$tag.log 2>&1
      echo "$tag $(grep -m1 's per update' /tmp/eager_ab/$tag.log)"
    done
  done
done
echo DONE
