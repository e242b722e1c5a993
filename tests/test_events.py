"""The run store's event log (``events.jsonl``) is bounded: rotated past a size into
``events.jsonl.1``, ``.2``, while processes append to it at once."""

import subprocess
import sys

from npdl.run.store import RunStore

# Appends ``count`` events, each numbered, with lines of varying length.
APPENDER = r"""
import sys
from npdl.run.store import RunStore

store = RunStore(sys.argv[1], events_max_bytes=int(sys.argv[2]), events_kept=int(sys.argv[3]))
for number in range(int(sys.argv[4])):
    store.log("hit", "lineage", 1, number=number, padding="x" * (number % 97))
"""


def append_in(store: RunStore, processes: int, count: int) -> None:
    args = [str(store.root), str(store.event_log.max_bytes), str(store.event_log.kept), str(count)]
    started = [
        subprocess.Popen([sys.executable, "-c", APPENDER, *args], stderr=subprocess.PIPE)
        for _ in range(processes)
    ]
    for process in started:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()


def test_the_log_is_rotated_past_its_size_and_keeps_the_newest_lines(tmp_path):
    store = RunStore(tmp_path / "store", events_max_bytes=3000, events_kept=2)
    for number in range(300):
        store.log("miss", "lineage", 1, number=number)
    names = sorted(path.name for path in store.root.glob("events.jsonl*"))
    assert names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    longest = max(
        len(line) + 1 for line in (store.root / "events.jsonl.1").read_text().splitlines()
    )
    for path in store.event_log.files():
        assert path.stat().st_size <= store.event_log.max_bytes + longest
    # What is kept is the newest run of lines, in order, with no gap.
    numbers = [event["number"] for event in store.events()]
    assert numbers == list(range(numbers[0], 300))
    assert 2 * store.event_log.max_bytes // longest <= len(numbers) < 300


def test_processes_appending_while_it_rotates_lose_no_line_and_keep_their_order(tmp_path):
    # Kept files enough for everything: any missing line would be a lost one.
    store = RunStore(tmp_path / "store", events_max_bytes=4000, events_kept=500)
    append_in(store, processes=4, count=400)
    files = store.event_log.files()
    assert len(files) > 20  # it really rotated, many times, under concurrent appends
    events = store.events()
    assert len(events) == 1600
    by_process = {}
    for event in events:
        by_process.setdefault(event["pid"], []).append(event["number"])
    assert len(by_process) == 4
    # Every line whole (events() parsed each one) and each process's lines in order.
    assert all(numbers == list(range(400)) for numbers in by_process.values())
    longest = max(len(line) + 1 for path in files for line in path.read_text().splitlines())
    for path in files:
        assert path.stat().st_size <= store.event_log.max_bytes + 4 * longest


def test_the_default_bound_is_a_few_megabytes(tmp_path):
    store = RunStore(tmp_path / "store")
    assert 10**6 <= store.event_log.max_bytes <= 10**7 and store.event_log.kept >= 1
