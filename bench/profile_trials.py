"""Profiled workers over the pre-loaded events (own group, Redis prefix and output topics).

- `sampling_profile` (default, --profile): a worker sampled by py-spy from outside while it
  works through the backlog (`bench/sampling_recorder.py`), summarised by area
  (`bench/sampling.py`); the raw stacks stay in the run's folder of bench-results/.
- `cprofile_trial` (--cprofile): a worker under cProfile in every thread (`bench/profile.py`).
  Deterministic profiling inflates call-heavy code, so its shares lean towards Faust's
  per-event machinery; it counts calls, which sampling cannot.
Both report the saturation rate reached under the profiler beside the profile.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from bench import kafka
from bench.phase import Phase
from bench.trials import decisions_so_far, output_offsets, read_saturation, wait_for_outputs
from fraud.errors import FraudScorerError

SAMPLING_RATE_HZ = 200


def sampling_profile(phase: Phase, topics: kafka.BenchTopics) -> dict[str, Any]:
    from bench.sampling import parse_raw, profile_summary
    from bench.sampling_recorder import SamplingRecorder

    context, options = phase.context, phase.options
    trial_topics = topics.with_outputs("p", context.run_id)
    context.topics.create(trial_topics.names())
    start = output_offsets(phase, trial_topics)
    with phase.start_worker(trial_topics, "p") as worker:
        worker.wait_healthy()
        before = decisions_so_far(phase, trial_topics)  # the window: from here to the stop
        recorder = SamplingRecorder(worker.pid, context.run_dir, SAMPLING_RATE_HZ)
        cpu_before = worker.cpu_seconds()
        with recorder:
            read_cpu = worker.cpu_seconds
            outputs = wait_for_outputs(phase, trial_topics, options.events, read_cpu, start)
        cpu_after = worker.cpu_seconds()
        decided = decisions_so_far(phase, trial_topics) - before
    result = read_saturation(phase, trial_topics, outputs, options.events, note="under py-spy")
    summary = profile_summary(
        parse_raw(recorder.read("cpu")),
        parse_raw(recorder.read("wall")),
        SAMPLING_RATE_HZ,
        decided,
        recorder.window_s,
        None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        options.profile_top,
    )
    summary["files"] = {kind: str(path) for kind, path in recorder.files.items()}
    summary["saturation_under_profiler"] = asdict(result)
    return summary


def cprofile_trial(phase: Phase, topics: kafka.BenchTopics) -> dict[str, Any]:
    """A worker under cProfile in every thread over the same pre-loaded events, then its profile
    summarised."""
    from bench.profile import summarize_profile

    context, events = phase.context, phase.options.events
    trial_topics = topics.with_outputs("c", context.run_id)
    context.topics.create(trial_topics.names())
    out = context.run_dir / "worker.prof"
    start = output_offsets(phase, trial_topics)
    with phase.start_worker(trial_topics, "c", profile_out=out) as worker:
        worker.wait_healthy()
        out.with_name(out.name + ".start").touch()  # start-up (imports, model load) left out
        outputs = wait_for_outputs(phase, trial_topics, events, worker.cpu_seconds, start)
        out.with_name(out.name + ".stop").touch()
        time.sleep(0.5)  # the marker is polled every 50 ms
        worker.stop()
    result = read_saturation(phase, trial_topics, outputs, events, note="under cProfile")
    if not out.is_file():
        raise FraudScorerError(f"the profiled worker wrote no profile; see {worker.log_path}")
    summary = summarize_profile(out, phase.options.profile_top, result.span_s)
    summary["saturation_under_profiler"] = asdict(result)
    return summary
