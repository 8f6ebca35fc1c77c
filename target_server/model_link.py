"""How the front ends of ``serve --frontends N`` reach the model process: address, messages, errors, and
the process's start and stop.

vLLM's ``--api-server-count`` splits its server the same way: several processes take HTTP requests
and tokenize, one process owns the model. Here the model process (target_server.model_process)
runs the embedding service as one process would -- model, batcher, admission, metrics -- and each
front end (a gunicorn worker, target_server.frontend) holds one connection to it.

The connection is ``multiprocessing.connection`` over a Unix socket in a private folder (mode
0700), authenticated with a random key (HMAC challenge both ways) that only the serve process and
its children know. Its messages are pickled tuples:

- front end to model process: ``(kind, request_id, *args)``; ``count`` is the only one that is not
  answered;
- model process to front end: ``(request_id, ok, payload)``, where a failed call's payload is
  :func:`error_payload` (a domain error's class name, message and Retry-After).

This module imports neither torch nor the model: gunicorn's master (the serve process) and the front
ends import it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from target_server import domain_errors
from target_server.domain_errors import ForwardPassFailed, ServiceError

log = logging.getLogger(__name__)

ENV_SPEC = "EMBED_BENCH_MODEL_PROCESS"  # JSON: the settings, the socket, the lifeline's fd
ENV_AUTHKEY = "EMBED_BENCH_MODEL_AUTHKEY"  # hex; removed from the environment once read

# Message kinds, front end to model process.
EMBED = "embed"  # (ids, task, span ids or None) -> (vectors, tokens, queue ms, inference ms, stamps, passes)
STATE = "state"  # () -> {"healthy": bool, "state": str}
INFO = "info"  # () -> the service's /info payload
METRICS = "metrics"  # () -> the Prometheus text of the model process's registry
TOKENIZER = "tokenizer"  # () -> (TextTokenizer, ModelInfo), or NotReady while loading
COUNT = "count"  # ({(endpoint, status): answers}): a front end's HTTP answers since its last; no reply

LISTEN_TIMEOUT_S = 120.0  # the model process imports torch, then listens before it loads the model
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LinkAddress:
    """Where the model process listens, and the key that opens it."""

    path: str
    authkey: bytes


def error_payload(error: ServiceError) -> tuple[str, str, int | None]:
    return type(error).__name__, error.message, error.retry_after_s


def error_from(payload: tuple[str, str, int | None]) -> ServiceError:
    """The domain error the model process raised, as the same class here (so the HTTP layer answers
    the same status); a name this side does not know becomes ForwardPassFailed."""
    name, message, retry_after_s = payload
    cls = getattr(domain_errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, ServiceError)):
        cls = ForwardPassFailed
    return cls(message, retry_after_s)


class ModelProcessFailed(RuntimeError):
    """The model process exited, or did not listen, while the serve process needed it."""


@dataclass
class ModelProcessHandle:
    """The serve process's hold on its model process: the child, its socket, and a lifeline (a pipe
    whose write end only the child holds) that reads EOF once the child has exited.

    The lifeline, not ``waitpid``, tells that the child is gone: gunicorn's master reaps every
    child that exits, its workers' and this one alike.
    """

    process: subprocess.Popen
    address: LinkAddress
    lifeline: int
    folder: str

    @classmethod
    def launch(
        cls,
        overrides: dict[str, Any],
        *,
        workers: int,
        metrics_host: str,
        metrics_port: int | None,
    ) -> ModelProcessHandle:
        """Start ``python -m target_server.model_process`` with these settings; it listens at once
        and loads the model in the background (``/health`` answers 503 meanwhile)."""
        folder = tempfile.mkdtemp(prefix="embed-bench-model-")  # 0700: only this user reaches the socket
        address = LinkAddress(os.path.join(folder, "model.sock"), secrets.token_bytes(32))
        read_end, write_end = os.pipe()
        spec = {
            "overrides": overrides,
            "address": address.path,
            "workers": workers,
            "metrics_host": metrics_host,
            "metrics_port": metrics_port,
            "lifeline": write_end,
        }
        env = os.environ | {ENV_SPEC: json.dumps(spec), ENV_AUTHKEY: address.authkey.hex()}
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "target_server.model_process"],
                env=env,
                stdin=subprocess.DEVNULL,
                pass_fds=(write_end,),
                # Not in the serve process's group: a Ctrl-C or a stop sent to the group must not
                # stop the model before the front ends have drained; stop() stops it after them.
                start_new_session=True,
            )
        except BaseException:
            os.close(read_end)
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            os.close(write_end)
        return cls(process, address, read_end, folder)

    def exited(self, timeout_s: float = 0.0) -> bool:
        """Whether the model process has exited (waiting up to ``timeout_s``; None: for ever)."""
        readable, _, _ = select.select([self.lifeline], [], [], timeout_s)
        return bool(readable)

    def wait_listening(self, timeout_s: float = LISTEN_TIMEOUT_S) -> None:
        """Return once the socket is there; ModelProcessFailed if the process exits or times out first."""
        deadline = time.monotonic() + timeout_s
        while not os.path.exists(self.address.path):
            if self.exited(0.05):
                raise ModelProcessFailed("the model process exited before it listened (its log is above)")
            if time.monotonic() > deadline:
                raise ModelProcessFailed(f"the model process did not listen within {timeout_s:g} s")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (it finishes nothing more: the front ends are gone by now), then SIGKILL."""
        try:
            if not self.exited():
                os.kill(self.process.pid, signal.SIGTERM)
                if not self.exited(timeout_s):
                    log.warning("the model process did not stop within %g s; killing it", timeout_s)
                    os.kill(self.process.pid, signal.SIGKILL)
                    self.exited(5.0)
        except ProcessLookupError:
            pass
        finally:
            os.close(self.lifeline)
            shutil.rmtree(self.folder, ignore_errors=True)
