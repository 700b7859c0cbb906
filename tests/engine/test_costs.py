"""Cost arithmetic, the remembered hourly price, instance uptime and the budget cap."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ioncannon.job.events import RunnerStarted
from ioncannon.job.fsio import append_line
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec, save_spec
from ioncannon.job.state import JobState, write_state
from ioncannon.job.units import duration, money
from ioncannon.rental.costs import (
    PRICES_FILE,
    budget_exceeded,
    budget_left_s,
    cost_snapshot,
    estimate_cost,
    instance_uptime_s,
    job_started_at,
    machine_key,
    parse_price,
    remember_hourly_price,
    remembered_hourly_price,
    spend,
)
from ioncannon.tui.widgets.meter import meter_text

TICKS = os.sysconf("SC_CLK_TCK")


def fake_proc(root: Path, uptime: str | None, pid1_start_s: float | None, comm: str = "init") -> Path:
    proc = root / "proc"
    (proc / "1").mkdir(parents=True)
    if uptime is not None:
        (proc / "uptime").write_text(uptime)
    if pid1_start_s is not None:
        fields = ["S"] + ["0"] * 18 + [str(int(pid1_start_s * TICKS)), "0"]
        (proc / "1" / "stat").write_text(f"1 ({comm}) {' '.join(fields)}\n")
    return proc


def spec_with(**changes: object) -> JobSpec:
    return JobSpec(name="j", photos_dir="/p", identifier="zwx", class_name="man").replace(**changes)


@pytest.mark.parametrize(
    ("price", "seconds", "dollars"),
    [(0.89, 3600, 0.89), (0.89, 5531, 0.89 * 5531 / 3600), (2.40, 90, 0.06), (1.0, -5, 0.0), (0.0, 99999, 0.0)],
)
def test_spend_is_price_times_hours(price: float, seconds: float, dollars: float) -> None:
    assert spend(price, seconds) == pytest.approx(dollars)


def test_estimate_needs_a_price() -> None:
    assert estimate_cost(None, 3600) is None
    assert estimate_cost(1.5, 1800) == pytest.approx(0.75)


def test_price_is_remembered_per_machine_and_survives_a_damaged_file(tmp_path: Path) -> None:
    assert remembered_hourly_price("host:a", tmp_path) is None
    remember_hourly_price(0.89, "host:a", tmp_path)
    remember_hourly_price(2.1, "host:b", tmp_path)
    remember_hourly_price(0.95, "host:a", tmp_path)  # changed later
    assert remembered_hourly_price("host:a", tmp_path) == 0.95
    assert remembered_hourly_price("host:b", tmp_path) == 2.1
    body = json.loads((tmp_path / PRICES_FILE).read_text())
    assert body["schema_version"] == 1 and set(body["prices"]) == {"host:a", "host:b"}
    assert not [p for p in tmp_path.iterdir() if p.name != PRICES_FILE]  # no temp files left behind
    (tmp_path / PRICES_FILE).write_text('{"prices": {"host:a": ')  # half-written
    assert remembered_hourly_price("host:a", tmp_path) is None
    remember_hourly_price(1.0, "host:a", tmp_path)
    assert remembered_hourly_price("host:a", tmp_path) == 1.0
    with pytest.raises(ValueError):
        remember_hourly_price(-1, "host:a", tmp_path)


def test_price_file_lives_in_the_user_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    remember_hourly_price(0.5, "host:x")
    assert remembered_hourly_price("host:x") == 0.5
    assert (tmp_path / "ioncannon" / PRICES_FILE).is_file()


def test_machine_key_prefers_the_provider_instance_id() -> None:
    assert machine_key({"CONTAINER_ID": "4242"}) == "container_id:4242"
    assert machine_key({"RUNPOD_POD_ID": "abc123"}) == "runpod_pod_id:abc123"
    assert machine_key({}).startswith("host:")


@pytest.mark.parametrize(
    ("typed", "price"), [("0.89", 0.89), ("$0.89/h", 0.89), ("0,89", 0.89), (" 1.2 /hr", 1.2), ("3", 3.0)]
)
def test_parse_price_reads_what_people_type(typed: str, price: float) -> None:
    assert parse_price(typed) == pytest.approx(price)


@pytest.mark.parametrize("typed", ["", "abc", "-1", "1e9", "nan"])
def test_parse_price_rejects_nonsense(typed: str) -> None:
    with pytest.raises(ValueError):
        parse_price(typed)


def test_instance_uptime_takes_off_when_pid_1_started(tmp_path: Path) -> None:
    # A container on a host that has been up 10 000 s, started 9 000 s after the host booted.
    assert instance_uptime_s(fake_proc(tmp_path / "a", "10000.50 3.0\n", 9000, comm="my init")) == pytest.approx(1000.5)
    assert instance_uptime_s(fake_proc(tmp_path / "b", "321.0 1.0\n", None)) == pytest.approx(321.0)
    assert instance_uptime_s(fake_proc(tmp_path / "c", None, 5)) is None
    assert instance_uptime_s(fake_proc(tmp_path / "d", "garbage", 5)) is None


def test_meter_text(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, "7272.0 0\n", 72)  # the instance has been up 2 h
    snap = cost_snapshot(0.51, job_started_at=1000.0, now=1000.0 + 751, proc=proc)
    assert snap.job_spend == pytest.approx(0.51 * 751 / 3600)
    assert meter_text(snap) == "⏱ 00:12:31 · $0.11 this job · $1.02 since boot"
    assert meter_text(cost_snapshot(None, 1000.0, now=1061.0, proc=proc)) == "⏱ 00:01:01 · price not set · up 02:00:00"
    assert meter_text(cost_snapshot(0.5, None, proc=proc)) == "⏱ --:--:-- · $1.00 since boot"


def test_formatting() -> None:
    assert (
        duration(0, "clock") == "00:00:00"
        and duration(360_001, "clock") == "100:00:01"
        and duration(None, "clock") == "--:--:--"
    )
    assert money(1234.5) == "$1,234.50" and money(0) == "$0.00" and money(0.001) == "<$0.01"


def test_budget_in_minutes() -> None:
    spec = spec_with(budget_minutes=30)
    assert budget_exceeded(spec, 0.0, now=29 * 60) is None
    message = budget_exceeded(spec, 0.0, now=30 * 60)
    assert message is not None and message.startswith("budget reached") and "30 min" in message
    assert budget_left_s(spec, 0.0, now=20 * 60) == pytest.approx(600)


def test_budget_in_money_needs_the_price() -> None:
    capped = spec_with(budget_money=2.0, hourly_price=0.8)
    assert budget_exceeded(capped, 0.0, now=2.49 * 3600) is None
    message = budget_exceeded(capped, 0.0, now=2.5 * 3600)
    assert message is not None and "$2.00" in message and "$0.80/h" in message
    assert budget_exceeded(spec_with(budget_money=2.0), 0.0, now=10**6) is None  # no price: can't tell
    assert budget_exceeded(spec_with(), 0.0, now=10**9) is None  # no cap at all
    assert budget_left_s(capped, 0.0, now=3600) == pytest.approx(1.5 * 3600)


def test_budget_counts_run_time_when_given() -> None:
    spec = spec_with(budget_minutes=10)
    # Wall clock says an hour, but the runner only ran 5 minutes of it.
    assert budget_exceeded(spec, 0.0, now=3600, elapsed_s=300) is None
    assert budget_exceeded(spec, None, elapsed_s=600) is not None
    assert budget_exceeded(spec, None) is None


def test_job_started_at_reads_state_then_events_then_job_file(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "job")
    save_spec(paths, spec_with())
    assert job_started_at(paths) == pytest.approx(paths.job_file.stat().st_mtime)
    append_line(paths.events_file, "not json")
    append_line(paths.events_file, RunnerStarted(pid=1, t=1234.0).dumps())
    append_line(paths.events_file, RunnerStarted(pid=2, t=9999.0, resumed=True).dumps())
    assert job_started_at(paths) == 1234.0
    write_state(paths, JobState(status="running", started_at=1000.0))
    assert job_started_at(paths) == 1000.0
