"""Real-time card-fraud scoring with ML governance: shared settings, errors and the `fraud` CLI."""

__version__ = "0.1.0"
