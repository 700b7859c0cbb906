"""Atomic state files, schema versions, events and the event tail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ioncannon.job.events import Progress, StageStarted, parse_event
from ioncannon.job.fsio import StateFileError, read_json, write_json
from ioncannon.job.paths import JobPaths
from ioncannon.job.plans import GeneratePlan, TrainPlan
from ioncannon.job.spec import JobSpec, load_spec, save_spec
from ioncannon.job.state import EventTail, JobState, read_state, write_state


def test_write_json_is_atomic_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2})
    assert read_json(path) == {"schema_version": 1, "a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temp files left behind


@pytest.mark.parametrize(
    "content, reason",
    [("{\"a\": 1", "damaged"), ("[1, 2]", "not a JSON object"), ("{\"schema_version\": 99}", "schema version 99")],
)
def test_bad_state_files_are_reported_not_raised_as_crashes(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateFileError, match=reason):
        read_json(path)


def test_read_state_never_raises(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path)
    assert read_state(paths).status == "new"
    paths.meta.mkdir()
    paths.state_file.write_text("{half")
    state = read_state(paths)
    assert state.status == "unknown" and "damaged" in state.message
    write_state(paths, JobState(status="running", stage="train", done=3, total=10))
    again = read_state(paths)
    assert (again.status, again.stage, again.done) == ("running", "train", 3)


def test_jobspec_round_trips_through_job_json(tmp_path: Path) -> None:
    spec = JobSpec(
        name="j", photos_dir="/p", identifier="zwx", class_name="dog", crops={"a.jpg": "top"}, excluded=("b.jpg",),
        train=TrainPlan(mode="lora", steps=7), generate=GeneratePlan(sampler="ddim", steps=100),
    )
    paths = JobPaths(tmp_path / "j")
    save_spec(paths, spec)
    assert load_spec(paths) == spec
    assert spec.instance_prompt == "a photo of zwx dog" and spec.class_prompt == "a photo of dog"


def test_event_round_trip_and_garbage_lines() -> None:
    event = Progress(stage="train", done=5, total=9, rate=2.5, loss=0.25)
    assert parse_event(event.dumps()) == event
    assert parse_event("not json") is None
    assert parse_event(json.dumps({"type": "Nope"})) is None
    assert parse_event(json.dumps({"type": "Progress", "stage": "x"})) is None  # missing fields


def test_event_tail_handles_partial_lines_and_replacement(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    tail = EventTail(log)
    assert tail.read_new() == []
    first, second = StageStarted(stage="prepare"), StageStarted(stage="train")
    line2 = second.dumps()
    log.write_text(first.dumps() + "\n" + line2[:10])
    assert tail.read_new() == [first]
    with open(log, "a") as fh:
        fh.write(line2[10:] + "\n")
    assert tail.read_new() == [second]
    log.write_text(first.dumps() + "\n")  # truncated and rewritten: read from the start again
    assert tail.read_new() == [first]
