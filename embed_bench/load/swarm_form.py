"""Checks the web UI's start form before Locust acts on it, and says what a wrong value should be.

Locust's ``/swarm`` handler converts each custom field with the type of its current value, so
"notanumber" in Batch size raised a ValueError, a 500 and "An unknown error occurred." in the UI.
``swarm_form_error`` runs first (a ``before_request`` hook, see ``embed_bench.load.web_ui``) and returns
the message to show instead, naming the option as the form labels it and as the command line spells
it, and saying what it accepts. The embed-bench options go through ``BenchOptions.from_mapping``, the
same check the grid walk applies to the headless command line, and the grid through ``grid_of``,
so a form that passes here starts a walk that does not fail on its options.

Form values that name paths are confined (``FormLimits``, fixed when the process starts), because
whoever reaches the form is not trusted with the machine's files: the run directory must be a folder
under the runs root, the grid a built-in grid or a file under the grids folder, the tokenizer
'bundled' or a local tokenizer (a hub download only from the command line). The values given at
start are always accepted: the form shows them.

Kept free of Locust and Flask imports: it works on plain mappings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embed_bench.core.cells import GRIDS, GridError, grid_of
from embed_bench.core.credentials import KEY_HOST_OPTION
from embed_bench.core.options import (
    CAPACITY_GRID,
    OPTION_SPECS,
    BenchOptions,
    OptionError,
    OptionSpec,
    resolve_run_dir,
)

# Fields Locust's handler converts and checks itself (it answers a clean message for them).
LOCUST_CHECKED_FIELDS = frozenset({"user_count", "spawn_rate", "host", "user_classes", "run_time", "profile"})
# Fields the form may not set: what the run's credentials are bound to is decided here, not posted.
RESERVED_FIELDS = frozenset({KEY_HOST_OPTION})
_SPECS = {spec.dest: spec for spec in OPTION_SPECS}
BUILT_IN_GRIDS = (*GRIDS, CAPACITY_GRID)  # names --grid takes besides a file (capacity: a capacity search)
_ACCEPTS = {int: "a whole number", float: "a number"}
RUNS_ROOT_ENV = "EMBED_BENCH_RUNS_ROOT"
GRIDS_DIR_ENV = "EMBED_BENCH_GRIDS_DIR"
DEFAULT_RUNS_ROOT = "runs"
TOKENIZER_FILE = "tokenizer.json"
BUNDLED_TOKENIZER = "bundled"


def locust_label(dest: str) -> str:
    """The label Locust's page script derives from a field's name (its ``camelCase`` and
    ``toTitle`` helpers): ``batch_size`` -> ``Batch Size``, ``slo_p95_ms`` -> ``Slo P9 5Ms``."""
    camel = re.sub(r"_([a-z0-9])", lambda match: match.group(1).upper(), dest)
    spaced = re.sub(r"([a-z0-9])([A-Z0-9])", r"\1 \2", camel)
    return spaced[:1].upper() + spaced[1:]


def locust_posted_name(form_name: str) -> str:
    """The key Locust's page posts for a field named ``form_name`` (its ``snakeCase`` helper, which
    splits digits from letters): ``batchSize`` -> ``batch_size``, but ``sloP95Ms`` -> ``slo_p9_5ms``,
    which Locust's handler then ignores as no option of its own."""
    if form_name[:1].isupper():
        return form_name
    return re.sub(r"([a-z0-9])([A-Z0-9])", r"\1_\2", form_name).lower()


# Options whose posted key is not their name (a digit in the name): posted key -> option.
MISPOSTED = {
    posted: spec.dest for spec in OPTION_SPECS if (posted := locust_posted_name(spec.form_name)) != spec.dest
}


def restore_form_names(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The form's (key, value) pairs with each misposted key back to its option's name, so that
    Locust's handler sets the option (it dropped "SLO p95 (ms)" silently before)."""
    return [(MISPOSTED.get(key, key), value) for key, value in items]


def form_label(dest: str) -> str:
    """The label the form shows for a field: ours (``OptionSpec.form_label``, put in place by
    ``embed_bench.load.web_ui``), else Locust's own for another plugin's field."""
    spec = _SPECS.get(dest)
    return spec.form_label if spec else locust_label(dest)


def _accepts(kind: type, default: Any) -> str:
    accepts = _ACCEPTS.get(kind, "text")
    return accepts if default in (None, "") else f"{accepts}, e.g. {default} (the default)"


def _locust_type_error(dest: str, value: str, current: Any) -> str | None:
    """What Locust's ``type(current)(value)`` would raise on, as a message (None: it converts).

    Applies to every typed field the form can send, ours or another plugin's."""
    if isinstance(current, bool) or not isinstance(current, int | float | list):
        return None  # booleans compare with "true"; text and None-defaults are taken as given
    if isinstance(current, list):
        if not (current and all(isinstance(item, int) for item in current)):
            return None
        kind, items = int, value.split(",")
    else:
        kind, items = type(current), [value]
    for item in items:
        try:
            kind(item)
        except ValueError:
            spec = _SPECS.get(dest)
            name = f"{form_label(dest)} ({spec.flag})" if spec else form_label(dest)
            shown = "an empty value" if not item.strip() else repr(item)
            accepts = _accepts(kind, spec.default if spec else None)
            return f"{name}: {shown} is not valid; it accepts {accepts}."
    return None


def _spec_of(message: str) -> OptionSpec | None:
    """The option an OptionError names first (its messages start with or contain the flag)."""
    named = [(message.find(spec.flag), spec) for spec in OPTION_SPECS if spec.flag in message]
    return min(named, key=lambda pair: pair[0])[1] if named else None


def explain_option_error(error: OptionError) -> str:
    """An OptionError as the form shows it: label, flag, the problem and, for a value of the wrong
    type, what the option accepts."""
    message = str(error)
    spec = _spec_of(message)
    if spec is None:
        return message
    if error.__cause__ is not None:  # the value did not convert to the option's type
        return f"{form_label(spec.dest)}: {message}; it accepts {_accepts(spec.type, spec.default)}."
    return f"{form_label(spec.dest)}: {message}."


def _resolved(value: str | Path) -> Path:
    return Path(value).expanduser().resolve()


@dataclass(frozen=True)
class FormLimits:
    """Where the form's path values may point, fixed when the process starts.

    ``runs_root``: ``EMBED_BENCH_RUNS_ROOT``, else the folder above the run directory given at start
    (``--run-dir``, else the ``--csv`` prefix's folder), else ``./runs``. ``grids_dir``:
    ``EMBED_BENCH_GRIDS_DIR``, else the runs root. ``start_*``: the values given at start."""

    runs_root: Path
    grids_dir: Path
    start_run_dir: str = ""
    start_grid: str = ""
    start_tokenizer: str = ""
    start_trace: str = ""

    @classmethod
    def at_start(
        cls, start: Mapping[str, Any], csv_prefix: str | None, environ: Mapping[str, str] | None = None
    ) -> FormLimits:
        """From the parsed options' values at start (before any form) and the environment."""
        environ = os.environ if environ is None else environ
        text = {
            dest: str(start.get(dest) or "").strip() for dest in ("run_dir", "grid", "tokenizer", "trace")
        }
        root = environ.get(RUNS_ROOT_ENV, "").strip()
        if not root:
            try:
                run_dir = resolve_run_dir(BenchOptions(run_dir=text["run_dir"]), csv_prefix)
            except OptionError:
                run_dir = None
            root = str(_resolved(run_dir).parent) if run_dir is not None else DEFAULT_RUNS_ROOT
        grids = environ.get(GRIDS_DIR_ENV, "").strip() or root
        return cls(
            _resolved(root), _resolved(grids), text["run_dir"], text["grid"], text["tokenizer"], text["trace"]
        )

    def run_dir_error(self, value: str) -> str | None:
        if not value or value == self.start_run_dir:
            return None
        path = _resolved(value)
        if path != self.runs_root and path.is_relative_to(self.runs_root):
            return None
        return (
            f"{form_label('run_dir')} (--run-dir): {value!r} is not a folder under the runs folder "
            f"{self.runs_root}; give one there, e.g. {self.runs_root / 'my-run'} (the runs folder is "
            f"set at start: {RUNS_ROOT_ENV})."
        )

    def grid_error(self, value: str) -> str | None:
        if not value or value in BUILT_IN_GRIDS or value == self.start_grid:
            return None
        path = _resolved(value)
        if path.is_relative_to(self.grids_dir) or (
            self.start_grid not in BUILT_IN_GRIDS and self.start_grid and path == _resolved(self.start_grid)
        ):
            return None
        return (
            f"{form_label('grid')} (--grid): {value!r} is neither a built-in grid ({', '.join(BUILT_IN_GRIDS)}) "
            f"nor a file under the grids folder {self.grids_dir} (set at start: {GRIDS_DIR_ENV})."
        )

    def trace_error(self, value: str) -> str | None:
        """A request log to replay is read like a grid file: only from the grids folder (or as given at start)."""
        if not value or value == self.start_trace or _resolved(value).is_relative_to(self.grids_dir):
            return None
        return (
            f"{form_label('trace')} (--trace): {value!r} is not a file under the grids folder {self.grids_dir} "
            f"(set at start: {GRIDS_DIR_ENV}); put the request log there."
        )

    def tokenizer_error(self, value: str) -> str | None:
        if value in ("", BUNDLED_TOKENIZER) or value == self.start_tokenizer:
            return None
        path = Path(value).expanduser()
        if path.is_file() or (path / TOKENIZER_FILE).is_file():
            return None
        return (
            f"{form_label('tokenizer')} (--tokenizer): {value!r} is not a local tokenizer; the form takes "
            f"'{BUNDLED_TOKENIZER}' or the path of a {TOKENIZER_FILE} (or its folder) on this machine. "
            "A Hugging Face hub id is downloaded only when given at start (--tokenizer, LOCUST_TOKENIZER)."
        )

    def error(self, form: Mapping[str, str]) -> str | None:
        """The message for the first path value of ``form`` outside its limits; None if all fit."""
        checks = (
            ("run_dir", self.run_dir_error),
            ("grid", self.grid_error),
            ("tokenizer", self.tokenizer_error),
            ("trace", self.trace_error),
        )
        for dest, check in checks:
            if dest in form:
                message = check(str(form[dest]).strip())
                if message is not None:
                    return message
        return None


def swarm_form_error(
    form: Mapping[str, str], current: Mapping[str, Any], limits: FormLimits | None = None
) -> str | None:
    """The message for a start form Locust or the walk cannot run with; None when it can.

    ``form``: the posted fields; ``current``: the parsed options' values, which the form updates;
    ``limits``: where its path values may point (None: anywhere, for callers that are not a form)."""
    reserved = sorted(RESERVED_FIELDS & set(form))
    if reserved:
        return f"{reserved[0]}: not a field of the form; it is set by the process that starts the run."
    for dest, value in form.items():
        if dest in LOCUST_CHECKED_FIELDS or dest not in current:
            continue
        error = _locust_type_error(dest, value, current[dest])
        if error is not None:
            return error
    if limits is not None:
        message = limits.error(form)
        if message is not None:
            return message
    values = {**current, **{dest: value for dest, value in form.items() if dest in _SPECS}}
    try:
        options = BenchOptions.from_mapping(values)
    except OptionError as exc:
        return explain_option_error(exc)
    if options.grid:
        try:
            grid_of(options, 1)
        except GridError as exc:
            return f"{form_label('grid')} (--grid): {exc}."
    return None
