"""The one exception the post-processor raises for bad input.

The CLI turns it into a one-line message on stderr and a non-zero exit, so every check that
rejects a run directory, a pricing choice or a run without any successful request raises it with a
message that names the file and says what to do.
"""


class ReportError(Exception):
    """Input that cannot become an honest report (missing files, unknown price, nothing succeeded)."""
