"""A deliberately slow sender, for the schedule check's test: ``SelfHostedUser``, but every send first
blocks its whole process for 20 ms, as a load generator that has run out of CPU would.

The block is the unpatched ``time.sleep`` (Locust's gevent patches the module's), so no other
greenlet runs meanwhile: the process sends at most 50 requests/s, whatever it is asked.

    locust -f tests/benchmarks/slow_sender.py ...   (or loadgen.py --schedule --locustfile ...)
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patches sockets before anything else loads)

# isort: split
from gevent import monkey

from embed_bench.load.shape import GridShape
from locustfiles import self_hosted

__all__ = ["GridShape", "SlowSenderUser"]

BLOCK_S = 0.02
_blocking_sleep = monkey.get_original("time", "sleep")


class SlowSenderUser(self_hosted.SelfHostedUser):
    def request_headers(self, body: bytes) -> dict[str, str]:
        _blocking_sleep(BLOCK_S)
        return super().request_headers(body)
