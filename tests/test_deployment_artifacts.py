"""Deployment artefacts (deploy/, config/production.example.toml) are what docs/deployment.md says they are.

Neither helm nor kubeconform is installable from the registries CI reaches, so this is the lint: every YAML parses,
each Kubernetes object has the fields its kind needs, the probes, security context, autoscaler, disruption budget,
Service and Secret references agree with each other and with the production configuration, and that configuration
loads with cds_hooks.settings.load_settings (and builds the app) given its secrets from the environment. When
`kubectl` is on the PATH the kustomizations are rendered too (otherwise that check skips and says so), and every object
is checked against the Kubernetes OpenAPI schemas (strict) by the `kubernetes-validate` package, a test dependency.
The Dockerfile is read, not built (building needs base images from a registry CI does not reach).
"""

from __future__ import annotations

import copy
import http.server
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from cds_hooks.settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "durable-spool"
DOCKERFILE = DEPLOY / "Dockerfile"
PROD_CONFIG = ROOT / "config" / "production.example.toml"
SECRET_ENV = {
    "CDS_ONNX_STORE__HMAC_SECRET": "a-test-only-secret-of-32-characters!",
    "CDS_ONNX_STORE__URL": "postgresql+psycopg://cds_onnx:pw@db.internal:5432/cds_onnx",
    "CDS_ONNX_AUTH__REPLAY_CACHE_URL": "rediss://:pw@redis.internal:6380/0",
}
NEEDS_SPEC = {"Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _objects() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in _docs(path):
            if doc.get("kind") != "Kustomization":
                out.append((path, doc))
    return out


def _one(folder: Path, kind: str) -> dict[str, Any]:
    found = [doc for path, doc in _objects() if path.parent == folder and doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in {folder.relative_to(ROOT)}, found {len(found)}"
    return found[0]


def _workloads() -> list[dict[str, Any]]:
    return [_one(BASE, "Deployment"), _one(OVERLAY, "StatefulSet")]


@pytest.fixture()
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CDS_ONNX_"):
            monkeypatch.delenv(name)
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)


# ---- YAML and kustomize --------------------------------------------------------------------------------------------

def test_every_yaml_parses_and_every_object_has_the_fields_of_its_kind() -> None:
    objects = _objects()
    assert {doc["kind"] for _, doc in objects} >= NEEDS_SPEC | {"ServiceAccount"}
    for path, doc in objects:
        where = f"{path.relative_to(ROOT)} {doc.get('kind')}"
        assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], where
        assert isinstance(doc.get("kind"), str) and doc["kind"], where
        assert isinstance(doc.get("metadata", {}).get("name"), str), f"{where}: metadata.name"
        assert "namespace" not in doc["metadata"], f"{where}: the namespace is the deployer's choice (kustomize)"
        if doc["kind"] in NEEDS_SPEC:
            assert isinstance(doc.get("spec"), dict) and doc["spec"], f"{where}: spec"
        assert doc["kind"] != "Secret", f"{where}: no Secret with values in the repository"


def test_kustomizations_name_files_that_exist() -> None:
    for folder in (BASE, OVERLAY):
        kustomization = _docs(folder / "kustomization.yaml")[0]
        assert kustomization["kind"] == "Kustomization"
        for resource in kustomization.get("resources", []):
            assert (folder / resource).exists(), f"{folder.name}/kustomization.yaml: {resource} does not exist"
        for generator in kustomization.get("configMapGenerator", []):
            for file in generator.get("files", []):
                assert (folder / file.split("=")[-1]).is_file(), file


def test_the_overlay_swaps_the_deployment_for_a_statefulset_and_retargets_the_autoscaler() -> None:
    kustomization = _docs(OVERLAY / "kustomization.yaml")[0]
    patches = [yaml.safe_load(p["patch"]) for p in kustomization["patches"]]
    delete = [p for p in patches if isinstance(p, dict) and p.get("$patch") == "delete"]
    assert delete and delete[0]["kind"] == "Deployment" and delete[0]["metadata"]["name"] == "cds-onnx"
    ops = [op for p in patches if isinstance(p, list) for op in p]
    assert {"op": "replace", "path": "/spec/scaleTargetRef/kind", "value": "StatefulSet"} in ops
    sts = _one(OVERLAY, "StatefulSet")
    assert sts["metadata"]["name"] == _one(BASE, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"]
    headless = _one(OVERLAY, "Service")
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"] and headless["spec"]["clusterIP"] == "None"
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    assert "spool" in claims and "spool" not in {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}


def _kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomizations were checked file by file only")
    done = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.mark.parametrize("folder", [BASE, OVERLAY], ids=["base", "durable-spool"])
def test_kustomize_renders(folder: Path) -> None:
    rendered = _kustomize(folder)
    kinds = sorted(d["kind"] for d in rendered)
    workload = "Deployment" if folder == BASE else "StatefulSet"
    assert workload in kinds and ("StatefulSet" if folder == BASE else "Deployment") not in kinds
    config_map = next(d for d in rendered if d["kind"] == "ConfigMap")
    pod = next(d for d in rendered if d["kind"] == workload)["spec"]["template"]["spec"]
    assert {"configMap": {"name": config_map["metadata"]["name"]}}.items() <= next(
        v for v in pod["volumes"] if v["name"] == "config").items()
    assert tomllib.loads(config_map["data"]["config.toml"]) == tomllib.loads(PROD_CONFIG.read_text())
    hpa = next(d for d in rendered if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == workload
    _schema_valid(rendered, f"kustomize {folder.relative_to(ROOT)}")  # the generated ConfigMap and the patches too


def _schema_valid(docs: list[dict[str, Any]], where: str) -> None:
    import kubernetes_validate  # a test dependency (pyproject.toml): CI always checks the schemas

    for doc in docs:
        try:
            kubernetes_validate.validate(doc, "1.30.0", strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")


def test_objects_match_the_kubernetes_schemas() -> None:
    for path, doc in _objects():
        _schema_valid([doc], str(path.relative_to(ROOT)))


def test_a_field_the_schema_does_not_know_is_refused() -> None:
    deployment = copy.deepcopy(_one(BASE, "Deployment"))
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGett"] = probe.pop("httpGet")  # a typo kubectl apply would reject
    with pytest.raises(pytest.fail.Exception, match="httpGett"):
        _schema_valid([deployment], "typo")


# ---- the pod ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("index", [0, 1], ids=["Deployment", "StatefulSet"])
def test_pod_probes_security_resources_and_volumes(index: int) -> None:
    workload = _workloads()[index]
    spec = workload["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080}

    def probe(name: str) -> tuple[str, Any]:
        get = container[name]["httpGet"]
        assert get["port"] in ("http", 8080)
        return get["path"], get["port"]

    assert probe("readinessProbe")[0] == "/readyz"
    assert probe("livenessProbe")[0] == "/healthz"  # never restarted because the database is down
    assert probe("startupProbe")[0] == "/healthz"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and sc.get("runAsNonRoot", True) is True
    assert not sc.get("privileged", False)
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    settings = tomllib.loads(PROD_CONFIG.read_text())
    spool = Path(settings["store"]["spool_dir"])
    writable = [p for p, m in mounts.items() if not m.get("readOnly")]
    assert sorted(writable) == ["/tmp", "/var/lib/cds-onnx"], "only the spool volume and /tmp are writable"
    assert Path("/var/lib/cds-onnx") in spool.parents
    assert mounts["/etc/cds-onnx"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/etc/cds-onnx"]["name"]]["configMap"]["name"] == "cds-onnx-config"
    assert volumes["tmp"]["emptyDir"]["medium"] == "Memory"
    if workload["kind"] == "Deployment":  # the emptyDir trade-off is written down where it is made
        assert "emptyDir" in volumes["spool"]
        assert "relies on PostgreSQL" in (BASE / "deployment.yaml").read_text().replace("\n# ", " ")
    # Secret references: every variable names a real setting, and the required secrets are there
    env = {e["name"]: e for e in container["env"]}
    assert {"CDS_ONNX_STORE__HMAC_SECRET", "CDS_ONNX_STORE__URL"} <= set(env)
    for name, entry in env.items():
        section, key = name.removeprefix("CDS_ONNX_").lower().split("__")
        section_model = Settings.model_fields[section].annotation
        assert key in section_model.model_fields, f"{name} names no setting"
        assert "secretKeyRef" in entry["valueFrom"], f"{name} should come from a Secret"
    assert env["CDS_ONNX_AUTH__REPLAY_CACHE_URL"]["valueFrom"]["secretKeyRef"].get("optional") is True


def test_autoscaler_disruption_budget_and_service_point_at_the_pods() -> None:
    deployment = _one(BASE, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = _one(BASE, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment",
                                                                      deployment["metadata"]["name"])
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    pdb = _one(BASE, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "a drain must be able to evict a pod"
    for folder in (BASE, OVERLAY):
        service = _one(folder, "Service")
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert all(p["targetPort"] in ("http", 8080) for p in service["spec"]["ports"])
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == _one(BASE, "ServiceAccount")["metadata"][
        "name"]


# ---- the production configuration ------------------------------------------------------------------------------------

def test_mounted_config_is_the_production_example() -> None:
    assert tomllib.loads((BASE / "config.toml").read_text()) == tomllib.loads(PROD_CONFIG.read_text())


def test_production_config_loads_with_secrets_from_the_environment(secret_env: None) -> None:
    settings = load_settings(PROD_CONFIG)
    assert settings.store.hmac_secret == SECRET_ENV["CDS_ONNX_STORE__HMAC_SECRET"]
    assert settings.store_url() == SECRET_ENV["CDS_ONNX_STORE__URL"]
    assert settings.auth.replay_cache_url == SECRET_ENV["CDS_ONNX_AUTH__REPLAY_CACHE_URL"]
    assert settings.auth.enabled and settings.auth.clients
    assert not settings.preview.enabled
    assert settings.server.host == "0.0.0.0" and settings.server.port == 8080
    assert settings.server.public_base_url and settings.server.public_base_url.startswith("https://")
    assert settings.models.root.is_absolute() and settings.store.spool_dir.is_absolute()


def test_production_config_trusts_no_public_key_and_holds_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tomllib.loads(PROD_CONFIG.read_text())
    assert "hmac_secret" not in raw["store"] and "replay_cache_url" not in raw["auth"]
    assert urlsplit(raw["store"]["url"]).password is None, "the store URL's password comes from the Secret"
    for client in raw["auth"]["clients"]:
        assert not client.get("development_only")
        assert "sandbox.cds-hooks.org" not in str(client)
        assert not any(a.startswith("HS") or a == "none" for a in client.get("algorithms", []))
    assert "sandbox.cds-hooks.org" not in str(raw.get("cors", {}))
    for name in list(os.environ):
        if name.startswith("CDS_ONNX_"):
            monkeypatch.delenv(name)
    # without the Secret, start-up stops: at validation, or (while the empty default is not validated) when the
    # store opens at start-up
    from store.store import Store

    try:
        settings = load_settings(PROD_CONFIG)
    except ConfigError as exc:
        assert "hmac_secret" in str(exc)
    else:
        with pytest.raises(ValueError, match="hmac_secret"):
            Store(settings.store_url(), settings.store.hmac_secret.encode())


def test_production_config_builds_the_app_with_the_shipped_models(secret_env: None,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from cds_hooks.app import create_app

    monkeypatch.setenv("CDS_ONNX_MODELS__ROOT", str(ROOT / "models"))  # /app/models inside the image
    app = create_app(load_settings(PROD_CONFIG))  # models load and service-naming settings are checked here
    paths = {getattr(r, "path", None) for r in app.routes}
    assert {"/readyz", "/healthz", "/cds-services"} <= paths
    assert not any(str(p).startswith("/preview") for p in paths)


# ---- the Dockerfile --------------------------------------------------------------------------------------------------

def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    text = re.sub(r"<<'PY'.*?^PY$", "", text, flags=re.S | re.M)  # heredoc bodies are not instructions
    logical = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_non_root_and_read_only_friendly() -> None:
    ins = _instructions()
    stages = [i for i, (word, _) in enumerate(ins) if word == "FROM"]
    assert len(stages) >= 2, "multi-stage"
    final = ins[stages[-1]:]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "a numeric non-root uid (runAsNonRoot can verify it)"
    pod = _one(BASE, "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert int(uid) == pod["runAsUser"]
    assert ("VOLUME", '["/var/lib/cds-onnx"]') in final
    assert not any(word == "RUN" for word, _ in final[final.index(next(i for i in final if i[0] == "USER")):]), \
        "nothing runs as root after USER, and nothing is installed at run time"
    entry = [rest for word, rest in final if word == "ENTRYPOINT"][-1]
    assert yaml.safe_load(entry) == ["cds-onnx", "serve", "--config", "/etc/cds-onnx/config.toml"]
    copies = " ".join(rest for word, rest in ins if word == "COPY")
    assert "config/production.example.toml /etc/cds-onnx/config.toml" in copies
    assert "models /app/models" in copies
    assert tomllib.loads(PROD_CONFIG.read_text())["models"]["root"] == "/app/models"
    assert "development.toml" not in DOCKERFILE.read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    assert "development" not in ignore and "!config/production.example.toml" in ignore
    for word, rest in ins:  # every COPY from the build context names something in the repository
        if word == "COPY" and "--from" not in rest:
            for source in shlex.split(rest)[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


class _Ready(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("status,healthy", [(200, True), (503, False)])
def test_healthcheck_asks_readyz(status: int, healthy: bool) -> None:
    check = [rest for word, rest in _instructions() if word == "HEALTHCHECK"]
    assert len(check) == 1 and "/readyz" in check[0]
    command = check[0].split(" CMD ", 1)[1]
    handler = type("Handler", (_Ready,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        python_dir = str(Path(sys.executable).parent)
        env = {"PATH": f"{python_dir}:/usr/bin:/bin", "CDS_ONNX_SERVER__PORT": str(server.server_address[1])}
        done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert (done.returncode == 0) is healthy, done.stderr
