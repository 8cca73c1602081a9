"""Scenario files for the DTS simulator: loading, validation, the timeline, the JSON shape.

No server here: these are the pure parts (`dts_sim.scenario`, `timeline`, `render`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dts_sim import (
    QUIRKS,
    Fault,
    JobKey,
    JobSpec,
    ScenarioError,
    ScenarioState,
    builtin_scenarios,
    job_to_api,
    load_scenario,
    page_body,
    parse_job_key,
    parse_scenario,
)

# Every field the reference documents for a SynchronizationInstance (ExpireTime only for
# PrePaid jobs, ErrorMessage only when there is an error).
REFERENCE_FIELDS = {
    "DataInitialization",
    "Status",
    "SynchronizationJobName",
    "Delay",
    "ErrorMessage",
    "ExpireTime",
    "CreateTime",
    "PayType",
    "StructureInitialization",
    "SynchronizationJobClass",
    "InstanceCreateTime",
    "SynchronizationJobId",
    "SynchronizationDirection",
    "JobCreateTime",
    "Tags",
    "SynchronizationObjects",
    "DataInitializationStatus",
    "DataSynchronizationStatus",
    "DestinationEndpoint",
    "Performance",
    "PrecheckStatus",
    "SourceEndpoint",
    "StructureInitializationStatus",
}
ENDPOINT_FIELDS = {"InstanceId", "IP", "InstanceType", "Port", "UserName", "EngineName"}

MINIMAL = """
[[jobs]]
id = "dtsone"
region = "cn-hangzhou"
"""


def job(**fields: Any) -> JobSpec:
    return JobSpec.model_validate({"id": "dtsjob", "region": "cn-hangzhou", **fields})


def error_of(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="bad.toml")
    message = str(info.value)
    assert message.startswith("bad.toml: ")
    return message


# --------------------------------------------------------------------------------------
# Built-in scenarios
# --------------------------------------------------------------------------------------


def test_builtin_scenarios_are_listed_and_load() -> None:
    names = builtin_scenarios()
    assert {"demo", "multipage"} <= set(names)
    for name in names:
        assert load_scenario(name).name == name


def test_multipage_regions() -> None:
    state = ScenarioState(load_scenario("multipage"))
    counts = {region: len(state.jobs(region)) for region in state.regions()}
    assert counts == {"cn-hangzhou": 65, "cn-beijing": 31, "cn-shenzhen": 0}
    statuses = {j.status for j in state.jobs()}
    assert len(statuses) >= 4
    assert any(j.quirks for j in state.jobs())


def test_demo_has_two_regions_and_a_two_way_job() -> None:
    scenario = load_scenario("demo")
    assert scenario.all_regions() == ["cn-hangzhou", "cn-shanghai"]
    directions = {j.direction for j in scenario.jobs if j.id == "dtsdemo05"}
    assert directions == {"Forward", "Reverse"}


def test_load_from_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(MINIMAL)
    scenario = load_scenario(path)
    assert scenario.name == "mine"  # the file name when the file gives none
    assert load_scenario(str(path)).jobs[0].id == "dtsone"


def test_unknown_scenario_names_the_builtins(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="demo") as info:
        load_scenario("no-such-scenario")
    assert "no-such-scenario" in str(info.value)
    with pytest.raises(ScenarioError, match=r"missing\.toml"):
        load_scenario(tmp_path / "missing.toml")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[[jobs]]\nid = "x"\nregion = "r"\ncolour = "blue"\n')
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(path) in str(info.value)
    assert "jobs[0].colour: unknown field" in str(info.value)


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = [", "invalid TOML"),
        ('colour = "blue"', "colour: unknown field"),
        ('[[jobs]]\nid = "a"\nregion = "r"\nstatus = 3', "jobs[0].status: status must be a string"),
        ('[[jobs]]\nid = "a"\nregion = "r"\nstatus = "Running"', "unknown status 'Running'"),
        ('[[jobs]]\nid = "a"\nregion = "r"\ndelay = -1', "jobs[0].delay"),
        ('[[jobs]]\nid = "a"\nregion = "r"\ndirection = "Sideways"', "unknown direction"),
        ('[[jobs]]\nid = "a/b"\nregion = "r"', "must not contain '/'"),
        ('[[jobs]]\nid = "a"', "jobs[0].region: Field required"),
        ('[[jobs]]\nid = "a"\nregion = "r"\nquirks = ["sparkles"]', "jobs[0].quirks[0]"),
        (
            '[[jobs]]\nid = "a"\nregion = "r"\n[[jobs]]\nid = "a"\nregion = "r"',
            "job a is defined twice",
        ),
        ('regions = ["r1"]\n[[jobs]]\nid = "a"\nregion = "r2"', "not listed in regions"),
        ('[[steps]]\nset.ghost = { status = "Failed" }', "step 1"),
        ('[[steps]]\nremove = ["ghost"]', "no job ghost to remove"),
        (MINIMAL + "[[steps]]\nset.dtsone = { colour = 1 }", "unknown field(s) colour"),
        (MINIMAL + '[[steps]]\nset.dtsone = { region = "x" }', "region cannot be changed"),
        (MINIMAL + '[[steps]]\nset.dtsone = { status = "Nope" }', "unknown status 'Nope'"),
        (
            MINIMAL + '[[steps]]\nset."dtsone/Reverse" = { status = "Failed" }',
            "no job dtsone/Reverse",
        ),
        (
            MINIMAL + '[[steps]]\nadd = [{ id = "dtsone", region = "cn-hangzhou" }]',
            "already exists",
        ),
        ('[[steps]]\nfaults = [{ kind = "meteor" }]', "steps[0].faults[0].kind"),
        ('[[steps]]\nfaults = [{ kind = "throttle", count = 0 }]', "count must be"),
        (
            '[[generate]]\nregion = "r"\ncount = 2\nstatus = ["Synchronizing", "Bogus"]',
            "unknown status",
        ),
        ("step_seconds = 0", "step_seconds"),
    ],
)
def test_invalid_scenarios(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_step_errors_say_which_step() -> None:
    text = MINIMAL + '[[steps]]\nnote = "fine"\n[[steps]]\nset.ghost = { delay = 1 }\n'
    message = error_of(text)
    assert "steps[1] (step 2)" in message
    assert "ghost" in message


def test_statuses_are_matched_in_any_case() -> None:
    assert job(status="synchronizing").status == "Synchronizing"
    assert job(status="INITIALIZING").status == "Initializating"  # DTS's own spelling
    assert job(direction="reverse").direction == "Reverse"


def test_parse_job_key() -> None:
    assert parse_job_key("dtsx") == JobKey("dtsx", "Forward")
    assert parse_job_key("dtsx/Reverse") == JobKey("dtsx", "Reverse")
    assert parse_job_key("dtsx/forward") == JobKey("dtsx", "Forward")
    assert str(JobKey("dtsx", "Reverse")) == "dtsx/Reverse"
    for bad in ("", "/Reverse", "dtsx/Up"):
        with pytest.raises(ScenarioError):
            parse_job_key(bad)


def test_fault_validation() -> None:
    assert Fault(kind="throttle").retry_after_ms == 200
    assert Fault(kind="internal", count=-1).count == -1
    with pytest.raises(ValueError, match="count"):
        Fault(kind="internal", count=-2)
    fault = Fault(kind="internal", region="cn-hangzhou", page=2)
    assert fault.matches("cn-hangzhou", 2)
    assert not fault.matches("cn-hangzhou", 1)
    assert not fault.matches("cn-beijing", 2)


# --------------------------------------------------------------------------------------
# The timeline
# --------------------------------------------------------------------------------------

TIMELINE = """
[[jobs]]
id = "dtsa"
region = "cn-hangzhou"
status = "Synchronizing"
delay = 1

[[jobs]]
id = "dtsa"
region = "cn-hangzhou"
direction = "Reverse"

[[jobs]]
id = "dtsb"
region = "cn-beijing"

[[steps]]
note = "a fails"
set.dtsa = { status = "Failed", error_message = "boom", delay = 9 }
faults = [{ kind = "throttle", count = 2 }]

[[steps]]
set.dtsa = { status = "Synchronizing", error_message = "" }
add = [{ id = "dtsc", region = "cn-hangzhou", status = "NotStarted" }]
remove = ["dtsa/Reverse"]
"""


def test_advance_applies_steps_in_order() -> None:
    state = ScenarioState(parse_scenario(TIMELINE))
    assert state.step == 0
    faults = state.advance()
    assert state.step == 1
    assert state.note == "a fails"
    assert [f.kind for f in faults] == ["throttle"]
    a = state.get("dtsa")
    assert a is not None
    assert (a.status, a.error_message, a.delay) == ("Failed", "boom", 9)

    assert state.advance() == []
    a = state.get("dtsa")
    assert a is not None
    assert (a.status, a.error_message, a.delay) == ("Synchronizing", None, 9)  # "" reset it
    assert state.get("dtsa/Reverse") is None
    assert [str(j.key) for j in state.jobs("cn-hangzhou")] == ["dtsa", "dtsc"]

    assert state.advance(5) == []  # past the end: nothing
    assert state.step == 2


def test_advance_several_steps_at_once() -> None:
    state = ScenarioState(parse_scenario(TIMELINE))
    assert [f.kind for f in state.advance(2)] == ["throttle"]
    assert state.step == 2


def test_set_job_keeps_other_fields_and_validates() -> None:
    state = ScenarioState(parse_scenario(TIMELINE))
    before = state.get("dtsa")
    assert before is not None
    updated = state.set_job("dtsa", {"tags": {"env": "prod"}})
    assert updated.delay == 1
    assert state.render(updated)["JobCreateTime"] == state.render(before)["JobCreateTime"]
    assert updated.tags == {"env": "prod"}
    with pytest.raises(ScenarioError, match="delay"):
        state.set_job("dtsa", {"delay": "soon"})
    with pytest.raises(ScenarioError, match="id cannot be changed"):
        state.set_job("dtsa", {"id": "dtsz"})


def test_creation_times_are_stable_and_shared_by_both_halves() -> None:
    def created(state: ScenarioState) -> list[str]:
        return [state.render(j)["JobCreateTime"] for j in state.jobs()]

    first = ScenarioState(parse_scenario(TIMELINE))
    assert created(first) == created(ScenarioState(parse_scenario(TIMELINE)))
    forward, reverse, other = created(first)
    assert forward == reverse  # the two halves of one instance
    assert other > forward  # later jobs were created later
    explicit = first.set_job("dtsb", {"created": datetime(2020, 5, 6, tzinfo=UTC)})
    assert first.render(explicit)["JobCreateTime"] == "2020-05-06T00:00:00Z"
    reset = first.set_job("dtsb", {"created": ""})
    assert first.render(reset)["JobCreateTime"] == other


def test_select_filters() -> None:
    state = ScenarioState(load_scenario("demo"))
    assert [j.id for j in state.select("cn-hangzhou", name="LEDGER")] == ["dtsdemo05", "dtsdemo05"]
    assert [j.id for j in state.select("cn-hangzhou", tags=[("team", "orders")])] == ["dtsdemo01"]
    assert [
        j.id for j in state.select("cn-hangzhou", tags=[("env", "prod"), ("team", "crm")])
    ] == []
    assert [j.id for j in state.select("cn-shanghai", tags=[("retiring", None)])] == ["dtsdemo08"]
    assert [j.id for j in state.select("cn-shanghai", resource_group="rg-acfmdemo0legacy")] == [
        "dtsdemo08"
    ]
    assert state.select("eu-central-1") == []


def test_drift() -> None:
    state = ScenarioState(parse_scenario(TIMELINE))
    added = state.drift("cn-hangzhou", "add")
    assert added is not None
    assert [j.id for j in state.jobs("cn-hangzhou")] == [added.id, "dtsa", "dtsa"]
    removed = state.drift("cn-hangzhou", "remove")
    assert removed == added
    assert state.drift("nowhere", "remove") is None


def test_generate() -> None:
    scenario = parse_scenario(
        """
        [[generate]]
        region = "cn-hangzhou"
        count = 5
        id_prefix = "dtsg"
        start = 8
        status = ["Synchronizing", "Failed"]
        delay = [0, 100, 7]
        tags = { fleet = "x" }
        """
    )
    jobs = scenario.initial_jobs()
    assert [j.id for j in jobs] == ["dtsg008", "dtsg009", "dtsg010", "dtsg011", "dtsg012"]
    assert [j.status for j in jobs] == ["Synchronizing", "Failed"] * 2 + ["Synchronizing"]
    assert [j.delay for j in jobs] == [0, 100, 7, 0, 100]
    assert all(j.tags == {"fleet": "x"} for j in jobs)


def test_summary_is_json() -> None:
    state = ScenarioState(load_scenario("demo"))
    summary = json.loads(json.dumps(state.summary()))
    assert summary["step"] == 0
    assert summary["steps"] == len(load_scenario("demo").steps)
    assert set(summary["regions"]) == {"cn-hangzhou", "cn-shanghai"}


# --------------------------------------------------------------------------------------
# The JSON shape
# --------------------------------------------------------------------------------------


def test_every_reference_field_is_served() -> None:
    served = job_to_api(job(pay_type="PrePaid", status="Failed"))
    assert set(served) == REFERENCE_FIELDS
    assert set(served["SourceEndpoint"]) == ENDPOINT_FIELDS
    assert set(served["DestinationEndpoint"]) == ENDPOINT_FIELDS
    assert set(served["Performance"]) == {"RPS", "FLOW"}
    assert set(served["PrecheckStatus"]) == {"Status", "Percent", "Detail"}
    assert set(served["StructureInitializationStatus"]) == {"Status", "Percent", "Progress"}
    assert set(served["SynchronizationObjects"][0]) == {
        "SchemaName",
        "NewSchemaName",
        "TableIncludes",
        "TableExcludes",
    }
    json.dumps(served)  # plain JSON


def test_values_are_formatted_as_dts_does() -> None:
    created = datetime(2021, 6, 28, 9, 34, 53, tzinfo=UTC)
    served = job_to_api(
        job(
            created=created,
            delay=12,
            rps=100,
            flow=1.5,
            objects=[{"schema": "db", "new_schema": "db2", "include": ["t1"], "exclude": ["t2"]}],
            tags={"k": "v"},
            source={"engine": "PostgreSQL", "port": 5432},
        )
    )
    assert served["CreateTime"] == "2021-06-28 17:34:53.0"  # Beijing time
    assert served["JobCreateTime"] == "2021-06-28T09:34:53Z"
    assert served["Delay"] == "12"
    assert served["Performance"] == {"RPS": "100", "FLOW": "1.50MB/s"}
    assert served["DataInitialization"] is True
    assert "ExpireTime" not in served  # PostPaid
    assert "ErrorMessage" not in served
    assert served["Tags"] == [{"Key": "k", "Value": "v"}]
    assert served["SynchronizationObjects"] == [
        {
            "SchemaName": "db",
            "NewSchemaName": "db2",
            "TableIncludes": [{"TableName": "t1"}],
            "TableExcludes": [{"TableName": "t2"}],
        }
    ]
    assert served["SourceEndpoint"]["EngineName"] == "PostgreSQL"
    assert served["SourceEndpoint"]["Port"] == "5432"
    assert served["SourceEndpoint"]["InstanceId"].startswith("rm-")
    assert served["PrecheckStatus"]["Status"] == "Success"
    assert len(served["PrecheckStatus"]["Detail"]) == 16


def test_prepaid_jobs_expire() -> None:
    served = job_to_api(job(pay_type="PrePaid", created=datetime(2024, 1, 1, tzinfo=UTC)))
    assert served["ExpireTime"] == "2024-12-31T00:00:00Z"
    explicit = job_to_api(job(pay_type="PrePaid", expire_time=datetime(2030, 1, 1, tzinfo=UTC)))
    assert explicit["ExpireTime"] == "2030-01-01T00:00:00Z"


def test_reverse_job_swaps_endpoints() -> None:
    forward = job_to_api(job())
    reverse = job_to_api(job(direction="Reverse"))
    assert reverse["SourceEndpoint"] == forward["DestinationEndpoint"]
    assert reverse["DestinationEndpoint"] == forward["SourceEndpoint"]


@pytest.mark.parametrize(
    ("status", "precheck", "structure", "data"),
    [
        ("NotStarted", "NotStarted", "NotStarted", "NotStarted"),
        ("Prechecking", "Prechecking", "NotStarted", "NotStarted"),
        ("PrecheckFailed", "Failed", "NotStarted", "NotStarted"),
        ("Initializating", "Success", "Finished", "Migrating"),
        ("InitializeFailed", "Success", "Failed", "NotStarted"),
        ("Synchronizing", "Success", "Finished", "Finished"),
        ("Suspending", "Success", "Finished", "Finished"),
        ("Finished", "Success", "Finished", "Finished"),
    ],
)
def test_defaults_follow_the_status(status: str, precheck: str, structure: str, data: str) -> None:
    served = job_to_api(job(status=status))
    assert served["PrecheckStatus"]["Status"] == precheck
    assert served["StructureInitializationStatus"]["Status"] == structure
    assert served["DataInitializationStatus"]["Status"] == data


def test_default_errors_for_error_statuses() -> None:
    failed = job_to_api(job(status="Failed"))
    assert failed["ErrorMessage"].startswith("DTS-")
    init_failed = job_to_api(job(status="InitializeFailed"))
    assert init_failed["StructureInitializationStatus"]["ErrorMessage"].startswith("DTS-1020042")
    precheck_failed = job_to_api(job(status="PrecheckFailed"))
    bad = [d for d in precheck_failed["PrecheckStatus"]["Detail"] if d["CheckStatus"] == "Failed"]
    assert len(bad) == 1
    assert bad[0]["ErrorMessage"]
    assert bad[0]["RepairMethod"]


def test_explicit_precheck_and_stages() -> None:
    served = job_to_api(
        job(
            status="PrecheckFailed",
            precheck={
                "status": "Failed",
                "items": [
                    {
                        "name": "CHECK_X",
                        "status": "failed",
                        "error_message": "e",
                        "repair_method": "r",
                    }
                ],
            },
            structure_init={"status": "migrating", "percent": 40, "progress": 3},
        )
    )
    assert served["PrecheckStatus"] == {
        "Status": "Failed",
        "Percent": "100",
        "Detail": [
            {
                "CheckStatus": "Failed",
                "ItemName": "CHECK_X",
                "ErrorMessage": "e",
                "RepairMethod": "r",
            }
        ],
    }
    assert served["StructureInitializationStatus"] == {
        "Status": "Migrating",
        "Percent": "40",
        "Progress": "3",
    }


# --------------------------------------------------------------------------------------
# Quirks
# --------------------------------------------------------------------------------------


def test_quirk_lowercase_status() -> None:
    assert job_to_api(job(quirks=["lowercase_status"]))["Status"] == "synchronizing"


def test_quirk_numbers_as_json() -> None:
    served = job_to_api(job(delay=5, quirks=["numbers_as_json"]))
    assert served["Delay"] == 5
    assert served["Performance"] == {"RPS": 100, "FLOW": 0.52}
    assert served["SourceEndpoint"]["Port"] == 3306
    assert served["StructureInitializationStatus"]["Percent"] == 100
    assert served["DataInitializationStatus"]["Progress"] == 200001
    assert served["PrecheckStatus"]["Percent"] == 100


def test_quirk_strings_for_bools() -> None:
    served = job_to_api(job(data_initialization=False, quirks=["strings_for_bools"]))
    assert (served["StructureInitialization"], served["DataInitialization"]) == ("true", "false")


def test_quirk_omissions() -> None:
    served = job_to_api(job(quirks=["omit_precheck", "omit_performance"]))
    assert "PrecheckStatus" not in served
    assert "Performance" not in served


def test_quirk_empty_strings() -> None:
    served = job_to_api(job(quirks=["empty_strings"]))
    assert served["ErrorMessage"] == ""
    assert served["ExpireTime"] == ""
    assert served["DataInitializationStatus"]["ErrorMessage"] == ""
    assert served["PrecheckStatus"]["Detail"][0]["RepairMethod"] == ""
    # ... but a real value is not blanked
    assert job_to_api(job(status="Failed", quirks=["empty_strings"]))["ErrorMessage"] != ""


def test_quirk_wrapped_lists() -> None:
    served = job_to_api(
        job(tags={"k": "v"}, objects=[{"schema": "db", "include": ["t"]}], quirks=["wrapped_lists"])
    )
    assert served["Tags"] == {"Tag": [{"Key": "k", "Value": "v"}]}
    objects = served["SynchronizationObjects"]["SynchronizationObject"]
    assert objects[0]["TableIncludes"] == {"TableInclude": [{"TableName": "t"}]}
    assert list(served["PrecheckStatus"]["Detail"]) == ["Detail"]
    assert len(served["PrecheckStatus"]["Detail"]["Detail"]) == 16


def test_quirk_lowercase_keys_and_extra_fields() -> None:
    served = job_to_api(job(quirks=["lowercase_keys", "extra_fields"]))
    assert served["synchronizationJobId"] == "dtsjob"
    assert served["precheckStatus"]["detail"][0]["itemName"] == "CHECK_CONN_SRC"
    assert "dtsInstanceID" in served
    assert "SynchronizationJobId" not in served


def test_scenario_wide_quirks_reach_every_job_and_the_page() -> None:
    scenario = parse_scenario('quirks = ["wrapped_lists", "lowercase_status"]\n' + MINIMAL)
    state = ScenarioState(scenario)
    body = page_body(state.jobs(), total=1, page_number=1, request_id="R", quirks=scenario.quirks)
    wrapped = body["SynchronizationInstances"]
    assert list(wrapped) == ["SynchronizationInstance"]
    assert wrapped["SynchronizationInstance"][0]["Status"] == "synchronizing"
    assert body["PageRecordCount"] == 1
    assert body["RequestId"] == "R"


def test_every_quirk_is_documented() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "simulator.md").read_text()
    for quirk in QUIRKS:
        assert f"`{quirk}`" in docs


def test_render_follows_changes() -> None:
    state = ScenarioState(parse_scenario(TIMELINE))
    a = state.get("dtsa")
    assert a is not None
    first = state.render(a)
    assert state.render(a) == first
    changed = state.set_job("dtsa", {"delay": 99})
    assert state.render(changed)["Delay"] == "99"


def test_quirky_pages_are_read_by_the_watchers_parser() -> None:
    """The point of quirks: the project's tolerant parser reads them all the same."""
    from watcher.dts.models import parse_page

    plain = job(status="Failed", delay=42, tags={"env": "prod"})
    every = plain.model_copy(update={"quirks": list(QUIRKS)})
    for spec in (plain, every):
        body = json.loads(json.dumps(page_body([spec], total=1, page_number=1, request_id="R")))
        parsed = parse_page(body, "cn-hangzhou")
        assert parsed.skipped == 0
        (state,) = parsed.jobs
        assert (state.job_id, state.status, state.delay_seconds) == ("dtsjob", "Failed", 42)
        assert state.tags == (("env", "prod"),)
