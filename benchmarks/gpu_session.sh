#!/usr/bin/env bash
# The whole GPU session as one command (about 8 minutes, no network): wheels from .whl/, the bundled
# tokenizer from .gpu/site/, Infinity's wheels from .peer-whl/ (into their own folder, $PEER_SITE),
# then benchmarks/gpu.py (batching, OOM, MFU, the Infinity peer, the server overhead on all cores,
# serve --frontends 1 against 4, in that order: a session cut short loses the last), each part under its own time limit,
# and everything packed into $OUT in 3-4 files (the device returns at most 8): summary.md, console.txt,
# gpu-session.tgz, and with ARTICLE=1 article-report.md (the study's grid, benchmarks/gpu_article.sh:
# measured on the H200 on 2026-11-29, so left out by default to keep the session in its budget).
#
#   device run, carry [".whl", ".gpu", ".peer-whl"]:   bash benchmarks/gpu_session.sh
#   here, on the CPU:                     PATH=$PWD/.venv/bin:$PATH SMOKE=1 OUT=/tmp/smoke bash benchmarks/gpu_session.sh
#     (the peer part with PEER_SITE=DIR holding Infinity, or INFINITY=a venv's infinity_emb)
#   the article grid alone (a second try): ARTICLE_ONLY=1 ARTICLE_S=300 bash benchmarks/gpu_session.sh
#   Infinity's wheels: bash benchmarks/peer_wheels.sh (here, with network: cp312 wheels into .peer-whl/)
set -uo pipefail
cd "$(dirname "$0")/.."
FINAL=${OUT:-$PWD/gpu-out}
SITE=${SITE:-/tmp/site}
mkdir -p "$FINAL" "$SITE"
if [ -z "${SMOKE:-}" ] && compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 1
fi
[ -d .gpu/site ] && cp -r .gpu/site/* "$SITE/"
export PEER_SITE=${PEER_SITE:-/tmp/peer-site}
if [ -z "${SMOKE:-}" ] && compgen -G ".peer-whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$PEER_SITE" .peer-whl/*.whl \
    || echo "the peer's wheels did not install: the peer part will be skipped"
fi
peer=(${INFINITY:+--infinity "$INFINITY"})
export PYTHONPATH=$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH} PATH=$SITE/bin:$PATH PYTHONUNBUFFERED=1
work=$(mktemp -d /tmp/gpu-session.XXXX)
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'
  if [ -n "${SMOKE:-}" ]; then
    OUT=$work/gpu timeout 1500 python3 benchmarks/gpu.py --smoke --parts batching,oom,mfu,peer,overhead,frontends "${peer[@]}"
    [ -z "${ARTICLE:-}" ] || OUT=$work/article GRID=quick MODEL=synthetic:bge-small DEVICE=cpu DTYPE=float32 \
      LIMIT_S=120 bash benchmarks/gpu_article.sh
  else
    [ -n "${ARTICLE_ONLY:-}" ] || OUT=$work/gpu timeout ${GPU_PARTS_S:-540} python3 benchmarks/gpu.py --parts batching,oom,mfu,peer,overhead,frontends "${peer[@]}"
    [ -z "${ARTICLE:-}${ARTICLE_ONLY:-}" ] || OUT=$work/article LIMIT_S=${ARTICLE_S:-180} bash benchmarks/gpu_article.sh
  fi
} 2>&1 | tee "$FINAL/console.txt"
cp "$work/gpu/summary.md" "$FINAL/summary.md" 2>/dev/null
cp "$work/article/report.md" "$FINAL/article-report.md" 2>/dev/null
tar czf "$FINAL/gpu-session.tgz" -C "$work" .
echo "packed: $(ls "$FINAL")"
