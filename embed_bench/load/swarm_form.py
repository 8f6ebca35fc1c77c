"""Checks the web UI's start form before Locust acts on it, and says what a wrong value should be.

Locust's ``/swarm`` handler converts each custom field with the type of its current value, so
"notanumber" in Batch Size raised a ValueError, a 500 and "An unknown error occurred." in the UI.
``swarm_form_error`` runs first (a ``before_request`` hook, see ``embed_bench.load.web_ui``) and returns
the message to show instead, naming the option as the form labels it and as the command line spells
it, and saying what it accepts. The embed-bench options go through ``BenchOptions.from_mapping``, the
same check the grid walk applies to the headless command line, and the grid through ``grid_of``,
so a form that passes here starts a walk that does not fail on its options.

Kept free of Locust and Flask imports: it works on plain mappings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embed_bench.core.cells import GridError, grid_of
from embed_bench.core.options import OPTION_SPECS, BenchOptions, OptionError, OptionSpec

# Fields Locust's handler converts and checks itself (it answers a clean message for them).
LOCUST_CHECKED_FIELDS = frozenset({"user_count", "spawn_rate", "host", "user_classes", "run_time", "profile"})
_SPECS = {spec.dest: spec for spec in OPTION_SPECS}
_ACCEPTS = {int: "a whole number", float: "a number"}


def form_label(dest: str) -> str:
    """The label Locust's form shows for a field: ``batch_size`` -> ``Batch Size``."""
    return " ".join(word[:1].upper() + word[1:] for word in dest.split("_"))


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


def swarm_form_error(form: Mapping[str, str], current: Mapping[str, Any]) -> str | None:
    """The message for a start form Locust or the walk cannot run with; None when it can.

    ``form``: the posted fields; ``current``: the parsed options' values, which the form updates."""
    for dest, value in form.items():
        if dest in LOCUST_CHECKED_FIELDS or dest not in current:
            continue
        error = _locust_type_error(dest, value, current[dest])
        if error is not None:
            return error
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
