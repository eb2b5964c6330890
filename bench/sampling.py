"""A sampling profile of the worker, grouped by area: pure functions over py-spy's raw stacks.

Input: py-spy's raw (collapsed) format with thread names and full file names, one stack a line,
root first (`thread (TID): NAME;func (file:line);... COUNT`). Two recordings of the same run:

- `cpu`: only the samples in which a thread was active (py-spy without --idle: the OS has it
  running or runnable): how the process's CPU divides, every thread; the seconds come from
  the process's CPU time over the same window, since a runnable thread on a busy machine is
  sampled while it waits for a core;
- `wall`: every sample of every thread (--idle); the event loop's thread and the handler's
  store lane (the thread that aggregates each batch: `BatchHandler.begin`) are read from it, to
  see how much of each one's time goes to waiting on Redis (the feature store's client blocks
  its thread while a script runs) and how much each sits idle.

Both record the worker's child processes too (--subprocesses): with FRAUD_STORE_PROCESS=1 the
feature store runs in a child, whose main thread is named `STORE_PROCESS_THREAD` here; its CPU
is the worker's, and its wall time (computing, Redis wait, idle) is read like the lane's. The
lane then waits for the child's answer (`STORE_PROCESS_WAIT`) rather than for Redis.

Each sample is given one area by its innermost frame that belongs to an owner (`AREA_RULES`,
first rule that matches a frame wins, frames walked from the leaf up): generic code (numpy,
orjson, the standard library) has no owner, so its time goes to the project code that called
it. On the main thread the event loop's own time (polling, scheduling) is `event loop (asyncio)`
whatever started the loop; a stack with no owner is that too when asyncio is on it, else `other`.
`bench/sampling_recorder.py` runs py-spy; nothing here touches a process or a file.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

TRANSPORT = "Faust/aiokafka transport"
EDGE = "edge/admission"
FEATURES = "features/Redis client"
REDIS_WAIT = "Redis wait"
SCORING = "scoring"
REASONS = "reason codes"
DECISIONS = "decision building"
PRODUCING = "producing"
METRICS = "metrics"
HANDLER = "batch handling (worker)"
STORE_PROCESS = "store process hand-over"
STORE_PROCESS_WAIT = "store process wait"
EVENT_LOOP = "event loop (asyncio)"
IDLE = "idle (waiting for work)"
OTHER = "other"

# (area, path fragment, function names or None for any): the first rule matching a frame wins.
# Paths are matched on "/"-separated full file names; functions on py-spy's names
# ("Class.method" or "function", with what is nested in them). score_batch's own code builds the
# decision and alert records (the model's calls in it are scoring's).
AREA_RULES: tuple[tuple[str, str, frozenset[str] | None], ...] = (
    (REASONS, "/stream/scoring/reasons.py", None),
    (REASONS, "/stream/scoring/treeshap.py", None),
    (DECISIONS, "/stream/scoring/batch.py", frozenset({"score_batch"})),
    (DECISIONS, "/stream/worker/handler.py", frozenset({"BatchHandler._records"})),
    (METRICS, "/stream/worker/handler.py", frozenset({"BatchHandler._observe"})),
    (SCORING, "/stream/scoring/", None),
    (FEATURES, "/stream/features/", None),
    (FEATURES, "/site-packages/redis/", None),
    (FEATURES, "/site-packages/hiredis/", None),
    (FEATURES, "/stream/redis_io.py", None),
    (EDGE, "/stream/edge/", None),
    (EDGE, "/schemas/", None),
    (EDGE, "/site-packages/jsonschema/", None),
    (EDGE, "/site-packages/msgspec/", None),
    (PRODUCING, "/stream/worker/output.py", None),
    (PRODUCING, "/site-packages/confluent_kafka/", None),
    (METRICS, "/stream/worker/metrics.py", None),
    (METRICS, "/site-packages/prometheus_client/", None),
    (HANDLER, "/stream/worker/handler.py", None),
    # The child's loop (unpickling a batch, pickling its features) and the lane's side of it.
    (STORE_PROCESS, "/stream/worker/store_process.py", None),
    (HANDLER, "/stream/worker/app.py", None),  # the hand-over: records -> the handler's messages
    (TRANSPORT, "/stream/worker/batches.py", None),
    (TRANSPORT, "/stream/worker/route.py", None),
    (TRANSPORT, "/site-packages/faust/", None),
    (TRANSPORT, "/site-packages/aiokafka/", None),
    (TRANSPORT, "/site-packages/mode/", None),
    (TRANSPORT, "/site-packages/kafka/", None),
    (TRANSPORT, "/site-packages/aiohttp/", None),
)

# The event loop's own frames: callbacks run below `Handle._run`, polling below `_run_once`.
MAIN_THREAD = "MainThread"
STORE_LANE_THREAD = "store-lane_0"  # BatchHandler's one-thread executor
STORE_PROCESS_THREAD = "store process"  # the main thread of the child the store lane feeds
# A child's command line, as py-spy names its process: the spawned store process.
_SPAWNED = "spawn_main"
LOOP_FRAMES: tuple[tuple[str, frozenset[str] | None], ...] = (
    ("/asyncio/base_events.py", frozenset({"BaseEventLoop._run_once"})),
    ("/asyncio/events.py", frozenset({"Handle._run"})),
)

# Leaf frames of a thread that waits for something other than Redis (wall recording only).
IDLE_LEAVES: tuple[tuple[str, frozenset[str] | None], ...] = (
    ("/selectors.py", None),
    ("/threading.py", frozenset({"Condition.wait", "Event.wait", "Thread._wait_for_tstate_lock"})),
    ("/queue.py", frozenset({"Queue.get"})),
    ("/concurrent/futures/thread.py", frozenset({"_worker"})),
    ("/multiprocessing/connection.py", None),  # the store process waiting for a batch
)
# Leaf frames of the Redis client reading a reply from its socket.
REDIS_READ_LEAVES = frozenset(
    {"_HiredisParser.read_from_socket", "SocketBuffer._read_from_socket", "read_from_socket"}
)

_THREAD = re.compile(r"^thread \((?P<id>[^)]*)\)(?::\s*(?P<name>.*))?$")
# A process frame (--subprocesses) quotes its command line, which may hold ";" (a spawned
# child's `-c "...; spawn_main(...)"`): read off the front of the line, not split on ";".
_PROCESS = re.compile(r'process (?P<pid>\d+):"(?P<command>[^"]*)";')
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int | None = None

    @property
    def label(self) -> str:
        return f"{self.function} ({_short(self.file)})"


@dataclass(frozen=True)
class Stack:
    thread: str
    frames: tuple[Frame, ...]  # root first
    samples: int


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text)
    if match is None:
        return Frame(text, "")
    line = match.group("line")
    return Frame(match.group("function"), match.group("file"), int(line) if line else None)


def parse_raw(text: str) -> list[Stack]:
    """py-spy's raw output (one `frames COUNT` stack a line); the thread frame, when present,
    names the stack's thread (`name` or `thread TID`). With --subprocesses each stack starts
    with its process and the processes above it: the sampled process's threads keep their
    names, the store process's main thread is `STORE_PROCESS_THREAD`, and any other child's
    threads are prefixed with its pid."""
    stacks = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line:
            continue
        body, _, count = line.rpartition(" ")
        if not body or not count.isdigit():
            continue
        processes = []
        while (process := _PROCESS.match(body)) is not None:
            processes.append(process)
            body = body[process.end() :]
        parts = body.split(";")
        thread = "?"
        match = _THREAD.match(parts[0]) if parts else None
        if match is not None:
            thread = match.group("name") or f"thread {match.group('id')}"
            parts = parts[1:]
        if len(processes) > 1:  # a child of the sampled process
            child = processes[-1]
            if _SPAWNED in child.group("command") and thread == MAIN_THREAD:
                thread = STORE_PROCESS_THREAD
            else:
                thread = f"process {child.group('pid')}: {thread}"
        stacks.append(Stack(thread, tuple(parse_frame(p) for p in parts), int(count)))
    return stacks


def _matches(frame: Frame, fragment: str, functions: frozenset[str] | None) -> bool:
    """`fragment` in the frame's file, and the frame is one of `functions` (or code nested in
    one: `score_batch.<locals>.<listcomp>` is `score_batch`'s)."""
    if fragment not in frame.file.replace("\\", "/"):
        return False
    if functions is None:
        return True
    return frame.function.split(".<locals>", 1)[0] in functions


def is_idle(stack: Stack) -> bool:
    """The thread waits for something other than Redis (judged by its leaf frame)."""
    if not stack.frames:
        return True
    leaf = stack.frames[-1]
    return any(_matches(leaf, fragment, functions) for fragment, functions in IDLE_LEAVES)


def _waits_for_child(stack: Stack) -> bool:
    return bool(stack.frames) and "/multiprocessing/connection.py" in stack.frames[-1].file


def is_redis_read(stack: Stack) -> bool:
    return bool(stack.frames) and stack.frames[-1].function in REDIS_READ_LEAVES


def area_of(stack: Stack) -> str:
    """The owner of a sample: its innermost frame matched by `AREA_RULES`. On the main thread,
    reaching the event loop's own frames first makes it the loop's time (polling, scheduling):
    what started the loop (Faust's worker) does not own what the loop does between callbacks."""
    for frame in reversed(stack.frames):
        if stack.thread == MAIN_THREAD and _is_loop_frame(frame):
            return EVENT_LOOP
        for area, fragment, functions in AREA_RULES:
            if _matches(frame, fragment, functions):
                return area
    if any("/asyncio/" in frame.file for frame in stack.frames):
        return EVENT_LOOP
    return OTHER


def _is_loop_frame(frame: Frame) -> bool:
    return any(_matches(frame, fragment, functions) for fragment, functions in LOOP_FRAMES)


def wall_area_of(stack: Stack) -> str:
    """The area of a wall-clock sample: idle and Redis wait first (for the store lane, waiting
    on the store process's pipe is its wait, not idleness), then as `area_of`."""
    if is_redis_read(stack):
        return REDIS_WAIT
    if stack.thread == STORE_LANE_THREAD and _waits_for_child(stack):
        return STORE_PROCESS_WAIT
    if is_idle(stack):
        return IDLE
    return area_of(stack)


@dataclass(frozen=True)
class AreaShare:
    area: str
    samples: int
    share: float  # of the samples summarised
    seconds: float  # the share of `total_s`
    us_per_decision: float | None


def area_shares(
    counts: Mapping[str, int], total_s: float, decisions: int | None
) -> list[dict[str, Any]]:
    """Each area's share of the samples, and that share of `total_s` in all and per decision;
    largest first."""
    total = sum(counts.values())
    rows = []
    for area, samples in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        share = samples / total if total else 0.0
        seconds = share * total_s
        row = AreaShare(
            area=area,
            samples=samples,
            share=round(share, 4),
            seconds=round(seconds, 3),
            us_per_decision=round(seconds / decisions * 1e6, 2) if decisions else None,
        )
        rows.append(asdict(row))
    return rows


def cpu_summary(
    stacks: Sequence[Stack],
    rate_hz: float,
    decisions: int | None,
    cpu_s: float | None = None,
    top: int = 20,
) -> dict[str, Any]:
    """Active samples (every thread) by area, by thread and by leaf function.

    py-spy counts a thread active while the OS has it running or runnable, so on a busy
    machine a thread waiting for a core is sampled too: the samples give the shares, and
    `cpu_s` (the process's CPU seconds over the same window, from the OS) the seconds those
    shares stand for. Without it, one sample stands for 1/rate_hz seconds."""
    by_area: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    by_leaf: Counter[tuple[str, str]] = Counter()
    for stack in stacks:
        area = area_of(stack)
        by_area[area] += stack.samples
        by_thread[stack.thread] += stack.samples
        leaf = stack.frames[-1].label if stack.frames else "(no Python frame)"
        by_leaf[(leaf, area)] += stack.samples
    total = sum(by_area.values())
    sampled_s = total / rate_hz
    seconds = sampled_s if cpu_s is None else cpu_s
    return {
        "samples": total,
        "sampled_active_s": round(sampled_s, 3),
        "seconds": round(seconds, 3),
        "seconds_from": "sampling" if cpu_s is None else "process CPU time (/proc)",
        "us_per_decision": round(seconds / decisions * 1e6, 2) if decisions else None,
        "by_area": area_shares(by_area, seconds, decisions),
        "by_thread": [
            {"thread": thread, "samples": n, "share": round(n / total, 4)}
            for thread, n in by_thread.most_common()
        ],
        "top_functions": [
            {
                "function": leaf,
                "area": area,
                "samples": n,
                "share": round(n / total, 4) if total else 0.0,
            }
            for (leaf, area), n in by_leaf.most_common(top)
        ],
    }


def loop_wall_summary(
    stacks: Sequence[Stack], rate_hz: float, decisions: int | None, thread: str = MAIN_THREAD
) -> dict[str, Any]:
    """Where one thread (default: the event loop's) spends its wall time: busy areas, Redis
    wait, idle."""
    by_area: Counter[str] = Counter()
    for stack in stacks:
        if stack.thread == thread:
            by_area[wall_area_of(stack)] += stack.samples
    total = sum(by_area.values())
    return {
        "thread": thread,
        "samples": total,
        "seconds": round(total / rate_hz, 3),
        "by_area": area_shares(by_area, total / rate_hz, decisions),
    }


def profile_summary(
    cpu: Iterable[Stack],
    wall: Iterable[Stack] | None,
    rate_hz: float,
    decisions: int | None,
    window_s: float,
    cpu_s: float | None = None,
    top: int = 20,
) -> dict[str, Any]:
    """The results document's `profile`: CPU by area, and the wall time of the event loop, of
    the store lane and of the store process (those the worker has)."""
    summary: dict[str, Any] = {
        "kind": "sampling (py-spy)",
        "rate_hz": rate_hz,
        "window_s": round(window_s, 3),
        "decisions": decisions,
        "cpu": cpu_summary(list(cpu), rate_hz, decisions, cpu_s, top),
    }
    if wall is not None:
        wall = list(wall)
        summary["event_loop_wall"] = loop_wall_summary(wall, rate_hz, decisions)
        for key, thread in (
            ("store_lane_wall", STORE_LANE_THREAD),
            ("store_process_wall", STORE_PROCESS_THREAD),
        ):
            walls = loop_wall_summary(wall, rate_hz, decisions, thread=thread)
            if walls["samples"]:
                summary[key] = walls
    return summary


def _short(path: str) -> str:
    path = path.replace("\\", "/")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    for package in ("stream", "schemas", "fraud", "bench", "training", "simulator"):
        marker = f"/{package}/"
        if marker in path:
            return package + "/" + path.rsplit(marker, 1)[1]
    if "/lib/python3" in path:
        return path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return path
