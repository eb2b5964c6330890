"""The sampling profile's parsing and grouping (bench/sampling.py), the py-spy command line, and
the Faust consume-only agent's meter."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bench.faust_agent import AgentMeter
from bench.sampling import (
    DECISIONS,
    EDGE,
    EVENT_LOOP,
    FEATURES,
    HANDLER,
    IDLE,
    METRICS,
    OTHER,
    PRODUCING,
    REASONS,
    REDIS_WAIT,
    SCORING,
    STORE_PROCESS,
    STORE_PROCESS_THREAD,
    STORE_PROCESS_WAIT,
    TRANSPORT,
    Frame,
    Stack,
    area_of,
    cpu_summary,
    loop_wall_summary,
    parse_frame,
    parse_raw,
    profile_summary,
    wall_area_of,
)
from bench.sampling_recorder import record_command

ROOT = "/repo"
SITE = "/repo/.venv/lib/python3.11/site-packages"
STDLIB = "/usr/lib/python3.11"
LOOP = [
    f"<module> ({ROOT}/fraud/cli/__main__.py:1)",
    f"BaseEventLoop.run_forever ({STDLIB}/asyncio/base_events.py:593)",
    f"BaseEventLoop._run_once ({STDLIB}/asyncio/base_events.py:1845)",
    f"Handle._run ({STDLIB}/asyncio/events.py:78)",
]
DRAIN = [
    *LOOP,
    f"BatchConsumer._drain_messages ({ROOT}/stream/worker/batches.py:200)",
    f"PipelinedRoute.submit ({ROOT}/stream/worker/route.py:70)",
    f"<lambda> ({ROOT}/stream/worker/app.py:170)",
    f"BatchHandler.prepare ({ROOT}/stream/worker/handler.py:230)",
    f"BatchHandler._prepare ({ROOT}/stream/worker/handler.py:258)",
]


def _line(thread: str, frames: list[str], count: int) -> str:
    return ";".join([f"thread (0x1): {thread}", *frames]) + f" {count}"


def _stack(*frames: str, thread: str = "MainThread", samples: int = 1) -> Stack:
    return Stack(thread, tuple(parse_frame(f) for f in frames), samples)


def test_raw_lines_parse_into_thread_frames_and_counts():
    text = "\n".join(
        [
            _line("MainThread", [*LOOP, f"select ({STDLIB}/selectors.py:468)"], 12),
            "thread (4242) 3",  # a thread with neither name nor frames
            "not a stack line",
            "",
        ]
    )
    stacks = parse_raw(text)
    assert [(s.thread, len(s.frames), s.samples) for s in stacks] == [
        ("MainThread", 5, 12),
        ("thread 4242", 0, 3),
    ]
    leaf = stacks[0].frames[-1]
    assert (leaf.function, leaf.file, leaf.line) == ("select", f"{STDLIB}/selectors.py", 468)
    assert leaf.label == "select (selectors.py)"
    assert parse_frame("weird frame") == Frame("weird frame", "")


@pytest.mark.parametrize(
    ("frames", "area"),
    [
        ([f"admit ({ROOT}/stream/edge/admission.py:40)"], EDGE),
        ([f"Validator.__call__ ({ROOT}/schemas/__init__.py:90)"], EDGE),
        (
            [
                f"BatchHandler.features ({ROOT}/stream/worker/handler.py:120)",
                f"RedisFeatureStore.process ({ROOT}/stream/features/redis_store.py:80)",
                f"Script.__call__ ({SITE}/redis/commands/core.py:6000)",
                f"Redis.execute_command ({SITE}/redis/client.py:600)",
            ],
            FEATURES,
        ),
        (
            [
                f"score_batch ({ROOT}/stream/scoring/batch.py:60)",
                f"ScoringModel.explain ({ROOT}/stream/scoring/runtime.py:100)",
                f"reason_codes ({ROOT}/stream/scoring/reasons.py:30)",
                f"sum ({SITE}/numpy/_core/fromnumeric.py:2300)",
            ],
            REASONS,
        ),
        (
            [
                f"score_batch ({ROOT}/stream/scoring/batch.py:60)",
                f"ScoringModel.predict_proba ({ROOT}/stream/scoring/runtime.py:80)",
                f"predict ({ROOT}/stream/scoring/compiled.py:20)",
            ],
            SCORING,
        ),
        ([f"score_batch ({ROOT}/stream/scoring/batch.py:60)"], DECISIONS),  # its own loop
        (
            [
                f"score_batch ({ROOT}/stream/scoring/batch.py:60)",
                f"score_batch.<locals>.<listcomp> ({ROOT}/stream/scoring/batch.py:88)",
            ],
            DECISIONS,
        ),
        (
            [
                f"score_batch ({ROOT}/stream/scoring/batch.py:60)",
                f"ScoringModel.matrix ({ROOT}/stream/scoring/batch.py:30)",
            ],
            SCORING,
        ),
        ([f"BatchHandler._records ({ROOT}/stream/worker/handler.py:330)"], DECISIONS),
        ([f"BatchHandler._observe ({ROOT}/stream/worker/handler.py:340)"], METRICS),
    ],
)
def test_a_sample_belongs_to_its_innermost_owned_frame(frames: list[str], area: str):
    assert area_of(_stack(*DRAIN, *frames)) == area


def test_transport_producing_event_loop_and_other():
    assert area_of(_stack(*DRAIN[:5])) == TRANSPORT  # the fetch loop's own time
    faust_thread = [
        f"Thread.run ({STDLIB}/threading.py:982)",
        f"ConsumerThread.run ({SITE}/faust/transport/drivers/aiokafka.py:300)",
        f"Fetcher._fetch_requests_routine ({SITE}/aiokafka/consumer/fetcher.py:400)",
        f"Queue.put ({STDLIB}/asyncio/queues.py:120)",  # generic code: its caller owns it
    ]
    assert area_of(_stack(*faust_thread, thread="Thread-3")) == TRANSPORT
    flush = [
        f"Thread.run ({STDLIB}/threading.py:982)",
        f"_WorkItem.run ({STDLIB}/concurrent/futures/thread.py:58)",
        f"BatchProducer._flush ({ROOT}/stream/worker/output.py:120)",
    ]
    assert area_of(_stack(*flush, thread="asyncio_0")) == PRODUCING
    assert area_of(_stack(*LOOP)) == EVENT_LOOP
    assert area_of(_stack(f"<module> ({ROOT}/fraud/cli/__main__.py:1)")) == OTHER
    hand_over = [*DRAIN[:7], f"_records.<locals>.<listcomp> ({ROOT}/stream/worker/app.py:110)"]
    assert area_of(_stack(*hand_over)) == HANDLER


def test_the_main_loop_polling_is_the_event_loop_even_under_faust_frames():
    started_by_faust = [
        f"<module> ({ROOT}/fraud/cli/__main__.py:1)",
        f"Worker.execute_from_commandline ({SITE}/mode/worker.py:250)",
        f"BaseEventLoop.run_forever ({STDLIB}/asyncio/base_events.py:593)",
        f"BaseEventLoop._run_once ({STDLIB}/asyncio/base_events.py:1845)",
        f"EpollSelector.select ({STDLIB}/selectors.py:468)",
    ]
    assert area_of(_stack(*started_by_faust)) == EVENT_LOOP
    # Faust's consumer thread runs a loop only for the transport: its polling is the transport's.
    consumer_thread = [
        f"Thread.run ({STDLIB}/threading.py:982)",
        f"ConsumerThread.run ({SITE}/faust/transport/drivers/aiokafka.py:300)",
        *started_by_faust[2:],
    ]
    assert area_of(_stack(*consumer_thread, thread="Thread-1")) == TRANSPORT


def test_wall_samples_tell_redis_wait_and_idle_from_work():
    redis_read = [
        *DRAIN,
        f"RedisFeatureStore.process ({ROOT}/stream/features/redis_store.py:80)",
        f"Redis.parse_response ({SITE}/redis/client.py:650)",
        f"_HiredisParser.read_from_socket ({SITE}/redis/_parsers/hiredis.py:80)",
    ]
    assert wall_area_of(_stack(*redis_read)) == REDIS_WAIT
    assert area_of(_stack(*redis_read)) == FEATURES  # the CPU profile keeps it the client's
    assert wall_area_of(_stack(*LOOP, f"EpollSelector.select ({STDLIB}/selectors.py:468)")) == IDLE
    assert wall_area_of(_stack()) == IDLE
    assert wall_area_of(_stack(*DRAIN, f"admit ({ROOT}/stream/edge/admission.py:40)")) == EDGE


def _cpu_stacks() -> list[Stack]:
    return [
        _stack(*DRAIN, f"admit ({ROOT}/stream/edge/admission.py:40)", samples=60),
        _stack(*DRAIN, f"score_batch ({ROOT}/stream/scoring/batch.py:60)", samples=30),
        _stack(*DRAIN[:5], thread="Thread-3", samples=10),
    ]


def test_cpu_summary_shares_seconds_and_cost_per_decision():
    summary = cpu_summary(_cpu_stacks(), rate_hz=100.0, decisions=10_000, top=2)
    assert (summary["samples"], summary["seconds"], summary["us_per_decision"]) == (100, 1.0, 100.0)
    assert summary["seconds_from"] == "sampling"
    by_area = {row["area"]: row for row in summary["by_area"]}
    assert [row["area"] for row in summary["by_area"]] == [EDGE, DECISIONS, TRANSPORT]
    assert by_area[EDGE]["share"] == 0.6
    assert by_area[EDGE]["seconds"] == 0.6
    assert by_area[EDGE]["us_per_decision"] == 60.0
    assert summary["by_thread"] == [
        {"thread": "MainThread", "samples": 90, "share": 0.9},
        {"thread": "Thread-3", "samples": 10, "share": 0.1},
    ]
    assert summary["top_functions"][0] == {
        "function": "admit (stream/edge/admission.py)",
        "area": EDGE,
        "samples": 60,
        "share": 0.6,
    }
    assert len(summary["top_functions"]) == 2
    assert cpu_summary([], 100.0, None)["by_area"] == []


def test_measured_cpu_seconds_are_apportioned_by_the_sampled_shares():
    # 1 s of active samples, but the OS counted 0.25 CPU-s: runnable threads waited for a core.
    summary = cpu_summary(_cpu_stacks(), rate_hz=100.0, decisions=10_000, cpu_s=0.25)
    assert (summary["sampled_active_s"], summary["seconds"]) == (1.0, 0.25)
    assert summary["us_per_decision"] == 25.0
    by_area = {row["area"]: row for row in summary["by_area"]}
    assert (by_area[EDGE]["share"], by_area[EDGE]["seconds"]) == (0.6, 0.15)
    assert by_area[EDGE]["us_per_decision"] == 15.0
    assert sum(row["us_per_decision"] for row in summary["by_area"]) == pytest.approx(25.0)


def test_loop_wall_summary_reads_only_the_event_loop_thread():
    stacks = [
        _stack(*LOOP, f"select ({STDLIB}/selectors.py:468)", samples=25),
        _stack(*DRAIN, f"admit ({ROOT}/stream/edge/admission.py:40)", samples=75),
        _stack(*LOOP, f"select ({STDLIB}/selectors.py:468)", thread="Thread-3", samples=500),
    ]
    wall = loop_wall_summary(stacks, rate_hz=100.0, decisions=None)
    assert wall["samples"] == 100
    assert {row["area"]: row["share"] for row in wall["by_area"]} == {EDGE: 0.75, IDLE: 0.25}
    assert all(row["us_per_decision"] is None for row in wall["by_area"])


def test_the_store_lane_wall_is_read_from_its_own_thread():
    redis_read = f"_HiredisParser.read_from_socket ({SITE}/redis/_parsers/hiredis.py:1)"
    stacks = [
        _stack(*DRAIN, redis_read, thread="store-lane_0", samples=30),
        _stack(f"_worker ({STDLIB}/concurrent/futures/thread.py:81)", thread="store-lane_0"),
        _stack(*LOOP, f"select ({STDLIB}/selectors.py:468)", samples=50),
    ]
    summary = profile_summary(stacks, stacks, 100.0, 1_000, 1.0)
    lane = {row["area"]: row["share"] for row in summary["store_lane_wall"]["by_area"]}
    assert lane == {
        REDIS_WAIT: pytest.approx(30 / 31, abs=1e-4),
        IDLE: pytest.approx(1 / 31, abs=1e-4),
    }
    assert summary["event_loop_wall"]["samples"] == 50


WORKER_PROCESS = 'process 100:"/repo/.venv/bin/python -m fraud worker"'
STORE_CHILD = (
    'process 101:"/repo/.venv/bin/python -B -c from multiprocessing.spawn import spawn_main; '
    'spawn_main(tracker_fd=4, pipe_handle=6) --multiprocessing-fork"'
)
TRACKER = (
    'process 102:"/repo/.venv/bin/python -B -c from multiprocessing.resource_tracker import main"'
)
SERVE = [
    "<module> (<string>:1)",
    f"spawn_main ({STDLIB}/multiprocessing/spawn.py:120)",
    f"serve ({ROOT}/stream/worker/store_process.py:150)",
]
PIPE_READ = f"Connection._recv ({STDLIB}/multiprocessing/connection.py:395)"
REDIS_READ = f"_HiredisParser.read_from_socket ({SITE}/redis/_parsers/hiredis.py:1)"


def test_child_processes_get_their_own_thread_names():
    """py-spy --subprocesses puts the processes first: the worker's threads keep their names,
    the spawned store process's main thread is the store process, other children keep a pid."""
    text = "\n".join(
        [
            ";".join([WORKER_PROCESS, "thread (0x1): MainThread", *DRAIN]) + " 7",
            ";".join([WORKER_PROCESS, STORE_CHILD, "thread (0x2): MainThread", *SERVE]) + " 5",
            ";".join([WORKER_PROCESS, TRACKER, "thread (0x3): MainThread", PIPE_READ]) + " 2",
        ]
    )
    stacks = parse_raw(text)
    assert [(s.thread, s.samples) for s in stacks] == [
        ("MainThread", 7),
        (STORE_PROCESS_THREAD, 5),
        ("process 102: MainThread", 2),
    ]
    assert stacks[0].frames[0].function == "<module>"  # no process frame left in the stack
    assert area_of(stacks[0]) == HANDLER  # the worker's main thread is still the event loop's


def test_the_store_process_is_profiled_like_the_lane_and_the_lane_waits_for_it():
    features = f"RedisFeatureStore.process ({ROOT}/stream/features/redis_store.py:80)"
    in_child = f"StoreProcess._in_child ({ROOT}/stream/worker/store_process.py:90)"
    lane = [f"BatchHandler.features ({ROOT}/stream/worker/handler.py:120)", in_child]
    stacks = [
        _stack(*SERVE, features, thread=STORE_PROCESS_THREAD, samples=40),
        _stack(*SERVE, features, REDIS_READ, thread=STORE_PROCESS_THREAD, samples=30),
        _stack(*SERVE, thread=STORE_PROCESS_THREAD, samples=10),  # (un)pickling, in C
        _stack(*SERVE, PIPE_READ, thread=STORE_PROCESS_THREAD, samples=20),
        _stack(*lane, PIPE_READ, thread="store-lane_0", samples=90),
        _stack(*lane, thread="store-lane_0", samples=10),
    ]
    assert [area_of(s) for s in stacks[:3]] == [FEATURES, FEATURES, STORE_PROCESS]
    summary = profile_summary(stacks, stacks, 100.0, 1_000, 1.0)
    child = {row["area"]: row["share"] for row in summary["store_process_wall"]["by_area"]}
    assert child == {FEATURES: 0.4, REDIS_WAIT: 0.3, STORE_PROCESS: 0.1, IDLE: 0.2}
    waits = {row["area"]: row["share"] for row in summary["store_lane_wall"]["by_area"]}
    assert waits == {STORE_PROCESS_WAIT: 0.9, STORE_PROCESS: 0.1}
    threads = {row["thread"] for row in summary["cpu"]["by_thread"]}
    assert threads == {STORE_PROCESS_THREAD, "store-lane_0"}
    without_child = profile_summary(stacks[4:], stacks[4:], 100.0, 1_000, 1.0)
    assert "store_process_wall" not in without_child


def test_the_report_shows_the_store_process_wall_only_when_there_is_one():
    import io

    from rich.console import Console

    from bench.report import sampling_tables

    child = _stack(*SERVE, REDIS_READ, thread=STORE_PROCESS_THREAD, samples=30)
    loop = _stack(*DRAIN, samples=10)

    def rendered(stacks: list[Stack]) -> str:
        out = io.StringIO()
        console = Console(file=out, width=250)
        for table in sampling_tables(profile_summary(stacks, stacks, 100.0, 1_000, 1.0)):
            console.print(table)
        return out.getvalue()

    assert "store process wall" in rendered([child, loop])
    assert "store process wall" not in rendered([loop])


def test_profile_summary_is_plain_data():
    stacks = [_stack(*DRAIN, samples=4)]
    summary = profile_summary(stacks, stacks, 200.0, 1_000, 2.5, cpu_s=0.01)
    assert summary["cpu"]["seconds"] == 0.01 and summary["cpu"]["sampled_active_s"] == 0.02
    assert summary["event_loop_wall"]["samples"] == 4
    assert orjson.loads(orjson.dumps(summary)) == summary
    assert "event_loop_wall" not in profile_summary(stacks, None, 200.0, 1_000, 2.5)


def test_py_spy_command_samples_without_pausing_the_worker(tmp_path: Path):
    out = tmp_path / "cpu.txt"
    cpu = record_command("py-spy", 42, out, 200, idle=False)
    assert cpu[:4] == ["py-spy", "record", "--pid", "42"]
    for flag in ("--nonblocking", "--threads", "--full-filenames"):
        assert flag in cpu
    assert cpu[cpu.index("--format") + 1] == "raw" and cpu[cpu.index("--rate") + 1] == "200"
    assert "--idle" not in cpu
    assert "--subprocesses" in cpu  # the store process (FRAUD_STORE_PROCESS=1) is the worker's
    assert record_command("py-spy", 42, out, 200, idle=True)[-1] == "--idle"


def test_agent_meter_times_from_the_end_of_the_first_batch(tmp_path: Path):
    meter = AgentMeter(expect=1_000)
    assert not meter.batch_done(500, now=10.0, cpu_s=1.0)
    assert not meter.batch_done(300, now=10.5, cpu_s=1.2)
    assert meter.batch_done(200, now=11.0, cpu_s=1.5)
    assert (meter.first_batch_events, meter.first_batch_at, meter.last_batch_at) == (
        500,
        10.0,
        11.0,
    )
    assert (meter.cpu_s_at_first, meter.cpu_s_at_last, meter.batches) == (1.0, 1.5, 3)
    path = tmp_path / "agent.json"
    meter.write(path)
    assert orjson.loads(path.read_bytes())["complete"] is True
    assert not path.with_name("agent.json.part").exists()
