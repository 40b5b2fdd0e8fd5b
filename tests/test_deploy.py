"""Deployment files: Dockerfile, compose, Kubernetes, Prometheus/Grafana, systemd, client configs.

These check the files statically (no Docker engine, no cluster): they parse, they agree with each
other and with the mirror (console script, config schema, ports, paths, metric names), and the
Prometheus files pass `promtool`. With CI=true a missing `promtool` fails; otherwise it skips.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pytest_aiohttp import AiohttpClient

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
METRICS_FILE = DEPLOY / "metrics.txt"
DASHBOARD = DEPLOY / "grafana" / "mirror-dashboard.json"
PROMETHEUS = DEPLOY / "prometheus"
KUBERNETES = DEPLOY / "kubernetes"
CLIENTS = DEPLOY / "clients"
CONTAINER_CONFIG = DEPLOY / "container" / "config.toml"
SYSTEMD_UNIT = DEPLOY / "systemd" / "mirror.service"

CONFIG_IN_IMAGE = "/etc/mirror/config.toml"
DATA_IN_IMAGE = "/var/lib/mirror"

METRIC = re.compile(r"\bmirror_[a-z_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Grafana's variables, replaced by something PromQL parses.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$instance": ".*",
    "$upstream": ".*",
    "$job": ".*",
}


# -- helpers ----------------------------------------------------------------------------------


def known_metrics() -> list[str]:
    return [line.strip() for line in METRICS_FILE.read_text().splitlines() if line.strip()]


def metric_names(expr: str) -> set[str]:
    """The mirror_* metrics a PromQL expression uses, histogram suffixes stripped."""
    names = set()
    for name in METRIC.findall(expr):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix):
                name = name.removesuffix(suffix)
                break
        names.add(name)
    return names


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing (apt-get install prometheus)")
        pytest.skip("promtool is missing (apt-get install prometheus)")
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as file:
        return [doc for doc in yaml.safe_load_all(file) if doc is not None]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def dashboard_exprs() -> list[str]:
    data = dashboard()
    exprs = [
        target["expr"]
        for panel in dashboard_panels(data["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    for variable in data.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query":
            exprs.append(query["query"] if isinstance(query, dict) else str(query))
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def kubernetes_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        objects.extend(load_yaml_documents(path))
    return objects


def kubernetes_object(kind: str) -> dict[str, Any]:
    found = [obj for obj in kubernetes_objects() if obj.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def configmap_toml() -> str:
    data: str = kubernetes_object("ConfigMap")["data"]["config.toml"]
    return data


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def dockerfile_values(keyword: str) -> list[str]:
    return [rest for key, rest in dockerfile_instructions() if key == keyword]


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern that matches decides; `!` re-includes."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        candidates = [path] + [
            "/".join(path.split("/")[:index]) for index in range(1, path.count("/") + 1)
        ]
        for candidate in candidates:
            matches = fnmatch.fnmatchcase(candidate, pattern)
            if pattern.startswith("**/"):
                tail = pattern.removeprefix("**/")
                matches = matches or fnmatch.fnmatchcase(candidate.rsplit("/", 1)[-1], tail)
            if matches:
                excluded = not negate
                break
    return excluded


def systemd_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file, keys in order (a key may repeat, as systemd allows)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path}: key outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not key=value: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def unit_value(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str | None:
    values = [value for name, value in unit.get(section, []) if name == key]
    return values[-1] if values else None


# -- metrics list -----------------------------------------------------------------------------


def test_metrics_list_is_one_unique_name_per_line() -> None:
    names = known_metrics()
    assert names, "deploy/metrics.txt is empty"
    assert len(names) == len(set(names)), "a metric is listed twice"
    for name in names:
        assert re.fullmatch(r"mirror_[a-z_]+", name), name
        assert not name.endswith(HISTOGRAM_SUFFIXES), f"{name}: list histograms without suffix"


async def test_scrape_exports_every_listed_metric(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Fails until the mirror serves /metrics with every name in deploy/metrics.txt."""
    from mirror.config import parse_config
    from mirror.web.app import create_app

    app = create_app(parse_config({"storage": {"path": str(tmp_path / "data")}}))
    client = await aiohttp_client(app)
    response = await client.get("/metrics")
    assert response.status == 200, f"GET /metrics answered {response.status}"
    text = await response.text()
    exposed: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("# TYPE ", "# HELP ")):
            exposed.add(line.split()[2])
        elif line and not line.startswith("#"):
            exposed.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    missing = [
        name
        for name in known_metrics()
        if name not in exposed and not any(name + s in exposed for s in HISTOGRAM_SUFFIXES)
    ]
    assert not missing, f"/metrics lacks {missing}"


# -- Grafana ----------------------------------------------------------------------------------


def test_dashboard_is_a_grafana_dashboard() -> None:
    data = dashboard()
    assert isinstance(data["schemaVersion"], int) and data["schemaVersion"] >= 30
    assert data["title"] and data["uid"]
    panels = list(dashboard_panels(data["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], f"panel {panel['title']!r} has no query"
            for target in panel["targets"]:
                assert target["expr"].strip() and target["refId"], panel["title"]


def test_dashboard_uses_only_listed_metrics() -> None:
    known = set(known_metrics())
    used = set().union(*(metric_names(expr) for expr in dashboard_exprs()))
    assert used, "the dashboard queries no mirror_* metric"
    assert used <= known, f"not in deploy/metrics.txt: {sorted(used - known)}"


def test_dashboard_covers_the_operators_questions() -> None:
    exprs = dashboard_exprs()
    used = set().union(*(metric_names(expr) for expr in exprs))
    for name in (
        "mirror_cache_requests_total",  # hit ratio
        "mirror_served_bytes_total",  # cache vs fill
        "mirror_upstream_bytes_total",
        "mirror_upstream_requests_total",
        "mirror_upstream_errors_total",
        "mirror_upstream_ratelimit_remaining",
        "mirror_storage_bytes",
        "mirror_storage_limit_bytes",
        "mirror_fills_inflight",
    ):
        assert name in used, f"no panel shows {name}"
    assert any(
        "histogram_quantile" in expr and "mirror_http_request_duration_seconds_bucket" in expr
        for expr in exprs
    ), "no request latency quantile"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    tool = promtool()
    rules = []
    for index, expr in enumerate(dashboard_exprs()):
        if expr.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(tool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_matches_the_dashboard_and_compose() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    providers = yaml.safe_load((provisioning / "dashboards" / "mirror.yml").read_text())
    (provider,) = providers["providers"]
    folder = provider["options"]["path"]
    grafana_mounts = compose["services"]["grafana"]["volumes"]
    assert any(
        mount.startswith("./grafana/mirror-dashboard.json:" + folder + "/")
        for mount in grafana_mounts
    ), f"the dashboard is not mounted under the provider's path {folder}"
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"


# -- Prometheus -------------------------------------------------------------------------------


def test_alerts_use_only_listed_metrics() -> None:
    known = set(known_metrics())
    used = set().union(*(metric_names(str(rule["expr"])) for rule in alert_rules()))
    assert used <= known, f"not in deploy/metrics.txt: {sorted(used - known)}"


def test_alerts_cover_the_failure_modes() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for name in (
        "MirrorDown",
        "MirrorUpstreamRateLimitLow",
        "MirrorUpstreamErrors",
        "MirrorStorageNearLimit",
        "MirrorServingStale",
    ):
        assert name in rules, f"no {name} alert"
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert rule["annotations"]["summary"], name


def test_alert_rules_pass_promtool_check() -> None:
    result = run(promtool(), "check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_unit_tests_pass() -> None:
    result = run(promtool(), "test", "rules", "alerts_test.yml", cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_passes_promtool_check() -> None:
    # rule_files are relative to the config file, so alerts.yml is checked along with it.
    result = run(promtool(), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_prometheus_scrapes_the_compose_mirror() -> None:
    from mirror.config import parse_config

    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "mirror"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert targets == ["mirror:5001"]
    container = parse_config(tomllib.loads(CONTAINER_CONFIG.read_text()))
    assert container.admin.listen == ("0.0.0.0", 5001)
    down = next(rule for rule in alert_rules() if rule["alert"] == "MirrorDown")
    assert 'job="mirror"' in down["expr"]


# -- compose ----------------------------------------------------------------------------------


def test_compose_services_and_mounts() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"mirror", "prometheus", "grafana"} <= services.keys()
    mirror = services["mirror"]
    assert (DEPLOY / mirror["build"]["context"] / mirror["build"]["dockerfile"]).is_file()
    assert "5000:5000" in mirror["ports"]
    assert "5001" in mirror["expose"] and not any("5001" in port for port in mirror["ports"])
    named = compose.get("volumes", {})
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source, target = mount.split(":")[:2]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
            assert target.startswith("/"), mount
    mirror_mounts = {m.split(":")[1]: m.split(":")[0] for m in mirror["volumes"]}
    assert mirror_mounts[CONFIG_IN_IMAGE] == "./container/config.toml"
    assert DATA_IN_IMAGE in mirror_mounts
    # Debian's docker-compose 1.29 rejects a top-level `name:`; the project is named with -p.
    assert "name" not in compose
    assert "-p mirror" in (DEPLOY / "docker-compose.yml").read_text()
    prometheus = services["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_compose_file_is_accepted_by_debians_docker_compose() -> None:
    """Debian ships docker-compose 1.29, which rejects keys Compose 2 knows (`name:`)."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is missing (Debian: apt-get install docker-compose)")
    result = run(tool, "-p", "mirror", "-f", "docker-compose.yml", "config", "-q", cwd=DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_mounts_the_tls_files_where_the_container_config_names_them() -> None:
    from mirror.config import parse_config

    server = tomllib.loads(CONTAINER_CONFIG.read_text())["server"]
    cert, key = PurePosixPath(server["tls_cert"]), PurePosixPath(server["tls_key"])
    assert parse_config(tomllib.loads(CONTAINER_CONFIG.read_text())).server.tls_cert is not None
    assert cert.parent == key.parent, "one folder for both: one mount"
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = [m.split(":") for m in compose["services"]["mirror"]["volumes"]]
    (source,) = [m[0] for m in mounts if m[1] == str(cert.parent)]
    assert [m[2:] for m in mounts if m[1] == str(cert.parent)] == [["ro"]]
    folder = DEPLOY / source
    assert folder.is_dir() and (folder / "README.md").is_file()
    readme = (folder / "README.md").read_text()
    assert f"`{cert.name}`" in readme and f"`{key.name}`" in readme
    # The real files never land in git: the folder ignores everything but its README.
    ignored = (folder / ".gitignore").read_text().split()
    assert "*" in ignored and "!README.md" in ignored
    # The image's HEALTHCHECK probes the admin port, plain HTTP: TLS on 5000 does not break it.
    container = parse_config(tomllib.loads(CONTAINER_CONFIG.read_text()))
    assert container.admin.listen is not None
    (healthcheck,) = dockerfile_values("HEALTHCHECK")
    assert f"http://127.0.0.1:{container.admin.listen[1]}/healthz" in healthcheck


# -- Kubernetes -------------------------------------------------------------------------------


def test_kubernetes_manifests_have_the_expected_kinds() -> None:
    kinds = [obj["kind"] for obj in kubernetes_objects()]
    for kind in ("Deployment", "Service", "PersistentVolumeClaim", "ConfigMap"):
        assert kind in kinds, f"no {kind}"
    for obj in kubernetes_objects():
        assert obj["apiVersion"] and obj["kind"], obj
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_deployment_probes_ports_volumes_and_security() -> None:
    from mirror.config import parse_config
    from mirror.units import parse_size

    config = parse_config(tomllib.loads(configmap_toml()))
    deployment = kubernetes_object("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = pod["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert config.server.port in ports.values()

    def probe_port(probe: dict[str, Any]) -> int:
        port = probe["httpGet"]["port"]
        return ports[port] if isinstance(port, str) else int(port)

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The probes and Prometheus use the admin port, which the NetworkPolicy keeps in-cluster.
    assert config.admin.listen is not None
    admin_port = config.admin.listen[1]
    assert probe_port(container["livenessProbe"]) == admin_port
    assert probe_port(container["readinessProbe"]) == admin_port
    annotations = spec["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == admin_port
    policy = kubernetes_object("NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= (
        spec["template"]["metadata"]["labels"].items()
    )
    rules = {
        ports[port["port"]]: "from" in rule
        for rule in policy["spec"]["ingress"]
        for port in rule["ports"]
    }
    assert rules == {config.server.port: False, admin_port: True}  # admin: restricted

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False

    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    pvc = kubernetes_object("PersistentVolumeClaim")
    data_volume = volumes[mounts[str(config.storage.path)]]
    assert data_volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    requested = parse_size(pvc["spec"]["resources"]["requests"]["storage"] + "B", "pvc")
    assert 0 < config.storage.max_size < requested, "max_size must leave room on the volume"
    config_volume = volumes[mounts[str(Path(CONFIG_IN_IMAGE).parent)]]
    assert config_volume["configMap"]["name"] == kubernetes_object("ConfigMap")["metadata"]["name"]
    assert container["args"] == ["serve", "--config", CONFIG_IN_IMAGE]

    service = kubernetes_object("Service")
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    (service_port,) = service["spec"]["ports"]
    target = service_port["targetPort"]
    assert (ports[target] if isinstance(target, str) else target) == config.server.port


def test_kubernetes_mounts_the_tls_secret_where_the_configmap_names_the_files() -> None:
    server = tomllib.loads(configmap_toml())["server"]
    cert, key = PurePosixPath(server["tls_cert"]), PurePosixPath(server["tls_key"])
    assert cert.parent == key.parent
    secret = kubernetes_object("Secret")
    assert secret["type"] == "kubernetes.io/tls"
    assert {cert.name, key.name} == set(secret["data"]) == {"tls.crt", "tls.key"}
    pod = kubernetes_object("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    mount = mounts[str(cert.parent)]
    assert mount.get("readOnly") is True
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes[mount["name"]]["secret"]["secretName"] == secret["metadata"]["name"]
    assert (
        secret["metadata"]["namespace"] == kubernetes_object("Deployment")["metadata"]["namespace"]
    )
    # Not under the ConfigMap's mount: a volume nested in a configMap volume is fragile.
    config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert not str(cert.parent).startswith(config_mount["mountPath"] + "/")
    # The probes stay on the admin port (plain HTTP), not on the TLS port.
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"].get("scheme", "HTTP") == "HTTP"
        assert ports[container[probe]["httpGet"]["port"]] != 5000


# -- configs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["container", "configmap"])
def test_deploy_configs_are_accepted_by_the_mirror(source: str) -> None:
    from mirror.config import parse_config

    text = CONTAINER_CONFIG.read_text() if source == "container" else configmap_toml()
    config = parse_config(tomllib.loads(text))
    assert str(config.storage.path) == DATA_IN_IMAGE
    assert config.server.port == 5000
    assert config.upstreams[0].name == "docker.io"


# -- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    from mirror.cli.main import build_parser

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    (entrypoint,) = dockerfile_values("ENTRYPOINT")
    (cmd,) = dockerfile_values("CMD")
    assert json.loads(entrypoint) == ["mirror"] and "mirror" in scripts
    args = build_parser().parse_args(json.loads(cmd))
    assert args.command == "serve"
    assert str(args.config) == CONFIG_IN_IMAGE


def test_dockerfile_stages_user_volume_port_healthcheck() -> None:
    from mirror.config import parse_config

    config = parse_config(tomllib.loads(CONTAINER_CONFIG.read_text()))
    args = dict(value.split("=", 1) for value in dockerfile_values("ARG") if "=" in value)
    froms = [value.split()[0] for value in dockerfile_values("FROM")]
    assert len(froms) >= 2, "expected a build stage and a runtime stage"
    images = {args.get(image.strip("${}"), image) for image in froms}
    assert images == {"python:3.12-slim"}
    (user,) = dockerfile_values("USER")
    assert user.split(":")[0] not in {"root", "0"}
    assert dockerfile_values("VOLUME") == [DATA_IN_IMAGE] == [str(config.storage.path)]
    assert config.admin.listen is not None
    admin_port = config.admin.listen[1]
    assert dockerfile_values("EXPOSE") == [f"{config.server.port} {admin_port}"]
    (healthcheck,) = dockerfile_values("HEALTHCHECK")
    assert f"127.0.0.1:{admin_port}/healthz" in healthcheck and "urllib" in healthcheck
    assert f"127.0.0.1:{config.server.port}/healthz" in healthcheck  # a config without it
    copies = [value.split() for value in dockerfile_values("COPY")]
    assert ["deploy/container/config.toml", CONFIG_IN_IMAGE] in copies


def test_dockerfile_builds_offline_with_either_builder() -> None:
    """Nothing but PYTHON_IMAGE comes from a registry, and the classic builder reads it too
    (tests/test_container_image.py builds it both ways)."""
    text = (ROOT / "Dockerfile").read_text()
    # A `# syntax=` directive makes BuildKit pull its frontend from Docker Hub.
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    runs = dockerfile_values("RUN")
    assert not any(run.startswith("--") for run in runs), "RUN --mount: BuildKit only"
    # Both stages on the same base: the venv's interpreter path is the same in both.
    froms = [value.split()[0] for value in dockerfile_values("FROM")]
    assert set(froms) == {"${PYTHON_IMAGE}"}, froms
    # A wheels/ folder in the context makes pip install from it alone.
    assert any("--no-index --find-links wheels" in run for run in runs)
    copies = [value.split() for value in dockerfile_values("COPY")]
    assert ["--from=build", "/opt/mirror", "/opt/mirror"] in copies
    env = " ".join(dockerfile_values("ENV"))
    assert "PATH=/opt/mirror/bin:" in env


def tracked_files() -> list[str]:
    proc = run("git", "ls-files", cwd=ROOT)
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.skip(f"git ls-files: {proc.stderr.strip()}")
    return proc.stdout.splitlines()


def test_dockerignore_lets_in_exactly_what_the_build_copies() -> None:
    for path in (
        "pyproject.toml",
        "README.md",
        "mirror/__init__.py",
        "mirror/cli.py",
        "deploy/container/config.toml",
        "wheels/aiohttp-3.14.5-cp311-cp311-manylinux2014_x86_64.whl",
    ):
        assert not dockerignore_excludes(path), f"{path} is needed by the build"
    for path in (".venv/bin/python", ".git/HEAD", "data/mirror.db", "tests/conftest.py"):
        assert dockerignore_excludes(path), f"{path} should stay out of the build context"
    assert dockerignore_excludes("mirror/__pycache__/cli.cpython-312.pyc")
    # `COPY . ./` sends the context as .dockerignore leaves it: the package and its metadata,
    # the container config, the optional wheelhouse.
    allowed = ("pyproject.toml", "README.md", "mirror/", "deploy/container/config.toml", "wheels/")
    sent = [path for path in tracked_files() if not dockerignore_excludes(path)]
    assert all(path.startswith(allowed) for path in sent), sent
    assert "mirror/__init__.py" in sent
    for value in dockerfile_values("COPY"):
        parts = value.split()
        if any(part.startswith("--from") for part in parts) or parts[:-1] == ["."]:
            continue
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: missing"
            assert not dockerignore_excludes(source.rstrip("/")), f"COPY {source}: ignored"


# -- systemd ----------------------------------------------------------------------------------


def test_systemd_unit_is_hardened_and_runs_serve() -> None:
    from mirror.cli.main import build_parser

    unit = systemd_unit(SYSTEMD_UNIT)
    exec_start = unit_value(unit, "Service", "ExecStart")
    assert exec_start is not None
    program, *argv = exec_start.replace("${STATE_DIRECTORY}", "/var/lib/mirror").split()
    assert Path(program).name == "mirror"
    args = build_parser().parse_args(argv)
    assert args.command == "serve" and str(args.config) == CONFIG_IN_IMAGE
    assert unit_value(unit, "Service", "DynamicUser") == "yes" or unit_value(
        unit, "Service", "User"
    ) not in {None, "root", "0"}
    expected = {
        "StateDirectory": "mirror",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "RestartPreventExitStatus": "2",
    }
    for key, value in expected.items():
        assert unit_value(unit, "Service", key) == value, key
    assert unit_value(unit, "Install", "WantedBy") == "multi-user.target"


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """Runs where systemd-analyze exists; elsewhere the key checks above stand in for it."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        test_systemd_unit_is_hardened_and_runs_serve()
        return
    # verify insists that ExecStart's program exists: use this venv's console script.
    script = Path(sys.executable).parent / "mirror"
    assert script.exists(), f"{script}: install the package (pip install -e .)"
    text = SYSTEMD_UNIT.read_text().replace("/opt/mirror/bin/mirror", str(script))
    unit = tmp_path / "mirror.service"
    unit.write_text(text)
    result = run(analyze, "verify", str(unit))
    complaints = [line for line in result.stderr.splitlines() if "mirror.service" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


# -- clients ----------------------------------------------------------------------------------


def test_daemon_json() -> None:
    data = json.loads((CLIENTS / "daemon.json").read_text())
    (mirror_url,) = data["registry-mirrors"]
    assert mirror_url.startswith("https://")
    host = mirror_url.removeprefix("https://")
    assert host not in data.get("insecure-registries", []), "verified, not insecure"
    notes = (CLIENTS / "daemon.json.md").read_text()
    assert f"/etc/docker/certs.d/{host}/ca.crt" in notes
    # The plain-HTTP form comes after, as the alternative.
    assert notes.index(f'"https://{host}"') < notes.index(f'"http://{host}"')
    assert f'"insecure-registries": ["{host}"]' in notes


@pytest.mark.parametrize(
    ("registry", "server"),
    [("docker.io", "https://registry-1.docker.io"), ("ghcr.io", "https://ghcr.io")],
)
def test_containerd_hosts_toml(registry: str, server: str) -> None:
    data = tomllib.loads((CLIENTS / "containerd" / registry / "hosts.toml").read_text())
    assert data["server"] == server
    hosts = data["host"]
    assert hosts, "no mirror host"
    for url, host in hosts.items():
        assert url.startswith("https://"), "the TLS form; http:// is the commented alternative"
        assert host["ca"].endswith(".crt"), "the mirror's CA"
        assert set(host["capabilities"]) <= {"pull", "resolve"}, "a mirror cannot take pushes"
    if registry != "docker.io":
        # containerd sends ?ns=<registry>: the mirror needs an upstream of that name.
        from mirror.config import parse_config

        names = [u.name for u in parse_config(tomllib.loads(configmap_toml())).upstreams]
        assert registry in names


def test_podman_and_buildkit_configs() -> None:
    text = (CLIENTS / "podman" / "registries.conf").read_text()
    registries = tomllib.loads(text)
    by_prefix = {entry["prefix"]: entry for entry in registries["registry"]}
    assert by_prefix["docker.io"]["mirror"][0]["location"] == "mirror.internal:5000"
    assert by_prefix["ghcr.io"]["mirror"][0]["location"] == "mirror.internal:5000/ghcr.io"
    for entry in by_prefix.values():
        assert not any(m.get("insecure") for m in entry["mirror"]), "TLS: verified"
    assert "/etc/containers/certs.d/mirror.internal:5000/ca.crt" in text
    buildkit = tomllib.loads((CLIENTS / "buildkit" / "buildkitd.toml").read_text())
    assert buildkit["registry"]["docker.io"]["mirrors"] == ["mirror.internal:5000"]
    mirror = buildkit["registry"]["mirror.internal:5000"]
    assert "http" not in mirror and "insecure" not in mirror
    assert mirror["ca"] == ["/etc/buildkit/mirror-ca.crt"]


# -- docs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        "docs/operations.md",
        "docs/clients.md",
        "docs/airgapped.md",
        "deploy/kubernetes/README.md",
        "deploy/clients/README.md",
        "deploy/clients/daemon.json.md",
        "deploy/README.md",
        "deploy/tls/README.md",
    ],
)
def test_doc_links_resolve(doc: str) -> None:
    path = ROOT / doc
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        assert (path.parent / target.split("#")[0]).exists(), f"{doc}: broken link {target}"
