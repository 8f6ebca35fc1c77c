#!/usr/bin/env bash
# One bounded GPU session (about 7 minutes, no network): see benchmarks/gpu.py for the parts.
#   benchmarks/gpu.sh            on the GPU machine, from the repository root; figures in $OUT (./gpu-out)
#   benchmarks/gpu.sh --smoke    the same code paths on the CPU with synthetic:bge-small, tiny
#
# The device has python3.12, torch (CUDA), transformers, sentence-transformers, tokenizers, numpy,
# pandas, matplotlib, psutil, prometheus-client, requests and werkzeug. Wheels to bring in .whl/
# (pure Python or cp312 manylinux x86_64, e.g. `pip download --only-binary=:all: --python-version 3.12
# --no-deps -d .whl flask itsdangerous blinker gunicorn orjson py-spy`):
#   flask, its dependencies missing on the device (itsdangerous, blinker; click, jinja2, markupsafe
#   are there), gunicorn, orjson, and optionally py-spy (the server CPU profile of the overhead part;
#   skipped without it). Not needed: locust, gevent (the Locust article-grid run is separate).
#   The bundled tokenizer comes as .gpu/site/ (benchmarks/gpu_bundle.py: without the model's weights).
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export PATH=/tmp/site/bin:$PATH  # py-spy's binary, when its wheel came along
export OUT=${OUT:-$PWD/gpu-out}
exec "${PYTHON:-python3}" benchmarks/gpu.py "$@"
