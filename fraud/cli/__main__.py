"""`python -m fraud.cli ...`: the same entry point as the `fraud` console script."""

from fraud.cli.main import run

run()
