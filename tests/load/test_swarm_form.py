"""The web UI's start form: a wrong value gets a message naming the option and what it accepts."""

from __future__ import annotations

from embed_bench.core.options import OPTION_SPECS, BenchOptions
from embed_bench.load.swarm_form import form_label, swarm_form_error

# What Locust's parser holds before the form updates it: each option's default, Locust's own fields.
CURRENT = {spec.dest: spec.default for spec in OPTION_SPECS} | {"num_users": 1, "spawn_rate": 1.0, "host": ""}


def test_a_good_form_passes():
    form = {"user_count": "2", "spawn_rate": "2", "grid": "quick", "batch_size": "4", "seed": "7"}
    assert swarm_form_error(form, CURRENT) is None
    assert BenchOptions.from_mapping({**CURRENT, **form}).batch_size == 4


def test_a_value_of_the_wrong_type_names_the_option_and_what_it_accepts():
    message = swarm_form_error({"batch_size": "notanumber"}, CURRENT)
    assert message == (
        "Batch Size (--batch-size): 'notanumber' is not valid; it accepts a whole number, e.g. 1 (the default)."
    )
    message = swarm_form_error({"cell_max_seconds": ""}, CURRENT)
    assert message is not None and message.startswith("Cell Max Seconds (--cell-max-seconds): an empty value")
    assert "it accepts a number" in message


def test_an_option_without_a_typed_default_is_checked_as_the_walk_checks_it():
    message = swarm_form_error({"seed": "abc"}, CURRENT)  # default None: Locust takes any text
    assert message == "Seed: --seed: invalid value 'abc'; it accepts a whole number."


def test_a_value_out_of_range_says_the_range():
    assert swarm_form_error({"requests_per_user": "0"}, CURRENT) == (
        "Requests Per User: --requests-per-user must be at least 1."
    )


def test_an_unknown_grid_lists_the_grids():
    message = swarm_form_error({"grid": "quikc"}, CURRENT)
    assert message is not None and message.startswith("Grid (--grid): unknown grid 'quikc'")
    assert "quick, article, throughput" in message


def test_fields_locust_checks_itself_are_left_to_it():
    assert swarm_form_error({"user_count": "many", "spawn_rate": "fast"}, CURRENT) is None


def test_labels_match_locust_forms():
    assert form_label("batch_size") == "Batch Size" and form_label("aws_region") == "Aws Region"
