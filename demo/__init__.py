"""`fraud demo`: the whole loop on one machine, in one command (`run`), and what it shows
(`view`, pure: numbers from the worker's /metrics and the lag monitor, and the tables)."""

from demo.run import DemoOptions, print_summary, run_demo

__all__ = ["DemoOptions", "print_summary", "run_demo"]
