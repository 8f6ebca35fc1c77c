#!/usr/bin/env bash
# Infinity 0.0.78 and the pins it runs with, as wheels, for the GPU session's peer part (no network
# there). They are installed with pip --target into their own folder ($PEER_SITE), first on the peer's
# path only: its transformers 4.53 and sentence-transformers 3.4 shadow the machine's newer ones for
# that process, and torch, CUDA, numpy and the rest are the machine's (the versions are those of the
# CPU peer's venv, benchmarks/results/cpu2-2026-12-06/peer-venv-freeze.txt). kernels comes too: that
# transformers imports `kernels` whenever one is installed, and a newer one than 0.10 (our venv's 0.19)
# needs a huggingface_hub the peer's transformers cannot take.
#
#   bash benchmarks/peer_wheels.sh                                   # cp312 into .peer-whl/ (GPU machine)
#   PY=3.11 DEST=/tmp/peer-whl bash benchmarks/peer_wheels.sh        # for this machine, then
#   .venv/bin/python -m pip install --no-deps --target /tmp/peer-site /tmp/peer-whl/*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-3.12}
DEST=${DEST:-.peer-whl}
PIP=${PIP:-.venv/bin/python -m pip}
PACKAGES=(
  infinity_emb==0.0.78 sentence-transformers==3.4.1 transformers==4.53.3 tokenizers==0.21.4
  huggingface_hub==0.36.2 fastapi==0.165.0 starlette==1.10.0 annotated-doc==0.0.7 pydantic==2.14.4
  pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0
  uvicorn==0.32.1 prometheus-fastapi-instrumentator==8.1.0 typer==0.12.5 click==8.1.8 rich==13.9.4
  posthog==7.91.1 backoff==2.2.1 distro==1.9.0 orjson==3.13.0
  kernels==0.10.4 httptools==0.9.0
)
mkdir -p "$DEST"
$PIP download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST" "${PACKAGES[@]}"
echo "$(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST"
