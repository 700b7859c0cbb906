"""The pump's mailbox and the job view it feeds: coalescing and folding, without Textual."""

from __future__ import annotations

import threading

from ioncannon.job.events import (
    CheckpointSaved,
    CollageReady,
    Failed,
    Message,
    Progress,
    RunnerStarted,
    SampleReady,
    StageFinished,
    StageStarted,
)
from ioncannon.job.state import JobState
from ioncannon.job.units import duration
from ioncannon.tui import format as fmt
from ioncannon.tui.feed import JobFeed
from ioncannon.tui.jobview import MAX_LOSSES, JobView


def test_one_wakeup_carries_everything_offered_meanwhile() -> None:
    feed = JobFeed()
    state = JobState(status="running", stage="train", done=1, total=10)
    assert feed.offer([Progress(stage="train", done=1, total=10)], state, True) is True
    # the UI has not looked yet: more news piles up without another wake-up
    for step in range(2, 6):
        state = JobState(status="running", stage="train", done=step, total=10)
        assert feed.offer([Progress(stage="train", done=step, total=10)], state, True) is False
    batch = feed.take()
    assert [e.done for e in batch.events] == [1, 2, 3, 4, 5]  # type: ignore[attr-defined]
    assert batch.state is not None and batch.state.done == 5 and batch.alive
    assert feed.take().events == []


def test_nothing_new_asks_for_nothing() -> None:
    feed = JobFeed()
    state = JobState(status="running")
    assert feed.offer([], state, True)
    feed.take()
    assert not feed.offer([], JobState(status="running"), True)
    assert feed.offer([], JobState(status="running"), False)  # the runner died: that is news


def test_threads_lose_no_event() -> None:
    feed = JobFeed()
    got: list[int] = []
    done = threading.Event()

    def produce() -> None:
        for i in range(2000):
            feed.offer([Progress(stage="train", done=i, total=2000)], JobState(done=i), True)
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    while not done.is_set() or got[-1:] != [1999]:
        got.extend(e.done for e in feed.take().events)  # type: ignore[attr-defined]
    thread.join()
    assert got == list(range(2000))


def test_view_folds_a_job_history() -> None:
    view = JobView()
    view.apply([
        RunnerStarted(pid=1),
        StageStarted(stage="prepare"), StageFinished(stage="prepare"),
        StageStarted(stage="train"),
        *[Progress(stage="train", done=i, total=300, loss=1.0 / (i + 1)) for i in range(300)],
        SampleReady(stage="train", path="/p/step40.png", step=40),
        CheckpointSaved(step=200, path="/c"),
        Message(level="warning", text="disk is getting full"),
    ])
    assert view.stage == "train" and view.stages_done == ["prepare"]
    assert len(view.losses) == MAX_LOSSES and view.losses[-1] == 1.0 / 300
    assert view.progress["train"].done == 299
    assert view.preview is not None and view.preview.step == 40
    assert view.last_checkpoint == 200
    assert ("warning", "disk is getting full") in view.messages
    marks = dict(view.stage_marks())
    assert (marks["prepare"], marks["train"], marks["export"]) == ("✓", "▶", "·")


def test_failure_marks_the_stage_and_a_restart_clears_it() -> None:
    view = JobView()
    view.apply([StageStarted(stage="export"), Failed(stage="export", message="disk full", hint="free space")])
    assert dict(view.stage_marks())["export"] == "✗" and view.failed is not None
    view.apply([RunnerStarted(pid=2, resumed=True)])
    assert view.failed is None and dict(view.stage_marks())["export"] == "▶"


def test_collages_and_per_prompt_counts() -> None:
    view = JobView()
    view.apply([SampleReady(stage="generate", path=f"/o/{i}.png", label="oil") for i in range(3)])
    view.apply([CollageReady(keyword="oil", path="/o/a.jpg"), CollageReady(keyword="oil", path="/o/b.jpg")])
    assert view.generated == {"oil": 3}
    assert [c.path for c in view.collages] == ["/o/b.jpg"]  # a rewritten collage replaces the old one


def test_state_json_is_authoritative_for_finished_stages() -> None:
    view = JobView()
    view.update_state(JobState(status="running", stage="cache", stages_done=["prepare", "class_images"]), True)
    assert view.stages_done == ["prepare", "class_images"] and view.stage == "cache" and view.alive


def test_formatting() -> None:
    assert duration(65) == "1:05" and duration(3725) == "1:02:05" and duration(None) == "–"
    assert fmt.parse_price("$2,50") == 2.5 and fmt.parse_price("") is None and fmt.parse_price("abc") is None
    assert fmt.bar(5, 10, 10) == "█████░░░░░" and fmt.bar(0, 0, 4) == "░░░░"
    assert fmt.cost(1800, 3.0) == "$1.50"
    assert fmt.rate(0.5) == "2.0 s/it" and fmt.rate(2.25) == "2.2 it/s"
    assert duration(30, 'rough') == "about 30 s" and duration(5400, 'rough') == "about 1 h 30 min"
