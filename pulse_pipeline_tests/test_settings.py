"""Settings: the environment read once when the code location loads, validated, shown in the UI."""

from pathlib import Path

import dagster as dg
import pytest

from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.resources import CostSettings
from pulse_pipeline.defs.settings import RESOURCES, SETTINGS, SettingError

ACCEPTED = (
    "Usage, DiscountedUsage, Reservation applied usage, Savings Plan Covered Usage, Savings Plan "
    "Negation, Recurring reservation fee, Upfront reservation fee, Savings Plan Recurring Fee, "
    "Savings Plan Upfront Fee, Support fee, Tax, Credit, Enterprise Discount Program Discount, "
    "Refund, Other out-of-cycle charges"
)


def field_values(definitions: dg.Definitions, resource: str) -> dict[str, object]:
    """What the UI's Resources page shows for a resource: the value, or the variable's name."""
    value = definitions.resources[resource]
    assert isinstance(value, dg.ConfigurableResource)
    return {
        # EnvVar, or the IntEnvVar of `EnvVar.int` (an int carrying the variable's name)
        name: ("EnvVar", field.env_var_name) if hasattr(field, "env_var_name") else field
        for name, field in value
    }


def test_set_variables_show_as_their_names_and_unset_ones_as_their_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULSE_COST_METRIC", "AmortizedCost")
    monkeypatch.setenv("AWS_PROFILE", "pulse-prod")
    monkeypatch.setenv("PULSE_DB_CONNECT_TIMEOUT_SECONDS", "5")
    monkeypatch.delenv("PULSE_ECB_HISTORY_URL")  # the tests' offline opt-in

    loaded = defs()

    assert field_values(loaded, "pulse_db") == {
        "url": ("EnvVar", "DATABASE_URL"),
        "connect_timeout_seconds": ("EnvVar", "PULSE_DB_CONNECT_TIMEOUT_SECONDS"),
        "statement_timeout_seconds": 300,
    }
    assert field_values(loaded, "settings") == {
        "metric": ("EnvVar", "PULSE_COST_METRIC"),
        "record_types": "",
        "max_pages": 200,
        "freshness_hours": 30,
        "default_window": "revisable",
    }
    # Production reads the ECB's own history; `bundled` is an explicit opt-in.
    assert field_values(loaded, "ecb")["history_url"] == (
        "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip"
    )
    aws = field_values(loaded, "aws")
    assert aws["profile_name"] == ("EnvVar", "AWS_PROFILE")
    assert aws["region_name"] == ("EnvVar", "AWS_REGION")  # the tests set AWS_REGION


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "DATABASE_URL",
            "postgresql://pulse:s3cret@db:notaport/pulse",
            "DATABASE_URL is not a database URL pulse_pipeline can read; expected "
            "postgresql://user:password@host:5432/db (password URL-encoded) or sqlite:///path",
        ),
        (
            "DATABASE_URL",
            "postgresql://pulse:s3cret@pw@db:5432/pulse?schema=public",
            "DATABASE_URL cannot be read unambiguously: its user name or password holds an "
            "unencoded @, /, ?, # or %; percent-encode each of them (@ as %40, / as %2F, ? as "
            '%3F, # as %23, % as %25), e.g. with python3 -c "import urllib.parse; '
            "print(urllib.parse.quote(input(), safe=''))\"",
        ),
        (
            "PULSE_ECB_HISTORY_URL",
            "http://mirror.example/eurofxref-hist.zip",
            "PULSE_ECB_HISTORY_URL is invalid: must be an https:// URL (plain http:// only on "
            "127.0.0.1 or localhost), a file path, or `bundled`",
        ),
        *[
            (
                "PULSE_MAX_PAGES",
                value,
                "PULSE_MAX_PAGES is invalid: must be a whole number of at least 1 (the most Cost "
                "Explorer pages, $0.01 each, one account's fetch may ask for)",
            )
            for value in ("0", "-5", "2.5", "two hundred")
        ],
        *[
            (
                "PULSE_COST_FRESHNESS_HOURS",
                value,
                "PULSE_COST_FRESHNESS_HOURS is invalid: must be a whole number of hours, at least 1",
            )
            for value in ("0", "1.5", "a day")
        ],
        (
            "PULSE_DEFAULT_WINDOW",
            "last-month",
            "PULSE_DEFAULT_WINDOW is invalid: unknown window rule 'last-month'; choose revisable "
            "or previous-month",
        ),
        (
            "PULSE_RECORD_TYPES",
            "usage,tax",
            "PULSE_RECORD_TYPES is invalid: unknown record type 'usage', 'tax' (did you mean "
            f"Usage, Tax?); use AWS's exact names ({ACCEPTED}) or leave it empty for all",
        ),
        (
            "PULSE_RECORD_TYPES",
            "Usage,Savings Plans",
            "PULSE_RECORD_TYPES is invalid: unknown record type 'Savings Plans'; use AWS's "
            f"exact names ({ACCEPTED}) or leave it empty for all",
        ),
        (
            "PULSE_RECORD_TYPES",
            " , ",
            "PULSE_RECORD_TYPES is invalid: names no record type; leave it empty to write all "
            "of them",
        ),
        (
            "AWS_REGION",
            "us-east1",
            "AWS_REGION is invalid: unknown AWS region 'us-east1'; use one such as us-east-1 or "
            "eu-central-1",
        ),
        (
            "PULSE_DB_CONNECT_TIMEOUT_SECONDS",
            "1",
            "PULSE_DB_CONNECT_TIMEOUT_SECONDS is invalid: must be a whole number of seconds, "
            "at least 2",
        ),
        (
            "PULSE_DB_STATEMENT_TIMEOUT_SECONDS",
            "5m",
            "PULSE_DB_STATEMENT_TIMEOUT_SECONDS is invalid: must be a whole number of seconds, "
            "at least 1",
        ),
    ],
)
def test_an_invalid_setting_fails_the_load_with_one_sentence_and_no_secret(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingError) as error:
        defs()

    assert str(error.value) == message
    assert "s3cret" not in str(error.value) and "pw@db" not in str(error.value)


def test_max_pages_is_an_int_setting_read_when_the_run_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULSE_MAX_PAGES", " 500 ")

    assert field_values(defs(), "settings")["max_pages"] == ("EnvVar", "PULSE_MAX_PAGES")
    assert CostSettings(max_pages=" 500 ").max_pages == 500  # what the run start validates


def test_record_types_are_awss_exact_names() -> None:
    chosen = CostSettings(record_types="Usage, Savings Plan Covered Usage,Usage")
    assert chosen.record_type_set() == {"Usage", "Savings Plan Covered Usage"}
    assert CostSettings().record_type_set() is None


def test_without_database_url_a_run_refuses_to_start_and_writes_no_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    job = defs().resolve_job_def("refresh_ecb_rates")

    with (
        dg.instance_for_test() as instance,
        pytest.raises(
            dg.DagsterInvalidConfigError,
            match='environment variable "DATABASE_URL" which is not set',
        ),
    ):
        job.execute_in_process(instance=instance)

    assert list(tmp_path.rglob("*.db")) == []


def test_every_setting_has_a_row_in_the_configuration_table_of_docs_operations() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    table = page.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| `")}
    for setting in SETTINGS:
        assert f"`{setting.variable}`" in rows, setting.variable
        row = next(
            line for line in table.splitlines() if line.startswith(f"| `{setting.variable}`")
        )
        assert f"`{setting.resource}.{setting.field}`" in row, setting.variable


def test_every_default_is_one_its_own_setting_accepts_and_the_ui_shows_it() -> None:
    """The defaults are production's: the Resources page shows each with its description, and
    each passes the parser a value from the environment would."""
    for setting in SETTINGS:
        field = RESOURCES[setting.resource].model_fields[setting.field]
        assert field.description == setting.description and setting.description, setting
        if setting.required:
            assert field.is_required(), setting.variable
            continue
        assert field.default == setting.default, setting.variable
        if setting.default not in (None, ""):
            assert setting.parse(str(setting.default)) == setting.default, setting.variable


def run_failure(result: dg.ExecuteInProcessResult) -> list[str]:
    """The messages of a failed run's error and of each error that caused it."""
    data = result.get_run_failure_event().event_specific_data
    error = getattr(data, "error", None)
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return messages


@pytest.mark.parametrize(
    ("job", "variable", "valid", "invalid"),
    [
        ("refresh_ecb_rates", "PULSE_ECB_HISTORY_URL", "bundled", "http://mirror.example/e.zip"),
        ("refresh_ecb_rates", "PULSE_DB_CONNECT_TIMEOUT_SECONDS", "5", "1"),
        ("write_sync_status", "PULSE_ALERT_SMTP_TO", "ops@example.com", "ops"),
        ("write_sync_status", "PULSE_ALERT_WEBHOOK_URL", "https://hooks.example/T/B/token", "x"),
    ],
)
def test_a_run_whose_environment_differs_fails_with_the_sentence_the_load_gives(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    job: str,
    variable: str,
    valid: str,
    invalid: str,
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'pulse.db'}")
    monkeypatch.setenv("PULSE_ALERT_SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv(variable, valid)
    loaded = defs()
    monkeypatch.setenv(variable, invalid)
    with pytest.raises(SettingError) as load:
        defs()
    config = {"ops": {"write_cloud_account_status": {"config": {"run_ids": []}}}}

    with dg.instance_for_test() as instance:
        result = loaded.resolve_job_def(job).execute_in_process(
            instance=instance,
            run_config=config if job == "write_sync_status" else None,
            raise_on_error=False,
        )
        logged = " ".join(str(entry) for entry in instance.all_logs(result.run_id))

    assert not result.success and result.get_step_success_events() == []
    messages = run_failure(result)
    assert messages[-1].strip().endswith(f"SettingError: {load.value}")
    assert str(load.value) in logged  # the event log holds the sentence, and no secret
    assert "hunter2" not in logged and "token" not in logged
