"""Is the HTTP front end the limit at small requests on this machine? (issue 20, part 4)

The null model (the whole serving path; the forward pass an instant 1024-dim output) needs no model
to share, so gunicorn with 2 workers is exactly "2 front-end processes" and 1 worker the server as
it ships. Both serve b=1 and b=32 requests of 128 tokens, closed loop, c=64, from 2 client
processes (benchmarks/http_load.py), 10 s a cell, alternated W=1, 2, 1, 2. If 2 front ends served
clearly more, splitting the front end from the model process would pay here.

    flock /tmp/cpu.lock .venv/bin/python benchmarks/results/cpu2-2026-12-06/frontend-workers/frontend-workers.py
"""

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from http_load import encode_bodies, run_load  # noqa: E402

from embed_bench.core.payloads import PassageFactory  # noqa: E402
from target_server.launcher import free_port, running_http_server  # noqa: E402

SERVE = """
import sys
from target_server.gunicorn_app import GunicornServer
port, workers = int(sys.argv[1]), int(sys.argv[2])
GunicornServer({"model": "null:1024", "warmup": False},
               {"bind": f"127.0.0.1:{port}", "workers": workers, "worker_class": "gthread", "threads": 64,
                "timeout": 120, "keepalive": 30, "backlog": 2048, "loglevel": "warning",
                "control_socket_disable": True}).run()
"""

texts = PassageFactory("", seed=1).passages(2048, 128, stream="frontend")
bodies = {b: encode_bodies(texts, b) for b in (1, 32)}
results = []
for workers in (1, 2, 1, 2):
    port = free_port()
    with running_http_server([sys.executable, "-c", SERVE, str(port), str(workers)], port, timeout_s=120) as url:
        run_load(url, bodies[1], 64, 2.0, 2)  # warm every worker's connections
        for b in (1, 32):
            totals = run_load(url, bodies[b], 64, 10.0, 2)
            row = {"workers": workers, "batch_size": b, "requests": totals.requests, "tokens_per_s": totals.tokens_per_s,
                   "requests_per_s": totals.requests / totals.seconds, "failures": totals.failures,
                   "time": time.strftime("%H:%M:%S")}
            results.append(row)
            print(json.dumps(row), flush=True)
(Path(__file__).parent / "frontend-workers.json").write_text(json.dumps(results, indent=2))
