#!/usr/bin/env bash
# The GPU check (issue 16): the CUDA paths in one short script, about 5 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh [--device cuda|cpu] [--quick] [--out DIR] [--archive FILE.tgz] [--step-limit S]
#
# 1. runs ssmworld from this checkout when it is not installed, and installs its missing pure-Python dependencies
#    (no internet on the GPU machine) from wheels carried in benchmarks/wheels/ when that folder exists (torch must be
#    there already; benchmarks/gpu_wheels.sh downloads them beforehand; or put them on PYTHONPATH yourself),
# 2. runs the sequence-core contract, world-model and agent tests with every tensor on the device
#    (SSMWORLD_TEST_DEVICE: tests/conftest.py makes it torch's default device),
# 3. `ssmworld bench cores` and `ssmworld bench world-model` (S5 vs GRU) at T in {256, 1024, 4096} on the device,
#    the world model also with bfloat16 autocast (agent.precision; tests/test_precision.py checks it against fp32),
# 4. one short training run of r2i, dreamerv3 and drama on the device (debug size; Mamba-1 is in the tests and
#    benches), then the r2i run resumed and evaluated there (checkpoints load on the CPU and move; a bench or run that
#    fails counts as a failed step).
# --quick: tiny sizes, no compile tests (what CI runs on the CPU: the plumbing, not the numbers). Every step runs even
# if an earlier one fails; the exit code is the number of failed steps, the JSON files and logs land in --out (default
# gpu_check_out), and with --archive also in one .tgz (logs, JSON and the runs' summaries: what a lent machine sends
# back, see docs/REPRODUCE.md), rewritten after every step so that a run cut short still leaves what it did. Relative
# paths are taken from the repository root. `python3` is the Python that runs everything (the one with torch).
# --step-limit: seconds any one step may take before it is stopped and counted failed (default 240), so that one slow
# step cannot spend a lent machine's whole time.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda QUICK=0 OUT=gpu_check_out ARCHIVE= STEP_LIMIT=240
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --out) OUT="$2"; shift 2 ;;
        --archive) ARCHIVE="$2"; shift 2 ;;
        --step-limit) STEP_LIMIT="$2"; shift 2 ;;
        *) echo "gpu_check.sh: unknown argument $1 (--device D, --quick, --out DIR, --archive FILE, --step-limit S)" >&2
           exit 2 ;;
    esac
done
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONUNBUFFERED=1
failed=0
archive() {  # the logs, JSON and the runs' summaries so far, in one .tgz (--archive)
    [ -n "$ARCHIVE" ] || return 0
    (cd "$OUT" && shopt -s nullglob && tar czf - ./*.log ./*.json ./train_*/summary.json ./train_*/metrics.jsonl) \
        >"$ARCHIVE.part" && mv "$ARCHIVE.part" "$ARCHIVE"
}
step() {  # step NAME COMMAND...: run (at most --step-limit seconds), log to $OUT/NAME.log, count failures
    local name="$1"; shift
    local start=$SECONDS
    if timeout -k 10 "$STEP_LIMIT" "$@" >"$OUT/$name.log" 2>&1; then
        echo "gpu_check: $name ok ($((SECONDS - start)) s)"
    else
        local why=""
        [ $((SECONDS - start)) -lt "$STEP_LIMIT" ] || why=", stopped at --step-limit"
        echo "gpu_check: $name FAILED ($((SECONDS - start)) s$why); last lines of $OUT/$name.log:"
        tail -5 "$OUT/$name.log"
        failed=$((failed + 1))
    fi
    archive || { echo "gpu_check: could not write $ARCHIVE"; failed=$((failed + 1)); }
}

if ! python3 -c "import ssmworld" 2>/dev/null; then  # run from the checkout: nothing to build or download
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
NEEDS="import ssmworld.cli, gymnasium, rich, yaml, safetensors, pytest"
if ! python3 -c "$NEEDS" 2>/dev/null; then  # offline: the missing pure-Python packages from carried wheels
    if [ -d benchmarks/wheels ]; then
        step install python3 -m pip install --no-index --find-links benchmarks/wheels gymnasium rich pyyaml safetensors pytest
    else
        step install python3 -c "$NEEDS"  # names the first missing package
    fi
fi
python3 -c "import torch; print('gpu_check: torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else '')"

if [ "$QUICK" = 1 ]; then  # CI already runs every test on the CPU: here only the device plumbing
    TESTS=(tests/test_agent.py tests/test_precision.py) LENGTHS=32 SIZE=(--batch 2 --repeats 1) CORES=(--cores s5,gru)
    SELECT=(-k "not compiled")  # the compiled-imagination tests: ~100 s of compiling that CI's own run repeats
else
    TESTS=(tests/test_cores_contract.py tests/test_world_model.py tests/test_agent.py tests/test_precision.py)
    LENGTHS=256,1024,4096 SIZE=()
    CORES=() SELECT=()
fi
step tests env SSMWORLD_TEST_DEVICE="$DEVICE" python3 -m pytest -q -x -p no:cacheprovider "${SELECT[@]}" "${TESTS[@]}"
step bench_cores python3 -m ssmworld bench cores --device "$DEVICE" --lengths "$LENGTHS" "${SIZE[@]}" "${CORES[@]}" \
    --json "$OUT/cores.json"
step bench_world_model python3 -m ssmworld bench world-model --device "$DEVICE" --cores s5,gru --lengths "$LENGTHS" \
    "${SIZE[@]}" --json "$OUT/world_model.json"
step bench_world_model_bf16 python3 -m ssmworld bench world-model --device "$DEVICE" --cores s5,gru --lengths "$LENGTHS" \
    "${SIZE[@]}" --precision bfloat16 --json "$OUT/world_model_bf16.json"

STEPS=$([ "$QUICK" = 1 ] && echo 60 || echo 400)
for preset in r2i dreamerv3 drama; do
    rm -rf "$OUT/train_$preset"
    step "train_$preset" python3 -m ssmworld train --preset "$preset" --size debug --env builtin:recall/3 \
        --device "$DEVICE" --steps "$STEPS" --logdir "$OUT/train_$preset" --quiet train.prefill=40 \
        train.eval_episodes=2
done
# resume on the device: checkpoints load on the CPU and move (replay counters, acting state, the CUDA RNG)
step resume_r2i python3 -m ssmworld train --logdir "$OUT/train_r2i" --resume --device "$DEVICE" \
    --steps $((STEPS + 40)) --quiet
step eval_r2i python3 -m ssmworld eval --logdir "$OUT/train_r2i" --episodes 2 --device "$DEVICE"
echo "gpu_check: $failed step(s) failed; logs and JSON in $OUT"
[ -z "$ARCHIVE" ] || echo "gpu_check: archived in $ARCHIVE"
exit "$failed"
