#!/usr/bin/env bash
# The GPU throughput check (issue 14), run ON THE GPU MACHINE from the project's root, after
# `EXTRA_WHEELS="jinja2 markupsafe filelock" bash ../shared/gpu/prepare.sh` filled .device/ here (see ../shared/gpu/README.md):
#
#     LOG_DIR=$OUT bash .device/run.sh 'bash benchmarks/gpu_check.sh'
#
# It writes the Llama-2-70B-shaped Q4_0 GGUF (38.8 GB, sparse: a second) to /tmp, then runs
# `benchmarks/throughput.py --quick --auto` on it (about 3-4 minutes on an H200): single stream raw
# vs pipeline, raw llama.cpp batched decode beside the pipeline's at 1-64 sequences, prompt speed,
# and `--parallel auto` (generate + restyle at the N it picks). Written to $LOG_DIR (default /tmp)
# as it goes, so a run cut short still returns what it measured:
#   gpu_check.log     everything printed (the benchmark's tables end with its summary line)
#   throughput.json   every figure, rewritten as soon as it is measured
#   gpu.txt           nvidia-smi before the run
# Options (environment): SHAPE=tiny (a 2-layer file: the CPU check the tests run), BUDGET=seconds
# for the benchmark (default 330; it is stopped with Ctrl-C then, the JSON keeps what it has),
# TOKENS=N, SIZES=1,2,4,8,16,32,64, PYTHON=python3.
set -u
LOG_DIR=${LOG_DIR:-/tmp}
SHAPE=${SHAPE:-llama2-70b}
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-330}
MODEL=${MODEL:-/tmp/convogen-shape-$SHAPE.gguf}
export PYTHONUNBUFFERED=1
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/gpu_check.log"
JSON="$LOG_DIR/throughput.json"
: > "$LOG"
T0=$(date +%s)
log() { echo "[gpu_check $(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
run() { "$@" 2>&1 | tee -a "$LOG"; return "${PIPESTATUS[0]}"; }

log "shape $SHAPE -> $MODEL; logs in $LOG_DIR; benchmark budget ${BUDGET}s"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi > "$LOG_DIR/gpu.txt" 2>&1
  run nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version --format=csv,noheader
fi

# fail in seconds, not minutes, if something the benchmark imports is missing here
run "$PY" - <<'EOF' || { log "preflight failed: see above"; exit 2; }
import sys
sys.path.insert(0, "benchmarks")
import llama_cpp
import gguf
import shape_gguf
import throughput
from convogen_tui.llm.llama_cpp import gpu_offload_supported
print(f"preflight: python {sys.version.split()[0]}, llama_cpp {llama_cpp.__version__}, "
      f"gguf imported, GPU offload {'yes' if gpu_offload_supported() else 'no'}")
EOF

log "writing the shape GGUF"
run "$PY" benchmarks/shape_gguf.py "$MODEL" --preset "$SHAPE" || { log "shape_gguf failed"; exit 3; }

log "running throughput.py --quick --auto"
args=(--quick --auto --model "$MODEL" --json "$JSON")
[ -n "${TOKENS:-}" ] && args+=(--tokens "$TOKENS")
[ -n "${SIZES:-}" ] && args+=(--sizes "$SIZES")
run timeout --signal=INT --kill-after=20 "$BUDGET" "$PY" benchmarks/throughput.py "${args[@]}"
rc=$?
[ "$rc" = 124 ] && log "the benchmark ran past ${BUDGET}s and was stopped; $JSON has what it measured"
log "throughput.py exit $rc; figures in $JSON"
rm -f "$MODEL"
exit "$rc"
