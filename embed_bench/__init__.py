"""embed-bench: load tests, a tuned target server and cost reports for text-embedding deployments."""

__version__ = "0.1.0"
