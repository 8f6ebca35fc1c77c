"""Probe: does the worker's RSS step at every overload, or only at the first (an allocator high-water mark)?"""
import sys, json
sys.path.insert(0, "/work/main/benchmarks")
import soak
from soak import *  # noqa
from embed_bench.core.payloads import PassageFactory
import json as _json

passages = PassageFactory(seed=1).passages(32 * 8, 32, stream="soak")
bodies = [_json.dumps({"texts": passages[i : i + 8]}).encode() for i in range(0, len(passages), 8)]
server_args = ("--cpu-threads", "1", "--threads", "12", "--max-queue-tokens", "2048")
snaps = []
with running_target_server(*server_args) as url:
    worker = gunicorn_worker()
    monitor = Monitor(worker, 15)
    monitor.start()
    cap = closed_loop(monitor, "capacity", url, bodies, 6, 20)
    closed_loop(monitor, "threads", url, bodies, 16, 5)
    c = cap.ok_per_s
    snaps.append(("after capacity+threads", idle_footprint(worker)))
    for i, (name, rate, secs) in enumerate([("steady", 0.6 * c, 60), ("overload", 3 * c, 60), ("steady", 0.6 * c, 45), ("overload", 3 * c, 60), ("overload", 3 * c, 60), ("steady", 0.6*c, 45)]):
        p = open_loop(monitor, f"{name}{i}", url, bodies, rate, secs, seed=100 + i)
        snaps.append((f"after {name}{i} ({p.counts.most_common()})", idle_footprint(worker)))
    monitor.stop()
print("capacity", c)
for label, f in snaps:
    print(label, f)
