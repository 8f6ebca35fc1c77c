"""What server telemetry costs: CPU per scrape on the server (rendering ``/metrics``) and in the
``embed-bench run`` process (parsing it), against the real server on the bundled model.

At one scrape a second the cost is a fraction of one core: ``ms per scrape / 1000``. The server's
figure bounds what sampling can take from its throughput; the sampler's runs in the ``embed-bench
run`` process, not in a Locust process, so it takes nothing from the load generator's event loop.

    .venv/bin/python benchmarks/telemetry_overhead.py --out benchmarks/results/<machine>-<date>/telemetry-overhead.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from embed_bench.core.server_metrics import fetch, parse_samples  # noqa: E402
from target_server.launcher import running_target_server  # noqa: E402


def cpu_ms_per_call(call, count: int) -> float:
    """Process CPU (user + system) per call, in ms, over ``count`` calls."""
    began = time.process_time()
    for _ in range(count):
        call()
    return (time.process_time() - began) / count * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=500)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import urllib.request

    with running_target_server("--batching", "continuous", env={"OMP_NUM_THREADS": "1"}) as url:
        # Some work first, so every histogram and label set the server exports has samples.
        for _ in range(20):
            request = urllib.request.Request(
                f"{url}/embed", data=b'{"texts": ["a short passage", "another one"]}', method="POST"
            )
            request.add_header("Content-Type", "application/json")
            urllib.request.urlopen(request, timeout=30).read()
        body = fetch(f"{url}/metrics", 5)

        def server_cpu_s() -> float:
            samples = parse_samples(fetch(f"{url}/metrics", 5))
            return next(value for name, _, value in samples if name == "process_cpu_seconds_total")

        before, began = server_cpu_s(), time.perf_counter()
        for _ in range(args.scrapes):
            fetch(f"{url}/metrics", 5)
        wall_s = time.perf_counter() - began
        server_ms = (server_cpu_s() - before) / (args.scrapes + 1) * 1000  # the closing read included
        sampler_ms = cpu_ms_per_call(lambda: parse_samples(fetch(f"{url}/metrics", 5)), args.scrapes)
    result = {
        "scrapes": args.scrapes,
        "metrics_bytes": len(body.encode()),
        "series_kept_per_scrape": len(parse_samples(body)),
        "server_cpu_ms_per_scrape": round(server_ms, 3),
        "server_core_fraction_at_1_per_s": round(server_ms / 1000, 5),
        "sampler_cpu_ms_per_scrape": round(sampler_ms, 3),
        "sampler_core_fraction_at_1_per_s": round(sampler_ms / 1000, 5),
        "scrape_wall_ms": round(wall_s / args.scrapes * 1000, 3),
        "note": "server CPU from its own process_cpu_seconds_total (gunicorn worker: rendering /metrics, HTTP); "
        "sampler CPU from this process (fetch + prometheus-client's text parser), one scrape at a time",
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
