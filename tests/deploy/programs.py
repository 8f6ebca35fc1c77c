"""The programs a container runs, and the flags and variables each really accepts.

Flags come from each program's own ``--help``, run here as a subprocess, never from a list kept in
the tests. Locust is special: ``locust -f FILE --help`` prints Locust's options before it imports the
locustfile, so embed-bench's own options (``--grid``, ``--run-dir``, ...) are read from the parser
Locust builds once the locustfile is imported -- the parser that will parse the container's arguments.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from tests.deploy.files import REPO, Dockerfile

HELP_TIMEOUT_S = 60
_OPTION_LINE = re.compile(r"^\s{2,}(-[^\s].*)$")
_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)")

# The container programs: how each is recognised in an argv, and how its help is produced.
ENTRYPOINT_SCRIPT = "docker/locust_entrypoint.py"
HEALTHCHECK_SCRIPT = "docker/healthcheck.py"


def run_python(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=HELP_TIMEOUT_S
    )
    assert result.returncode == 0, f"python {' '.join(args)} failed:\n{result.stderr[-3000:]}"
    return result.stdout


def option_flags(help_text: str) -> set[str]:
    """Flags defined in an argparse help text (the option column only, not the descriptions)."""
    flags: set[str] = set()
    for line in help_text.splitlines():
        match = _OPTION_LINE.match(line)
        if match:
            names = re.split(r"\s{2,}", match.group(1))[0]
            flags.update(_FLAG.findall(names))
    return flags


@cache
def target_server_help() -> str:
    return run_python("-m", "target_server", "--help")


@cache
def locust_help(locustfile: str = "locustfiles/self_hosted.py") -> str:
    return run_python("-m", "locust", "-f", locustfile, "--help")


_PARSER_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
from locust.argument_parser import get_parser
parser = get_parser()
print(json.dumps({
    "help": parser.format_help(),
    "env_vars": sorted({a.env_var for a in parser._actions if getattr(a, "env_var", None)}),
}))
"""


@cache
def locust_parser(module: str = "locustfiles.self_hosted") -> dict[str, object]:
    """Help and env vars of Locust's full parser once ``module`` (a locustfile) is imported."""
    return json.loads(run_python("-c", _PARSER_PROBE, module).strip().splitlines()[-1])


def locust_flags() -> set[str]:
    return option_flags(locust_help()) | option_flags(str(locust_parser()["help"]))


def locust_env_vars() -> set[str]:
    names = set(locust_parser()["env_vars"])  # type: ignore[arg-type]
    # Not a parser action: Locust reads it as the default of the positional user classes.
    if "LOCUST_USER_CLASSES environment" in " ".join(locust_help().split()):
        names.add("LOCUST_USER_CLASSES")
    return names


@cache
def script_help(script: str) -> str:
    return run_python(script, "--help")


@dataclass(frozen=True)
class Invocation:
    """What an argv runs: a program name, its flags' source, and the arguments it receives."""

    program: str
    args: tuple[str, ...]

    def flags(self) -> set[str]:
        if self.program == "target_server":
            return option_flags(target_server_help())
        if self.program == "locust":
            return locust_flags()
        return option_flags(script_help(self.program))

    def used_flags(self) -> list[str]:
        return [arg.split("=", 1)[0] for arg in self.args if arg.startswith("-")]

    def value(self, flag: str) -> str:
        """The value of ``flag`` (the last one wins, as in argparse)."""
        values = [self.args[i + 1] for i, arg in enumerate(self.args[:-1]) if arg == flag]
        values += [arg.split("=", 1)[1] for arg in self.args if arg.startswith(flag + "=")]
        assert values, f"{self.program}: {flag} not given in {list(self.args)}"
        return values[-1]


def invocation(argv: Sequence[str], image: Dockerfile) -> Invocation:
    """Recognise the program of a container argv; image paths are mapped back to the repository."""
    assert argv, "empty command"
    program, *rest = argv
    assert program in ("python", "python3"), f"unexpected program {program!r} in {list(argv)}"
    if rest[:2] == ["-m", "target_server"]:
        return Invocation("target_server", tuple(rest[2:]))
    script = image.repo_path(rest[0]) if rest and rest[0].startswith("/") else None
    assert script is not None and script.is_file(), f"{rest[:1]} is not a file the image copies from the tree"
    relative = script.relative_to(REPO).as_posix()
    if relative == ENTRYPOINT_SCRIPT:
        return Invocation("locust", tuple(rest[1:]))  # the entrypoint passes its arguments to Locust
    return Invocation(relative, tuple(rest[1:]))


def unknown_flags(call: Invocation) -> list[str]:
    known = call.flags()
    return [flag for flag in call.used_flags() if flag not in known]


_PARSE_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
from locust.argument_parser import get_parser
from embed_bench.core.cells import load_grid
from embed_bench.core.options import BenchOptions
namespace = get_parser().parse_args(sys.argv[2:])
options = BenchOptions.from_namespace(namespace)  # raises on values the benchmark cannot run with
if options.grid:
    load_grid(options.grid)
print(json.dumps(vars(namespace), default=str))
"""


def parse_locust(args: Sequence[str], env: dict[str, str], module: str = "locustfiles.self_hosted") -> dict:
    """Locust's own parser (with embed-bench's options) applied to a container's arguments and
    environment, in a clean process: what Locust would really run with, values typed and checked."""
    result = subprocess.run(
        [sys.executable, "-c", _PARSE_PROBE, module, *args],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
        timeout=HELP_TIMEOUT_S,
    )
    assert result.returncode == 0, f"Locust rejects {list(args)} with {sorted(env)}:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def credential_env_vars() -> set[str]:
    """The secrets a Locust container may get: boto3's credential variables (botocore's own list),
    the Jina key (``--api-key``'s env var and its fallback) and the web UI login's password."""
    from botocore.credentials import EnvProvider

    from embed_bench.core.credentials import WEB_PASSWORD_ENV
    from embed_bench.core.options import API_KEY_FALLBACK_ENV, OPTION_SPECS

    api_key = {spec.env_var for spec in OPTION_SPECS if spec.secret}
    return {
        EnvProvider.ACCESS_KEY,
        EnvProvider.SECRET_KEY,
        *EnvProvider.TOKENS,
        API_KEY_FALLBACK_ENV,
        WEB_PASSWORD_ENV,
        *api_key,
    }


def aws_setting_env_vars() -> set[str]:
    """boto3's region and profile variables (not secrets)."""
    from botocore.configprovider import BOTOCORE_DEFAUT_SESSION_VARIABLES as variables

    names: set[str] = set()  # not AWS_REGION: boto3 does not read it (AWS_DEFAULT_REGION)
    for key in ("region", "profile"):
        env = variables[key][1]
        names |= {env} if isinstance(env, str) else set(env)
    return names


def locust_container_env_vars() -> set[str]:
    """Every variable a Locust container reads: Locust's and embed-bench's options, the entrypoint's
    own, and the credentials."""
    from tests.deploy.scripts import docker_script

    return locust_env_vars() | set(docker_script("locust_entrypoint").READS) | credential_env_vars()


def target_env_vars() -> set[str]:
    """``EMBED_BENCH_<SETTING>`` for every setting of the target server's config."""
    from dataclasses import fields

    from target_server.config import ENV_PREFIX, ServerConfig

    return {f"{ENV_PREFIX}_{field.name.upper()}" for field in fields(ServerConfig)}
