#!/usr/bin/env bash
# The whole GPU session as one command (about 10 minutes, no network): wheels from .whl/, the bundled
# tokenizer from .gpu/site/, then benchmarks/gpu.py (batching, OOM, MFU) and benchmarks/gpu_article.sh
# (the article grid), each under its own time limit, and everything packed into $OUT in 4 files
# (the device returns at most 8): summary.md, article-report.md, console.txt, gpu-session.tgz.
#
#   device run, carry [".whl", ".gpu"]:   bash benchmarks/gpu_session.sh
#   here, on the CPU:                     SMOKE=1 OUT=/tmp/smoke bash benchmarks/gpu_session.sh
#   the article grid alone (a second try): ARTICLE_ONLY=1 ARTICLE_S=300 bash benchmarks/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
FINAL=${OUT:-$PWD/gpu-out}
SITE=${SITE:-/tmp/site}
mkdir -p "$FINAL" "$SITE"
if [ -z "${SMOKE:-}" ] && compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 1
fi
[ -d .gpu/site ] && cp -r .gpu/site/* "$SITE/"
export PYTHONPATH=$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH} PATH=$SITE/bin:$PATH PYTHONUNBUFFERED=1
work=$(mktemp -d /tmp/gpu-session.XXXX)
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'
  if [ -n "${SMOKE:-}" ]; then
    OUT=$work/gpu timeout 900 python3 benchmarks/gpu.py --smoke --parts batching,oom,mfu
    OUT=$work/article GRID=quick MODEL=synthetic:bge-small DEVICE=cpu DTYPE=float32 LIMIT_S=120 \
      bash benchmarks/gpu_article.sh
  else
    [ -n "${ARTICLE_ONLY:-}" ] || OUT=$work/gpu timeout ${GPU_PARTS_S:-380} python3 benchmarks/gpu.py --parts batching,oom,mfu
    OUT=$work/article LIMIT_S=${ARTICLE_S:-180} bash benchmarks/gpu_article.sh
  fi
} 2>&1 | tee "$FINAL/console.txt"
cp "$work/gpu/summary.md" "$FINAL/summary.md" 2>/dev/null
cp "$work/article/report.md" "$FINAL/article-report.md" 2>/dev/null
tar czf "$FINAL/gpu-session.tgz" -C "$work" .
echo "packed: $(ls "$FINAL")"
