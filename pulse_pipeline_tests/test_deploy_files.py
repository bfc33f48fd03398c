"""deploy/ agrees with itself and with the code: the compose file, the Helm values, the Dockerfile
and the compose dagster.yaml name the same module, port, image, network, settings and limits;
the dagster.yaml loads as an instance; no UI or gRPC port is published beyond loopback except
through the authenticating proxy. (Containers cannot run here: docs/operations.md "What was run
here and what was only read" says which.)"""

import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from sqlalchemy.engine import make_url

from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.settings import SETTINGS
from pulse_pipeline_dev.processes import LOCATION, PROD_WORKSPACE, ROOT

DEPLOY = ROOT / "deploy"
# A profile means a mounted ~/.aws; an empty AWS_PROFILE breaks boto3, so it is not passed on.
NOT_IN_CONTAINERS = {"AWS_PROFILE"}
DAGSTER_PG = ["DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD"]


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dockerfile_cmd() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)
    return list(yaml.safe_load(cmd))


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_the_image_serves_the_code_location_as_a_non_root_user() -> None:
    cmd = dockerfile_cmd()
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert (option(cmd, "-h"), option(cmd, "-p")) == ("0.0.0.0", "4000")
    assert option(cmd, "--location-name") == LOCATION
    module = __import__(option(cmd, "-m"), fromlist=[option(cmd, "-a")])
    assert getattr(module, option(cmd, "-a")) is defs
    text = (DEPLOY / "Dockerfile").read_text()
    assert "EXPOSE 4000" in text
    (user,) = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert user not in ("root", "0")
    # Production dependencies from the lock only, never the dev group.
    syncs = re.findall(r"uv sync ([^&\n]*)", text)
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs)


@pytest.fixture
def deploy_instance_home(
    dagster_postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    url = make_url(dagster_postgres_url)
    for name, value in zip(
        [*DAGSTER_PG, "DAGSTER_PG_DB"],
        [url.host, str(url.port or 5432), url.username, "unused", url.database],
        strict=True,
    ):
        monkeypatch.setenv(name, value or "")
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    return tmp_path


def test_compose_dagster_yaml_loads_and_adds_only_the_docker_run_launcher(
    deploy_instance_home: Path,
) -> None:
    with dg.DagsterInstance.from_config(str(deploy_instance_home)) as instance:
        assert type(instance.run_launcher).__name__ == "DockerRunLauncher"
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 5
        instance.get_runs(limit=1)  # the storage answers
    deploy = load(DEPLOY / "dagster.yaml")
    launcher = deploy.pop("run_launcher")
    assert launcher["module"] == "dagster_docker"  # public, as every module an instance names
    assert deploy == load(ROOT / "dagster.yaml")
    compose = load(DEPLOY / "docker-compose.yaml")
    assert launcher["config"]["network"] == compose["networks"]["pulse"]["name"]


def test_every_setting_reaches_the_runs_containers() -> None:
    """A run reads its settings when it starts, so its container must get each of them."""
    passed_on = load(DEPLOY / "dagster.yaml")["run_launcher"]["config"]["env_vars"]
    settings = {s.variable for s in SETTINGS} - NOT_IN_CONTAINERS
    missing = settings - set(passed_on)
    assert not missing, f"add {sorted(missing)} to deploy/dagster.yaml env_vars and pulse.env"
    example = re.findall(r"^([A-Z_]+)=", (DEPLOY / "pulse.env.example").read_text(), re.M)
    # Every variable passed on must be set in the daemon's environment (pulse.env or compose).
    assert set(passed_on) == set(example) | {*DAGSTER_PG, "DAGSTER_PG_DB"}


def test_compose_publishes_the_ui_on_loopback_and_nothing_else_but_the_proxy() -> None:
    compose = load(DEPLOY / "docker-compose.yaml")
    services = compose["services"]
    published = {name: s.get("ports", []) for name, s in services.items()}
    assert published.pop("proxy") == ["80:80", "443:443"]
    assert published.pop("webserver") == ["127.0.0.1:3000:3000"]
    assert published.pop("webserver-read-only") == ["127.0.0.1:3001:3000"]
    assert all(not ports for ports in published.values()), published  # code server, PostgreSQL
    assert "--read-only" in services["webserver-read-only"]["command"]
    # Each UI behind the proxy asks for a login first.
    sites = re.findall(r"^\{\$\w+\} \{\n(.*?)^\}", (DEPLOY / "Caddyfile").read_text(), re.M | re.S)
    upstreams = sorted(re.findall(r"reverse_proxy (\S+)", "".join(sites)))
    assert upstreams == ["webserver-read-only:3000", "webserver:3000"]
    assert all(site.index("basic_auth") < site.index("reverse_proxy") for site in sites)


def test_compose_processes_share_one_image_and_reach_the_code_server() -> None:
    compose = load(DEPLOY / "docker-compose.yaml")
    services = compose["services"]
    image = services["code-server"]["image"]
    assert services["code-server"]["environment"]["DAGSTER_CURRENT_IMAGE"] == image
    assert "command" not in services["code-server"]  # the image's CMD: the code server
    for name in ("daemon", "webserver", "webserver-read-only"):
        service = services[name]
        assert service["image"] == image
        assert option(service["command"], "-w") == f"/opt/pulse/{PROD_WORKSPACE.name}"
        assert service["environment"]["PULSE_CODE_SERVER_HOST"] == "code-server"
        assert service["environment"]["PULSE_CODE_SERVER_PORT"] == option(dockerfile_cmd(), "-p")
    assert (
        f"COPY {PROD_WORKSPACE.name} ./{PROD_WORKSPACE.name}" in (DEPLOY / "Dockerfile").read_text()
    )
    (server,) = [entry["grpc_server"] for entry in load(PROD_WORKSPACE)["load_from"]]
    assert server["location_name"] == LOCATION
    assert server["host"] == {"env": "PULSE_CODE_SERVER_HOST"}


def test_helm_values_match_the_image_and_the_instance_limits() -> None:
    values = load(DEPLOY / "helm" / "values.yaml")
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    cmd = dockerfile_cmd()
    assert deployment["codeServerArgs"] == cmd[cmd.index("-m") :]
    assert str(deployment["port"]) == option(cmd, "-p")
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert deployment["podSecurityContext"]["runAsUser"] != 0
    (server,) = values["dagsterWebserver"]["workspace"]["servers"]
    assert server == {"host": deployment["name"], "port": deployment["port"], "name": LOCATION}
    assert values["dagsterWebserver"]["enableReadOnly"] is True
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"

    instance = load(ROOT / "dagster.yaml")
    pools, runs = instance["concurrency"]["pools"], instance["concurrency"]["runs"]
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert concurrency["pools"] == {
        "defaultLimit": pools["default_limit"],
        "opGranularityRunBuffer": pools["op_granularity_run_buffer"],
    }
    assert concurrency["runs"] == {
        "maxConcurrentRuns": runs["max_concurrent_runs"],
        "tagConcurrencyLimits": runs["tag_concurrency_limits"],
    }
    scheme = instance["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["postgresql"]["postgresqlScheme"] == scheme


def webserver_commands(path: Path) -> list[list[str]]:
    """The webserver commands (`dagster-webserver`, `dagster dev`) of a page's ```sh blocks."""
    code = "".join(re.findall(r"^```sh\n(.*?)^```", path.read_text(), re.M | re.S))
    return [
        shlex.split(line.strip().removesuffix("\\"))
        for line in code.replace("\\\n", " ").splitlines()
        if re.search(r"dagster-webserver |dagster dev ", line)
    ]


def test_no_command_of_ours_binds_the_ui_beyond_loopback() -> None:
    """The README, docs/, `make dev` and the demo bind 127.0.0.1; only deploy/ binds 0.0.0.0,
    inside containers whose ports are published on 127.0.0.1 (see the compose test)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for path in [*pages, ROOT / "Makefile", *(ROOT / "pulse_pipeline_dev").glob("*.py")]:
        assert "0.0.0.0" not in path.read_text(), path
    assert webserver_commands(ROOT / "README.md"), "the README names the webserver's command"
    operations = webserver_commands(ROOT / "docs" / "operations.md")
    assert any("--read-only" not in command for command in operations), "the operators' webserver"
    assert any("--read-only" in command for command in operations), "the read-only webserver"
    for path in pages:
        for command in webserver_commands(path):
            assert option(command, "-h") == "127.0.0.1", (path.name, command)
