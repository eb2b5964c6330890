"""Benchmarks, measured on the real services and never asserted in tests.

`run` (`fraud bench`): one scoring worker end to end on the broker and Redis, beside the
baselines measured in the same run (`baselines`: the lab's HTTP design, a bare Kafka loop);
`results` is the pure arithmetic of a run and `report` its tables. Component benchmarks:
`features` (`make bench-features`), `explain` (reason codes), `simulator` (`make bench-simulator`).
"""
