"""Benchmarks, measured on the real services and never asserted in tests.

`run` (`fraud bench`) orchestrates one run: the worker's trials (`trials`: saturation, fixed
rates, two workers) beside the ceilings measured in the same run over the same events
(`ceilings`: the bare Kafka loop and the HTTP design from `baselines`, the Faust consume-only
agent `faust_agent`), and a profiled worker (`profile_trials`: py-spy through `sampling_recorder`,
grouped by area in `sampling`; cProfile through `profile`). `results` is the pure arithmetic of a
run and `report` its tables; `phase`, `context`, `kafka` and `worker` are the shared plumbing.
Component benchmarks: `features` (`make bench-features`), `explain` (reason codes), `simulator`
(`make bench-simulator`).
"""
