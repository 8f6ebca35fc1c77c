"""Post-processor: Locust run directories in, the study's metrics out.

Pipeline: ``load`` (run directory -> DataFrames) -> ``metrics`` (pure functions -> dataclasses)
-> ``tables`` / ``plots`` -> one exporter per format (``export_md``, ``export_html``, ``export_csv``).
``cli.main`` is ``embed-bench report`` and ``python -m reports``.
"""
