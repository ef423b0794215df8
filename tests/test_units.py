"""Fast unit tests of the pure parts: no daemon, no processes (the whole file runs in well
under a second). The end-to-end suite beside it tests the same rules through the CLI;
these pin them down one function at a time, so a change of behaviour names its culprit.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os

import pytest

from corral.client import cli
from corral.config import schema
from corral.config.order import check_dependencies, waves
from corral.config.resolve import _abs_log_path, build_spec
from corral.config.schema import BadValue, EcosystemError
from corral.model import states
from corral.model.errors import CorralError
from corral.model.names import NULL_LOG_PATHS
from corral.model.restart import Decision, after_exit, describe_exit, restart_delay
from corral.model.spec import (
    DEFAULT_MAX_RESTARTS,
    DEFAULT_MIN_UPTIME_MS,
    EXP_BACKOFF_CAP_MS,
    EXP_BACKOFF_RESET_MS,
    AppSpec,
    InstanceRecord,
)
from corral.model.targets import Entry, select, to_wire
from corral.store.home import Home

# ---- model.states ------------------------------------------------------------

ALL_PAIRS = list(itertools.product(states.ALL, repeat=2))


def test_legal_covers_every_status_and_names_only_known_ones() -> None:
    assert set(states.LEGAL) == set(states.ALL)
    for targets in states.LEGAL.values():
        assert targets <= set(states.ALL)


@pytest.mark.parametrize(("was", "to"), ALL_PAIRS)
def test_check_every_pair(was: str, to: str) -> None:
    if to in states.LEGAL[was]:
        states.check("app", 3, was, to)  # no exception
    else:
        with pytest.raises(states.IllegalTransition) as info:
            states.check("app", 3, was, to)
        assert str(info.value) == f"app (id 3): {was} -> {to}"


def test_the_moves_that_matter_are_as_documented() -> None:
    # a few moves spelled out, so that a change to LEGAL is a visible decision
    assert states.LEGAL[states.STOPPED] == {states.LAUNCHING}
    assert states.LEGAL[states.STOPPING] == {states.STOPPED, states.ERRORED}
    assert states.LEGAL[states.WAITING] == {states.LAUNCHING, states.STOPPED}
    assert states.LAUNCHING in states.LEGAL[states.LAUNCHING]  # a relaunch before online
    assert states.ONLINE not in states.LEGAL[states.STOPPED]
    assert states.RUNNING == {states.LAUNCHING, states.ONLINE, states.STOPPING}


def test_check_refuses_an_unknown_status() -> None:
    with pytest.raises(states.IllegalTransition):
        states.check("app", 0, "bogus", states.LAUNCHING)
    with pytest.raises(states.IllegalTransition):
        states.check("app", 0, states.STOPPED, "bogus")


RESTORE_END = {
    # (was, alive) -> the status restore_path ends in
    (states.ONLINE, True): states.ONLINE,
    (states.LAUNCHING, True): states.ONLINE,
    (states.STOPPING, True): states.ONLINE,
    (states.STOPPED, True): states.ONLINE,
    (states.ERRORED, True): states.ONLINE,
    (states.WAITING, True): states.ONLINE,
    (states.ONLINE, False): states.STOPPED,
    (states.LAUNCHING, False): states.STOPPED,
    (states.STOPPING, False): states.STOPPED,
    (states.WAITING, False): states.STOPPED,
    (states.STOPPED, False): states.STOPPED,
    (states.ERRORED, False): states.ERRORED,  # nothing runs and nothing should: unchanged
}


def test_restore_end_table_covers_every_combination() -> None:
    assert set(RESTORE_END) == set(itertools.product(states.ALL, (True, False)))


@pytest.mark.parametrize(("was", "alive"), sorted(RESTORE_END))
def test_restore_path_is_legal_and_ends_right(was: str, alive: bool) -> None:
    path = states.restore_path(was, alive)
    status = was
    for step in path:
        states.check("app", 0, status, step)  # every step is a legal move
        status = step
    assert status == RESTORE_END[(was, alive)]


def test_restore_path_exact_steps() -> None:
    assert states.restore_path(states.ONLINE, True) == []
    assert states.restore_path(states.LAUNCHING, True) == [states.ONLINE]
    assert states.restore_path(states.STOPPING, True) == [
        states.STOPPED, states.LAUNCHING, states.ONLINE]
    assert states.restore_path(states.ERRORED, True) == [states.LAUNCHING, states.ONLINE]
    assert states.restore_path(states.STOPPED, False) == []
    assert states.restore_path(states.ERRORED, False) == []


def test_shown_status() -> None:
    assert states.shown(states.ONLINE, states.UNHEALTHY) == states.UNHEALTHY
    assert states.shown(states.ONLINE, "healthy") == states.ONLINE
    assert states.shown(states.ONLINE, None) == states.ONLINE
    assert states.shown(states.LAUNCHING, states.UNHEALTHY) == states.LAUNCHING


# ---- model.restart -----------------------------------------------------------

STARTED = 1_000_000_000  # epoch ms of the last start, for every record below


def record(**fields: object) -> InstanceRecord:
    spec = AppSpec(name="app", script="app.py", **fields)  # type: ignore[arg-type]
    return InstanceRecord(pm_id=4, spec=spec, status=states.ONLINE, pm_uptime=STARTED,
                          created_at=STARTED, exit_code=1)


def exit_after(rec: InstanceRecord, uptime_ms: int, code: int | None = 1) -> Decision:
    return after_exit(rec, code, STARTED + uptime_ms)


def test_spec_defaults_are_pm2s() -> None:
    spec = AppSpec(name="a", script="a.py")
    assert (spec.max_restarts, spec.min_uptime_ms) == (DEFAULT_MAX_RESTARTS,
                                                       DEFAULT_MIN_UPTIME_MS) == (16, 1000)
    assert (EXP_BACKOFF_CAP_MS, EXP_BACKOFF_RESET_MS) == (15000, 30000)
    assert spec.autorestart and spec.restart_delay_ms == 0


def test_describe_exit() -> None:
    rec = record()
    assert describe_exit(rec) == "exited with code 1"
    rec.exit_signal = "SIGKILL"
    assert describe_exit(rec) == "killed by SIGKILL"
    rec.exit_signal, rec.exit_code = None, None
    assert describe_exit(rec) == "exited (code unknown: adopted process)"


def test_autorestart_off_stops_without_counting() -> None:
    rec = record(autorestart=False)
    decision = exit_after(rec, 10)  # even an unstable run
    assert decision == Decision(states.STOPPED, "exited with code 1; autorestart is off")
    assert (rec.restart_time, rec.unstable_restarts) == (0, 0)


def test_stop_exit_code_stops() -> None:
    rec = record(stop_exit_codes=[0, 3])
    rec.exit_code = 3
    decision = exit_after(rec, 5000, code=3)
    assert decision.status == states.STOPPED
    assert decision.reason == "exited with code 3, a stop exit code"
    assert rec.restart_time == 0


def test_other_codes_and_signals_are_not_stop_codes() -> None:
    rec = record(stop_exit_codes=[0])
    assert exit_after(rec, 5000, code=2).status == states.LAUNCHING
    assert exit_after(rec, 5000, code=None).status == states.LAUNCHING
    rec = record(stop_exit_codes=[-15])  # negative codes (signals) never stop
    assert exit_after(rec, 5000, code=-15).status == states.LAUNCHING


def test_stable_run_restarts_now_and_resets_the_unstable_count() -> None:
    rec = record()
    rec.unstable_restarts = 5
    decision = exit_after(rec, DEFAULT_MIN_UPTIME_MS)  # exactly min_uptime is stable
    assert decision == Decision(states.LAUNCHING, None, 0)
    assert rec.unstable_restarts == 0
    assert rec.restart_time == 1


def test_unstable_runs_count_up_to_errored() -> None:
    rec = record(max_restarts=3)
    rec.last_error = "EADDRINUSE 0.0.0.0:80"
    for expected in (1, 2):
        decision = exit_after(rec, DEFAULT_MIN_UPTIME_MS - 1)
        assert decision.status == states.LAUNCHING
        assert rec.unstable_restarts == expected
        assert rec.restart_time == expected
    decision = exit_after(rec, 20)
    assert decision.status == states.ERRORED
    assert decision.delay_ms == 0
    assert decision.reason is not None
    assert "too many unstable restarts" in decision.reason
    assert "max_restarts 3, min_uptime 1000 ms" in decision.reason
    assert decision.reason.startswith("exited with code 1 after 20 ms (last: EADDRINUSE")
    assert "`corral restart app`" in decision.reason
    # the streak starts over, the start time is forgotten, no restart was counted
    assert rec.unstable_restarts == 0
    assert rec.created_at is None
    assert rec.restart_time == 2


def test_a_stable_run_between_crashes_keeps_it_out_of_errored() -> None:
    rec = record(max_restarts=2)
    assert exit_after(rec, 10).status == states.LAUNCHING
    assert exit_after(rec, 60_000).status == states.LAUNCHING  # stable: streak reset
    assert exit_after(rec, 10).status == states.LAUNCHING
    assert exit_after(rec, 10).status == states.ERRORED


def test_fixed_restart_delay() -> None:
    rec = record(restart_delay_ms=500)
    for count in (1, 2, 3):
        decision = exit_after(rec, 5000)
        assert decision == Decision(states.WAITING, "exited with code 1; restarting in 500 ms",
                                    500)
        assert rec.restart_time == count - 1  # counted when the delayed start happens
        rec.restart_time += 1  # (Supervisor._delayed_launch)
    assert rec.prev_restart_delay_ms == 0  # only exponential backoff remembers
    assert restart_delay(rec, 0) == 500


def test_exponential_backoff_grows_caps_and_resets() -> None:
    rec = record(exp_backoff_restart_delay_ms=100, restart_delay_ms=7, max_restarts=1000)
    expected, seen = 100, []
    for _ in range(20):
        decision = exit_after(rec, 5000)  # stable, but shorter than the 30 s reset
        assert decision.status == states.WAITING
        assert decision.delay_ms == expected == rec.prev_restart_delay_ms
        seen.append(decision.delay_ms)
        expected = min(int(expected * 1.5), EXP_BACKOFF_CAP_MS)
    assert seen[:5] == [100, 150, 225, 337, 505]
    assert max(seen) == EXP_BACKOFF_CAP_MS and seen[-1] == EXP_BACKOFF_CAP_MS
    assert seen == sorted(seen)
    # 30 s up: back to the base delay, and growing again from there
    assert exit_after(rec, EXP_BACKOFF_RESET_MS).delay_ms == 100
    assert exit_after(rec, EXP_BACKOFF_RESET_MS - 1).delay_ms == 150
    assert rec.restart_time == 0  # delayed restarts count when they happen, not at the exit


def test_exponential_backoff_grows_on_unstable_runs_too() -> None:
    rec = record(exp_backoff_restart_delay_ms=1000, max_restarts=10)
    delays = [exit_after(rec, 10).delay_ms for _ in range(3)]
    assert delays == [1000, 1500, 2250]
    assert rec.unstable_restarts == 3


def test_restart_delay_without_a_record_of_previous_delay() -> None:
    rec = record(exp_backoff_restart_delay_ms=200)
    assert restart_delay(rec, 0) == 200
    assert restart_delay(rec, 0) == 300
    assert restart_delay(rec, EXP_BACKOFF_RESET_MS) == 200


# ---- model.targets -----------------------------------------------------------

ENTRIES = {
    0: Entry("web", "default", "/srv/web.py"),
    1: Entry("web", "default", "/srv/web.py"),
    2: Entry("worker", "jobs", "/srv/worker.py"),
    3: Entry("7", "jobs", "/srv/seven.py"),
    7: Entry("cron", "default", "/srv/cron.py"),
    9: Entry("jobs", "other", "/srv/jobs.py"),
}


def words(*names: str, path: str | None = None) -> list[dict[str, object]]:
    return [{"name": n, "path": path} for n in names]


def test_select_by_name_id_namespace_and_all() -> None:
    assert select(words("web"), ENTRIES) == [0, 1]
    assert select(words("2"), ENTRIES) == [2]
    assert select(words("default"), ENTRIES) == [0, 1, 7]
    assert select(words("all"), ENTRIES) == [0, 1, 2, 3, 7, 9]


def test_select_prefers_a_name_to_an_id_and_to_a_namespace() -> None:
    assert select(words("7"), ENTRIES) == [3]  # the app named "7", not id 7
    assert select(words("jobs"), ENTRIES) == [9]  # the app named "jobs", not the namespace


def test_select_by_script_path() -> None:
    assert select(words("worker.py", path="/srv/worker.py"), ENTRIES) == [2]
    with pytest.raises(CorralError):  # the same word without a path names nothing
        select(words("worker.py"), ENTRIES)


def test_select_several_words_in_id_order_without_duplicates() -> None:
    assert select(words("cron", "web", "0", "2"), ENTRIES) == [0, 1, 2, 7]
    assert select(words("all", "web"), ENTRIES) == [0, 1, 2, 3, 7, 9]


def test_select_reports_every_unknown_word_at_once() -> None:
    with pytest.raises(CorralError) as info:
        select(words("nope", "web", "42", "zzz"), ENTRIES)
    assert info.value.message.startswith("unknown target 'nope', '42', 'zzz': no process found")
    assert "`corral list`" in info.value.message
    assert info.value.code == 1
    with pytest.raises(CorralError):
        select(words("web"), {})


def test_to_wire_adds_the_path_of_existing_files(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app.py").write_text("")
    assert to_wire(["app.py", 3, "web"]) == [
        {"name": "app.py", "path": str(tmp_path / "app.py")},
        {"name": "3", "path": None},
        {"name": "web", "path": None},
    ]
    entries = {5: Entry("app", "default", str(tmp_path / "app.py"))}
    assert select(to_wire(["app.py"]), entries) == [5]


# ---- config.order ------------------------------------------------------------

def app(name: str, *deps: str) -> tuple[str, dict[str, object]]:
    return f"app {name!r}", {"name": name, "depends_on": list(deps)}


def check(*apps: tuple[str, dict[str, object]]) -> None:
    final = {str(options["name"]): str(options["name"]) for _, options in apps}
    check_dependencies("eco.json", list(apps), final)


def test_dependencies_that_exist_and_make_no_cycle_pass() -> None:
    check(app("api", "db", "cache"), app("db"), app("cache", "db"), app("web", "api"))


def test_unknown_dependency_suggests_a_close_name() -> None:
    with pytest.raises(EcosystemError) as info:
        check(app("api", "dbb"), app("db"))
    assert info.value.message == ("eco.json: app 'api': depends_on 'dbb': no app of that name "
                                  "in this file (it has api, db); did you mean 'db'?")
    with pytest.raises(EcosystemError) as info:
        check(app("api", "zzzzzz"), app("db"))
    assert "did you mean" not in info.value.message


def test_empty_dependency_name_is_unknown_even_next_to_an_unnamed_app() -> None:
    with pytest.raises(EcosystemError, match="depends_on '': no app of that name"):
        check(app("api", ""), app(""))


def test_self_dependency() -> None:
    with pytest.raises(EcosystemError) as info:
        check(app("api", "api"))
    assert info.value.message == "eco.json: app 'api': depends_on names the app itself"


def test_cycle_is_named() -> None:
    with pytest.raises(EcosystemError) as info:
        check(app("a", "b"), app("b", "c"), app("c", "a"), app("d", "a"))
    assert "depends_on makes a cycle: a -> b -> c -> a;" in info.value.message
    assert info.value.message.startswith("eco.json: ")


def spec(name: str, *deps: str) -> AppSpec:
    return AppSpec(name=name, script=f"{name}.py", depends_on=list(deps))


def names(order: list[list[AppSpec]]) -> list[list[str]]:
    return [[s.name for s in wave] for wave in order]


def test_waves_order() -> None:
    specs = [spec("web", "api"), spec("api", "db", "cache"), spec("db"), spec("cache"),
             spec("ext", "elsewhere")]  # a dependency this command does not start
    assert names(waves(specs)) == [["db", "cache", "ext"], ["api"], ["web"]]


def test_waves_independent_apps_are_one_wave() -> None:
    specs = [spec("a"), spec("b"), spec("c")]
    assert names(waves(specs)) == [["a", "b", "c"]]
    assert waves([]) == []


def test_waves_a_hand_made_cycle_still_ends() -> None:
    assert names(waves([spec("x"), spec("a", "b"), spec("b", "a")])) == [["x"], ["a", "b"]]


# ---- daemon log paths --------------------------------------------------------

def log_paths(home: Home, spec: AppSpec, pm_id: int) -> tuple[str, str, str]:
    """Supervisor.log_paths, on a Supervisor built inside a loop (it asks for the running
    loop) that starts nothing."""
    from corral.daemon.supervisor import Supervisor

    async def build() -> tuple[str, str, str]:
        supervisor = Supervisor(home, on_change=lambda: None)
        assert supervisor.instances == {}
        return supervisor.log_paths(spec, pm_id)

    return asyncio.run(build())


@pytest.fixture
def home(tmp_path) -> Home:
    return Home(str(tmp_path / "home"))


def test_default_log_paths_carry_the_id(home: Home) -> None:
    logs = home.logs
    assert log_paths(home, AppSpec(name="web", script="w.py"), 3) == (
        os.path.join(logs, "web-out-3.log"), os.path.join(logs, "web-error-3.log"), "")
    # unsafe characters in the name become "-"
    out, err, _ = log_paths(home, AppSpec(name="my app/v2:x", script="w.py"), 0)
    assert out == os.path.join(logs, "my-app-v2-x-out-0.log")
    assert err == os.path.join(logs, "my-app-v2-x-error-0.log")


def test_merge_logs_drops_the_id(home: Home) -> None:
    spec = AppSpec(name="web", script="w.py", merge_logs=True, instances=4, log_file="true")
    assert log_paths(home, spec, 2) == (os.path.join(home.logs, "web-out.log"),
                                        os.path.join(home.logs, "web-error.log"),
                                        os.path.join(home.logs, "web.log"))


def test_disable_logs(home: Home) -> None:
    spec = AppSpec(name="web", script="w.py", disable_logs=True, out_file="/x/o.log",
                   log_file="true")
    assert log_paths(home, spec, 1) == ("/dev/null", "/dev/null", "")


def test_configured_paths_of_one_instance_are_kept(home: Home) -> None:
    spec = AppSpec(name="web", script="w.py", out_file="/x/out.log", error_file="/x/err",
                   log_file="/x/all.log")
    assert log_paths(home, spec, 6) == ("/x/out.log", "/x/err", "/x/all.log")


@pytest.mark.parametrize("several", [{"instances": 2}, {"exec_mode": "cluster"}])
def test_configured_paths_of_several_instances_get_the_id(home: Home, several) -> None:
    spec = AppSpec(name="web", script="w.py", out_file="/x/out.log", error_file="/x/err",
                   log_file="/x/a.b.log", **several)
    assert log_paths(home, spec, 6) == ("/x/out-6.log", "/x/err-6", "/x/a.b-6.log")
    spec.merge_logs = True
    assert log_paths(home, spec, 6) == ("/x/out.log", "/x/err", "/x/a.b.log")


def test_dev_null_stays_dev_null_for_several_instances(home: Home) -> None:
    spec = AppSpec(name="web", script="w.py", out_file="/dev/null", error_file="/dev/null",
                   instances=3)
    assert log_paths(home, spec, 1)[:2] == ("/dev/null", "/dev/null")


def test_default_combined_log(home: Home) -> None:
    spec = AppSpec(name="web", script="w.py", log_file="true")
    assert log_paths(home, spec, 8)[2] == os.path.join(home.logs, "web-8.log")
    spec.log_file = ""
    assert log_paths(home, spec, 8)[2] == ""


def test_abs_log_path(tmp_path) -> None:
    assert set(NULL_LOG_PATHS) == {"NULL", "/dev/null"}
    for null in NULL_LOG_PATHS:
        assert _abs_log_path(null, "/srv/app") == "/dev/null"
    assert _abs_log_path("logs/out.log", "/srv/app") == "/srv/app/logs/out.log"
    assert _abs_log_path("/var/log/out.log", "/srv/app") == "/var/log/out.log"
    assert _abs_log_path("~/out.log", "/srv/app") == os.path.expanduser("~/out.log")
    assert _abs_log_path("null", "/srv/app") == "/srv/app/null"  # only NULL, upper case


def test_null_out_file_through_build_spec_and_log_paths(tmp_path, home: Home) -> None:
    (tmp_path / "app.py").write_text("")
    spec = build_spec("app.py", cwd=str(tmp_path), env={}, instances=2, out_file="NULL",
                      error_file="err.log", log_file="true")
    assert spec.out_file == "/dev/null"
    assert spec.error_file == str(tmp_path / "err.log")
    assert spec.log_file == "true"
    out, err, combined = log_paths(home, spec, 1)
    assert out == "/dev/null"
    assert err == str(tmp_path / "err-1.log")
    assert combined == os.path.join(home.logs, "app-1.log")


# ---- config.schema coercions -------------------------------------------------

@pytest.mark.parametrize(("value", "ms"), [
    ("1s", 1000), ("1.5s", 1500), ("200", 200), (200, 200), ("2m", 120_000),
    ("500ms", 500), ("1h", 3_600_000), (" 3 S ", 3000), (0, 0), (2.7, 2),
])
def test_to_ms(value: object, ms: int) -> None:
    assert schema.to_ms(value) == ms


@pytest.mark.parametrize("value", [
    "abc", "1d", "-5", "1e3", "", -1, True, False, None, float("nan"), float("inf"), [1]])
def test_to_ms_bad(value: object) -> None:
    with pytest.raises(BadValue):
        schema.to_ms(value)


def test_to_min_uptime_floor() -> None:
    assert schema.to_min_uptime(5) == 100
    assert schema.to_min_uptime("2s") == 2000


@pytest.mark.parametrize(("value", "size"), [
    ("10M", 10 * 1024**2), ("1G", 1024**3), ("512K", 512 * 1024), ("512k", 512 * 1024),
    ("200MB", 200 * 1024**2), ("1.5M", 1572864), ("100", 100), (4096, 4096)])
def test_to_bytes(value: object, size: int) -> None:
    assert schema.to_bytes(value) == size


@pytest.mark.parametrize("value", ["10T", "M", "ten", -1, True, 1.5, None])
def test_to_bytes_bad(value: object) -> None:
    with pytest.raises(BadValue):
        schema.to_bytes(value)


def test_to_count_and_to_int() -> None:
    assert schema.to_count(0) == 0
    assert schema.to_count("3") == 3
    assert schema.to_count(4.0) == 4
    for bad in (-1, "-2", 1.5, True, "x", None):
        with pytest.raises(BadValue):
            schema.to_count(bad)


def test_to_bool() -> None:
    assert schema.to_bool(True) is True
    assert schema.to_bool("TRUE") is True
    assert schema.to_bool("false") is False
    for bad in (1, 0, "yes", "", None):
        with pytest.raises(BadValue, match="expected true or false"):
            schema.to_bool(bad)


def test_to_instances() -> None:
    assert schema.to_instances("max") == "max"
    assert schema.to_instances(" MAX ") == "max"
    assert schema.to_instances(4) == 4
    assert schema.to_instances("-1") == -1
    assert schema.to_instances(0) == 0
    for bad in ("many", 1.5, True):
        with pytest.raises(BadValue, match='"max"'):
            schema.to_instances(bad)


def test_to_exec_mode() -> None:
    assert schema.to_exec_mode("fork") == "fork"
    assert schema.to_exec_mode("fork_mode") == "fork"
    assert schema.to_exec_mode("Cluster") == "cluster"
    assert schema.to_exec_mode("cluster_mode") == "cluster"
    for bad in ("threads", 1, None):
        with pytest.raises(BadValue):
            schema.to_exec_mode(bad)


def test_to_policy() -> None:
    assert [schema.to_policy(p) for p in ("shared", "RR", "reuseport")] == [
        "shared", "rr", "reuseport"]
    with pytest.raises(BadValue, match="expected shared, rr or reuseport"):
        schema.to_policy("random")


def test_to_signal() -> None:
    assert schema.to_signal("term") == "SIGTERM"
    assert schema.to_signal("SIGusr2") == "SIGUSR2"
    assert schema.to_signal("SIGINT") == "SIGINT"
    with pytest.raises(BadValue):
        schema.to_signal(True)


def test_to_cron() -> None:
    assert schema.to_cron("*/5 * * * *") == "*/5 * * * *"
    assert schema.to_cron("0 */5 * * * *") == "0 */5 * * * *"  # seconds first
    for off in (0, "0", False, None):
        assert schema.to_cron(off) is None
    with pytest.raises(BadValue, match="5 or 6 fields"):
        schema.to_cron("* * *")
    with pytest.raises(BadValue, match="not a valid cron expression"):
        schema.to_cron("61 * * * *")
    with pytest.raises(BadValue, match="not a valid cron expression"):
        schema.to_cron("a b c d e")


def test_to_env() -> None:
    assert schema.to_env({"A": 1, "B": True, "C": None, "D": {"x": 1}, "E": [1, 2],
                          "F": 1.5, "G": "text", "H": False}) == {
        "A": "1", "B": "true", "C": "", "D": '{"x":1}', "E": "[1,2]", "F": "1.5",
        "G": "text", "H": "false"}
    for bad in ({"A=B": "1"}, {"": "1"}, {"A": "x\0y"}, ["A"], "A=1"):
        with pytest.raises(BadValue):
            schema.to_env(bad)


def test_file_env_precedence() -> None:
    options = {"env": {"A": "env", "B": "env", "PORT": "1"},
               "_envs": {"prod": {"B": "prod", "C": "prod", "PORT": "2"}},
               "port": 8080}
    assert schema.file_env(options, "prod") == {"A": "env", "B": "prod", "C": "prod",
                                                "PORT": "8080"}
    assert schema.file_env(options, None) == {"A": "env", "B": "env", "PORT": "8080"}
    assert schema.file_env(options, "staging") == {"A": "env", "B": "env", "PORT": "8080"}
    del options["port"]
    assert schema.file_env(options, "prod")["PORT"] == "2"
    assert schema.file_env({}, "prod") == {}


def test_merge_env_and_filter_env() -> None:
    base = {"HOME": "/h", "SECRET_KEY": "s", "AWS_SECRET": "a", "A": "shell"}

    def merged(**options: object) -> tuple[dict[str, str], dict[str, object]]:
        options = {"env": {"A": "file"}, "_envs": {"prod": {"B": "prod"}}, "port": 80,
                   "name": "x", **options}
        return schema.merge_env(base, options, "prod"), options

    env, left = merged()
    assert env == {"HOME": "/h", "SECRET_KEY": "s", "AWS_SECRET": "a", "A": "file",
                   "B": "prod", "PORT": "80"}
    assert left == {"name": "x"}  # env, _envs, port and filter_env are taken out
    env, _ = merged(filter_env=True)
    assert env == {"A": "file", "B": "prod", "PORT": "80"}
    env, _ = merged(filter_env=["SECRET"])  # names that *contain* it are dropped
    assert env == {"HOME": "/h", "A": "file", "B": "prod", "PORT": "80"}
    env, _ = merged(filter_env=False)
    assert "SECRET_KEY" in env
    assert base == {"HOME": "/h", "SECRET_KEY": "s", "AWS_SECRET": "a", "A": "shell"}


def test_validate_health_kinds_and_defaults() -> None:
    assert schema.validate_health({"http": "http://localhost:8000/health"}) == {
        "kind": "http", "target": "http://localhost:8000/health", "interval_ms": 10_000,
        "timeout_ms": 5_000, "retries": 3, "start_period_ms": 0}
    assert schema.validate_health({"tcp": 8000})["target"] == "127.0.0.1:8000"
    assert schema.validate_health({"tcp": "127.0.0.1:81"})["target"] == "127.0.0.1:81"
    assert schema.validate_health({"tcp": "[::1]:82"})["target"] == "[::1]:82"
    cmd = schema.validate_health({"cmd": "true", "interval": "2s", "timeout": 500,
                                  "retries": 0, "start_period": "1m"})
    assert cmd == {"kind": "cmd", "target": "true", "interval_ms": 2000, "timeout_ms": 500,
                   "retries": 1, "start_period_ms": 60_000}  # retries at least 1


@pytest.mark.parametrize(("value", "message"), [
    ({"http": "http://192.0.2.1/"}, "not a loopback address"),
    ({"http": "http://10.1.2.3:80/x"}, "not a loopback address"),
    ({"tcp": "192.0.2.1:80"}, "not a loopback address"),
    ({"http": "https://localhost/"}, "is not an http:// URL"),
    ({"tcp": "localhost:http"}, "expected a port or HOST:PORT"),
    ({}, "exactly one of http, tcp or cmd"),
    ({"http": "http://localhost/", "tcp": 80}, "exactly one of http, tcp or cmd"),
    ({"cmd": "true", "every": 3}, "unknown health_check keys: every"),
    ({"cmd": "true", "interval": "soon"}, "expected milliseconds"),
    ("http://localhost/", "expected {http"),
])
def test_validate_health_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schema.validate_health(value)
    with pytest.raises(BadValue, match=message):  # as an ecosystem key
        schema.to_health(value)


# ---- client.cli --------------------------------------------------------------

def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_has_a_handler_and_every_handler_a_command() -> None:
    accepted = set(subcommands())
    assert accepted == set(cli.HANDLERS)
    assert {"list", "ls", "ps", "status", "start", "stop", "del", "log", "dump",
            "send-signal", "ecosystem", "dash"} <= accepted


def test_aliases_share_their_commands_handler() -> None:
    by_parser: dict[int, set[object]] = {}
    for name, sub in subcommands().items():
        by_parser.setdefault(id(sub), set()).add(cli.HANDLERS[name])
    assert all(len(handlers) == 1 for handlers in by_parser.values())
    assert cli.HANDLERS["ls"] is cli.cmd_list
    assert cli.HANDLERS["show"] is cli.HANDLERS["describe"]


def test_parsing_an_alias_dispatches_by_the_alias() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["ls"]).command == "ls"
    assert parser.parse_args(["del", "web"]).command == "del"
    assert cli.HANDLERS[parser.parse_args(["del", "web"]).command] is cli.HANDLERS["delete"]


# ---- `corral list` at scale (issue 17): table rows, the /proc walk, the saved-list check ----

def _table_row_pairs(count: int) -> tuple[list[dict[str, object]], list[list[object]]]:
    """The same apps as the dict rows of `list` (brief) and as `list` table rows."""
    import time

    from corral.client import render

    now = time.time() * 1000
    names = ["web", "worker-" * 9, "ünï€ode", "a%sb", "x"]
    statuses = ["online", "stopped", "errored", "launching", "stopping", "waiting restart"]
    dicts: list[dict[str, object]] = []
    table: list[list[object]] = []
    for i in range(count):
        pid = 0 if i % 4 == 3 else 1000 + i
        # uptimes mid-second, so that the two renderings cannot fall on either side of one
        uptime = now - [30_500, 90_500, 7_200_500, 200_000_500][i % 4]
        memory = [0, 1000, 5_000_000, 3 << 30, 1048576][i % 5]
        values = {
            "pm_id": i, "name": f"{names[i % 5]}{i}", "namespace": ["default", "prod"][i % 7 == 0],
            "exec_mode": ["fork", "cluster"][i % 2], "pid": pid, "pm_uptime": uptime,
            "restart_time": i % 3, "status": statuses[i % 6],
            "health": [None, "healthy", "unhealthy"][i % 3], "cpu": [0.0, 12.5, 150.4][i % 3],
            "memory": memory, "watching": i % 5 == 0,
            "last_error_line": "Traceback: boom" if i % 6 == 2 else None,
            "reason": "too many unstable restarts" if i % 12 == 2 else None}
        table.append([values[c] for c in render.TABLE_COLUMNS])
        dicts.append({**values, "spec": {"name": values["name"], "namespace": values["namespace"],
                                         "exec_mode": values["exec_mode"]},
                      "monit": {"cpu": values["cpu"], "memory": values["memory"]}})
    return dicts, table


@pytest.mark.parametrize("count", [1, 7, 40])
def test_table_rows_render_as_the_brief_rows(count: int) -> None:
    from corral.client import render

    dicts, table = _table_row_pairs(count)
    for width in (None, 200, 120, 90, 70, 50, 30, 12, 1):
        for colour in (False, True):
            for boxed in (False, True):
                assert render.format_cells(render.table_cells(table), colour, boxed, width) \
                    == render.format_table(dicts, colour, boxed, width), (width, colour, boxed)
        assert render.crash_notes(render.table_notes_rows(table), width) == \
            render.crash_notes(dicts, width)  # type: ignore[arg-type]


def test_the_tables_inlined_formats_are_human_duration_and_human_bytes() -> None:
    """table_cells() inlines human_duration() and human_bytes() (per row of 1,000 apps):
    the same text for every magnitude and edge."""
    import time as _time

    from corral.client import render
    from corral.model import states
    from corral.model.describe import human_duration

    now = _time.time() * 1000
    ages = [-5000, 0, 999, 59_999, 60_000, 3_599_999, 3_600_000, 86_399_999, 86_400_000,
            10 * 86_400_000]
    sizes = [0, 1, 1023, 1024, 1536, 1048575, 1048576, 1073741823, 1073741824, 5 * 2**40]
    for age in ages:
        for size in sizes:
            for status, health in ((states.ONLINE, states.UNHEALTHY), (states.ONLINE, None),
                                   (states.STOPPED, states.UNHEALTHY)):
                # 1 ms past each edge: the call's own clock would need a second to cross
                # into the next unit
                [cells] = render.table_cells([[3, "a", "default", "fork", 42, now - age - 1, 2,
                                               status, health, 12.4, size, True]])
                assert cells[5] == human_duration(age + 1), age
                assert cells[9] == render.human_bytes(size), size
                assert cells[7] == states.shown(status, health)
                assert cells[8] == "12%" and cells[11] == "enabled"


def test_table_columns_are_the_daemons() -> None:
    from corral.client import render
    from corral.daemon.rpc import TABLE_COLUMNS

    assert list(TABLE_COLUMNS) == render.TABLE_COLUMNS


TREE_APP = """
import subprocess, sys, threading
kids = [subprocess.Popen(["sleep", "120"])]
def fork():  # a child of another thread: listed under that thread's children file
    kids.append(subprocess.Popen(["sleep", "120"]))
thread = threading.Thread(target=fork)
thread.start()
thread.join()
keep = threading.Thread(target=sys.stdin.read)  # two threads from now on
keep.start()
print(" ".join(str(k.pid) for k in kids), flush=True)
keep.join()
"""


def test_tree_metrics_walk_and_scan_agree(tmp_path) -> None:
    import subprocess
    import sys

    from corral.daemon import metrics

    from conftest import wait_for

    if not os.path.exists("/proc/self/stat"):
        pytest.skip("needs /proc")
    root = subprocess.Popen([sys.executable, "-c", TREE_APP], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    kids: list[int] = []
    try:
        assert root.stdout is not None
        kids = [int(p) for p in root.stdout.readline().split()]
        assert len(kids) == 2

        def pages(pid: int) -> int:
            with open(f"/proc/{pid}/stat", "rb") as f:
                return int(f.read().rsplit(b")", 1)[1].split()[21])

        def both() -> tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]]] | None:
            scan = metrics._sum_trees(*metrics._proc_table(), [root.pid])  # type: ignore[misc]
            walk = metrics._walk([root.pid]) if metrics._children_files() else scan
            return (walk, scan) if walk == scan else None  # idle: the same twice

        wait_for(both, timeout=20, what="an idle tree, the same by the walk and the scan")

        def whole_tree(tm: metrics.TreeMetrics) -> bool:
            expected = sum(pages(p) for p in [root.pid, *kids]) * metrics._PAGE_SIZE
            return tm.collect({root.pid: 0.0})[root.pid][1] == expected

        wait_for(lambda: whole_tree(metrics.TreeMetrics()), timeout=20,
                 what="the memory of the root and of both children")
        scanning = metrics.TreeMetrics()
        scanning._walkable = False  # a kernel without the children files: the scan
        wait_for(lambda: whole_tree(scanning), timeout=20, what="the same by the scan")
        assert metrics._walk([2 ** 22 + 1]) == {}  # no such process
        assert metrics.TreeMetrics().collect({}) == {}
    finally:
        for pid in [root.pid, *kids]:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        root.wait(timeout=10)


def test_saved_list_check_without_json_round_trip(home: Home) -> None:
    from corral.store import dump

    home.ensure()
    records = [InstanceRecord(pm_id=i, spec=AppSpec(name=f"a{i // 2}", script="a.py",
                                                    env={"K": "v"}, instances=2),
                              instance_index=i % 2, status=states.ONLINE)
               for i in range(6)]
    assert dump.in_sync(home, records) is None  # nothing saved
    dump.write(home, dump.build(records))
    assert dump.in_sync(home, records) is True
    records[2].spec.max_restarts += 1  # changed in place, as an update does
    assert dump.in_sync(home, records) is False
    records[2].spec.max_restarts -= 1
    assert dump.in_sync(home, records) is True
    records[0].spec.args = ("x",)  # type: ignore[assignment]  # a tuple: a list in JSON
    records[1].spec.args = ("x",)  # type: ignore[assignment]
    assert dump.in_sync(home, records) is False
    dump.write(home, dump.build(records))
    assert dump.in_sync(home, records) is True  # ["x"] read back, ("x",) here: the same
    records[4].status = records[5].status = states.STOPPED
    assert dump.in_sync(home, records) is False
    records[4].status = states.ONLINE  # one instance still running: not stopped
    assert dump.in_sync(home, records) is True
    assert dump.in_sync(home, records[:4]) is False  # an app fewer
    records[0].spec.force = True  # not what a resurrect compares
    assert dump.in_sync(home, records) is True
