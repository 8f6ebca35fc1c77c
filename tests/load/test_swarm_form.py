"""The web UI's start form: a wrong value gets a message naming the option and what it accepts."""

from __future__ import annotations

import re

from embed_bench.core.options import OPTION_SPECS, BenchOptions
from embed_bench.load.swarm_form import (
    MISPOSTED,
    form_label,
    locust_label,
    locust_posted_name,
    restore_form_names,
    swarm_form_error,
)

# What Locust's parser holds before the form updates it: each option's default, Locust's own fields.
CURRENT = {spec.dest: spec.default for spec in OPTION_SPECS} | {"num_users": 1, "spawn_rate": 1.0, "host": ""}


def test_a_good_form_passes():
    form = {"user_count": "2", "spawn_rate": "2", "grid": "quick", "batch_size": "4", "seed": "7"}
    assert swarm_form_error(form, CURRENT) is None
    assert BenchOptions.from_mapping({**CURRENT, **form}).batch_size == 4


def test_a_value_of_the_wrong_type_names_the_option_and_what_it_accepts():
    message = swarm_form_error({"batch_size": "notanumber"}, CURRENT)
    assert message == (
        "Batch size (--batch-size): 'notanumber' is not valid; it accepts a whole number, e.g. 1 (the default)."
    )
    message = swarm_form_error({"cell_max_seconds": ""}, CURRENT)
    assert message is not None and message.startswith(
        "Cell time limit (s) (--cell-max-seconds): an empty value"
    )
    assert "it accepts a number" in message


def test_an_option_without_a_typed_default_is_checked_as_the_walk_checks_it():
    message = swarm_form_error({"seed": "abc"}, CURRENT)  # default None: Locust takes any text
    assert message == "Seed: --seed: invalid value 'abc'; it accepts a whole number."


def test_a_value_out_of_range_says_the_range():
    assert swarm_form_error({"requests_per_user": "0"}, CURRENT) == (
        "Requests per user: --requests-per-user must be at least 1."
    )


def test_an_unknown_grid_lists_the_grids():
    message = swarm_form_error({"grid": "quikc"}, CURRENT)
    assert message is not None and message.startswith("Grid (--grid): unknown grid 'quikc'")
    assert "quick, article, throughput" in message


def test_fields_locust_checks_itself_are_left_to_it():
    assert swarm_form_error({"user_count": "many", "spawn_rate": "fast"}, CURRENT) is None


def test_messages_name_a_field_by_the_label_the_form_shows():
    # Locust's own label for a name (what its page script derives) reads badly for some of ours...
    assert locust_label("batch_size") == "Batch Size" and locust_label("slo_p95_ms") == "Slo P9 5Ms"
    # ...so the form shows ours (embed_bench.load.web_ui puts them in place), and messages use them;
    assert form_label("slo_p95_ms") == "SLO p95 (ms)" and form_label("aws_region") == "AWS region"
    assert swarm_form_error({"slo_p95_ms": "fast"}, CURRENT) == (
        "SLO p95 (ms): --slo-p95-ms: invalid value 'fast'; it accepts a number."
    )
    # another plugin's field keeps Locust's label.
    assert form_label("my_plugin_option") == "My Plugin Option"


def test_every_option_has_a_label_and_the_field_name_locust_gives_it():
    for spec in OPTION_SPECS:
        assert spec.form_label and spec.form_label[0].isupper(), spec
        # Locust's page script names each field in camelCase (its camelCase helper: _x -> X).
        assert spec.form_name == re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), spec.dest)
    labels = [spec.form_label for spec in OPTION_SPECS]
    assert len(set(labels)) == len(labels)


def test_a_field_whose_name_holds_a_digit_is_posted_under_its_own_name_again():
    # Locust's page turns field names back into keys with its snakeCase helper, which splits digits:
    assert locust_posted_name("batchSize") == "batch_size"
    assert locust_posted_name("sloP95Ms") == "slo_p9_5ms"  # no option of Locust's: its handler dropped it
    assert MISPOSTED == {"slo_p9_5ms": "slo_p95_ms"}  # the only one of ours
    posted = [("user_count", "1"), ("slo_p9_5ms", "250"), ("grid", "capacity")]
    assert restore_form_names(posted) == [("user_count", "1"), ("slo_p95_ms", "250"), ("grid", "capacity")]
    assert swarm_form_error(dict(restore_form_names(posted)), CURRENT) is None
