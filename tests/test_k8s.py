"""deploy/k8s, validated offline: the manifests ``kubectl apply -k deploy/k8s``
would apply, checked against the Kubernetes API schemas and against the
gateway's own config loader, routes and metrics.

- :func:`render` is a small kustomize: it reads ``kustomization.yaml``
  (``resources`` and ``namespace`` only; any other key fails the test, so a
  generator or patch added later must be taught to it first) and returns the
  objects with kustomize's namespace applied.
- ``kubernetes-validate`` (its JSON schemas ship in the wheel) validates every
  object strictly (unknown fields are errors) against :data:`K8S_VERSIONS`.
  The ServiceMonitor is a CRD, outside those schemas: checked by hand.
- Every other check is a function returning a list of problems (empty: fine),
  so each one is also run on a broken copy of the manifests to show it fails.
- The whole module runs with sockets refused (:func:`_no_network`).
"""

from __future__ import annotations

import copy
import re
import shlex
import socket
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.__main__ import refusal
from gateway.app import create_app, server_options
from gateway.config import AnthropicModel, ConfigError, OpenAIModel, Settings, parse_settings
from gateway.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "k8s"
ADAPTER_VALUES = DEPLOY / "prometheus-adapter" / "values.yaml"

K8S_VERSIONS = ("1.30", "1.37")
"""Oldest Kubernetes the manifests claim (1.30: every field used is GA or on
by default there) and the newest schema the locked kubernetes-validate ships."""

CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
"""Kinds outside Kubernetes' own schemas, checked structurally instead."""

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "namespace", "resources"}
"""What :func:`render` implements; anything else in kustomization.yaml fails."""

CLUSTER_SCOPED = {"Namespace"}
NAMESPACED = {
    "ConfigMap",
    "Secret",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "ServiceMonitor",
}

Obj = dict[str, Any]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection or name lookup in these tests raises."""

    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError(f"network use in an offline test: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_network_is_refused() -> None:
    with pytest.raises(AssertionError, match="network use"):
        socket.create_connection(("pypi.org", 443), timeout=1)


# --- rendering -------------------------------------------------------------


def load_yaml(path: Path) -> list[Obj]:
    """The non-empty YAML documents of ``path``."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[Obj]:
    """What ``kubectl apply -k directory`` applies, for the subset of
    kustomize this project uses. Raises ValueError for anything else."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kust) - KUSTOMIZATION_KEYS
    if unknown:
        raise ValueError(f"render() does not implement kustomization keys {sorted(unknown)}")
    namespace = kust.get("namespace")
    objs: list[Obj] = []
    for resource in kust["resources"]:
        for obj in load_yaml(directory / resource):
            if namespace is not None:
                if obj["kind"] == "Namespace":
                    obj["metadata"]["name"] = namespace  # kustomize renames it too
                elif obj["kind"] in NAMESPACED:
                    obj["metadata"]["namespace"] = namespace
                elif obj["kind"] not in CLUSTER_SCOPED:
                    raise ValueError(f"render() does not know the scope of {obj['kind']}")
            objs.append(obj)
    return objs


@pytest.fixture(scope="module")
def objs() -> list[Obj]:
    return render(DEPLOY)


def one(objs: list[Obj], kind: str) -> Obj:
    """The only object of ``kind``. Raises AssertionError otherwise."""
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(objs: list[Obj]) -> Obj:
    containers = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def sluice_toml(objs: list[Obj]) -> str:
    return str(one(objs, "ConfigMap")["data"]["sluice.toml"])


def secret_data(objs: list[Obj]) -> dict[str, str]:
    secret = one(objs, "Secret")
    return {**secret.get("data", {}), **secret.get("stringData", {})}


def settings_of(objs: list[Obj], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The ConfigMap's sluice.toml loaded by the gateway's own loader, with the
    environment the Deployment gives the container (the Secret's values)."""
    data = secret_data(objs)
    for env in container(objs).get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None and ref["key"] in data:
            monkeypatch.setenv(env["name"], data[ref["key"]])
        elif "value" in env:
            monkeypatch.setenv(env["name"], env["value"])
    return parse_settings(tomllib.loads(sluice_toml(objs)))


def flag(command: list[str], name: str) -> str | None:
    """The value after ``name`` in an argv, or None."""
    return command[command.index(name) + 1] if name in command else None


def test_kustomization_lists_every_file() -> None:
    assert unlisted_files(DEPLOY) == []


def unlisted_files(directory: Path) -> list[str]:
    """Manifests in ``directory`` that kustomization.yaml does not list, and
    listed ones that do not exist."""
    listed = set(yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in directory.glob("*.y*ml")} - {"kustomization.yaml"}
    return [f"not in kustomization.yaml: {n}" for n in sorted(present - listed)] + [
        f"listed but missing: {n}" for n in sorted(listed - present)
    ]


def test_unlisted_file_is_caught(tmp_path: Path) -> None:
    for path in DEPLOY.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "networkpolicy.yaml").write_text("kind: NetworkPolicy\n")
    assert unlisted_files(tmp_path) == ["not in kustomization.yaml: networkpolicy.yaml"]


def test_render_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "resources: []\nconfigMapGenerator:\n  - name: x\n"
    )
    with pytest.raises(ValueError, match="configMapGenerator"):
        render(tmp_path)


def test_render_applies_the_namespace(objs: list[Obj]) -> None:
    assert one(objs, "Namespace")["metadata"]["name"] == "sluice"
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "sluice", obj["kind"]


# --- schemas ---------------------------------------------------------------


def validate(obj: Obj, version: str) -> None:
    """Strict schema validation. Raises kubernetes_validate.ValidationError,
    or SchemaNotFoundError for a kind without a schema."""
    kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_matches_the_kubernetes_schema(objs: list[Obj], version: str) -> None:
    kinds = []
    for obj in objs:
        if (obj["apiVersion"], obj["kind"]) in CRDS:
            continue
        validate(obj, version)
        kinds.append(obj["kind"])
    assert sorted(kinds) == sorted((NAMESPACED | CLUSTER_SCOPED) - {"ServiceMonitor"})


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "template", "spec", "containers", 0, "readinesProbe"), {}),  # typo
        (("spec", "template", "spec", "terminationGracePeriodSeconds"), "80"),  # wrong type
    ],
)
def test_schema_rejects_broken_deployment(
    objs: list[Obj], path: tuple[str | int, ...], value: object
) -> None:
    broken = copy.deepcopy(one(objs, "Deployment"))
    node: Any = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, K8S_VERSIONS[0])


def test_schema_rejects_unknown_kind() -> None:
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate({"apiVersion": "v1", "kind": "Servic", "metadata": {"name": "x"}}, "1.30")


# --- checks against the gateway --------------------------------------------


def config_problems(objs: list[Obj], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """sluice.toml loads, the gateway would start with this command, and the
    command reads the file where the ConfigMap is mounted."""
    try:
        settings = settings_of(objs, monkeypatch)
    except ConfigError as err:
        return [f"sluice.toml: {e}" for e in err.errors] or [str(err)]
    problems = []
    command = container(objs)["command"]
    if command[:3] != ["python", "-m", "gateway"]:
        problems.append(f"command is not python -m gateway: {shlex.join(command)}")
    host = flag(command, "--host") or settings.server.host
    workers = int(flag(command, "--workers") or 1)
    if (why := refusal(settings, host, workers)) is not None:
        problems.append(f"the gateway would refuse to start: {why}")
    if workers > 1:
        problems.append("--workers > 1 writes PROMETHEUS_MULTIPROC_DIR: one process per pod")
    mounts = {m["name"]: m["mountPath"] for m in container(objs).get("volumeMounts", [])}
    volumes = one(objs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    configmap = one(objs, "ConfigMap")["metadata"]["name"]
    config_dirs = [
        mounts.get(v["name"]) for v in volumes if v.get("configMap", {}).get("name") == configmap
    ]
    if flag(command, "--config") not in [f"{d}/sluice.toml" for d in config_dirs]:
        problems.append(f"--config {flag(command, '--config')} is not the mounted sluice.toml")
    if settings.state.redis_url is None:
        problems.append("no [state] redis_url: replicas would count alone")
    return problems


def grace_problems(objs: list[Obj], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """SIGKILL must not come before the gateway's own shutdown has run out:
    preStop sleep + aiohttp's shutdown timeout (shutdown_grace_s + backstop)."""
    settings = settings_of(objs, monkeypatch)
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    grace = pod.get("terminationGracePeriodSeconds", 30)
    pre_stop = container(objs).get("lifecycle", {}).get("preStop", {})
    command = pre_stop.get("exec", {}).get("command", [])
    if command[:1] == ["sleep"] and len(command) == 2:
        sleep = float(command[1])
    elif "sleep" in pre_stop:  # the lifecycle sleep action (Kubernetes 1.30+)
        sleep = float(pre_stop["sleep"]["seconds"])
    else:
        return ["no preStop sleep: endpoints may still send traffic after SIGTERM"]
    shutdown = server_options(settings)["shutdown_timeout"]
    problems = []
    if sleep < 3:
        problems.append(f"preStop sleeps {sleep} s: too short for endpoints to update")
    if not grace > settings.server.shutdown_grace_s + sleep:
        problems.append(
            f"terminationGracePeriodSeconds {grace} <= shutdown_grace_s "
            f"{settings.server.shutdown_grace_s} + preStop {sleep}"
        )
    if not grace >= shutdown + sleep:
        problems.append(f"terminationGracePeriodSeconds {grace} < preStop {sleep} + {shutdown}")
    return problems


def probe_problems(objs: list[Obj], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Probe paths are the gateway's routes (readiness /readyz, liveness
    /healthz) on the named container port, which is the command's --port."""
    app = create_app(settings_of(objs, monkeypatch))
    routes = {r.canonical for r in app.router.resources()}
    c = container(objs)
    problems = []
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    if ports.get("http") != int(flag(c["command"], "--port") or -1):
        problems.append(f"containerPort http {ports.get('http')} is not the command's --port")
    for probe, want in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != want:
            problems.append(f"{probe} path {get.get('path')} is not {want}")
        if get.get("path") not in routes:
            problems.append(f"{probe} path {get.get('path')} is not a gateway route")
        if get.get("port") not in ports and get.get("port") not in ports.values():
            problems.append(f"{probe} port {get.get('port')} is not a container port")
    return problems


def label_problems(objs: list[Obj]) -> list[str]:
    """Deployment, Service, PDB, HPA and ServiceMonitor all point at the pods
    (and the ServiceMonitor at the Service, on its named port)."""
    dep = one(objs, "Deployment")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    svc = one(objs, "Service")
    problems = []

    def selects(selector: dict[str, str], labels: dict[str, str], what: str) -> None:
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            problems.append(f"{what} selector {selector} does not match labels {labels}")

    selects(dep["spec"]["selector"]["matchLabels"], pod_labels, "Deployment")
    selects(svc["spec"]["selector"], pod_labels, "Service")
    selects(one(objs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels, "PDB")
    for spread in dep["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
        selects(spread["labelSelector"]["matchLabels"], pod_labels, "topologySpread")
    monitor = one(objs, "ServiceMonitor")
    selects(monitor["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"], "ServiceMonitor")
    target = one(objs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    if (target["apiVersion"], target["kind"], target["name"]) != (
        "apps/v1",
        "Deployment",
        dep["metadata"]["name"],
    ):
        problems.append(f"HPA scaleTargetRef {target} is not the Deployment")
    c = container(objs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for port in svc["spec"]["ports"]:
        if port["targetPort"] not in ports and port["targetPort"] not in ports.values():
            problems.append(f"Service targetPort {port['targetPort']} is not a container port")
    if [(p["name"], p["port"]) for p in svc["spec"]["ports"]] != [("http", 80)]:
        problems.append("Service should expose http on port 80")
    if svc["spec"].get("type", "ClusterIP") != "ClusterIP":
        problems.append("Service should be ClusterIP")
    return problems


def monitor_problems(objs: list[Obj]) -> list[str]:
    """The ServiceMonitor (a CRD: no schema here), structurally."""
    monitor = one(objs, "ServiceMonitor")
    problems = []
    if (monitor["apiVersion"], monitor["kind"]) not in CRDS:
        problems.append(f"not a monitoring.coreos.com/v1 ServiceMonitor: {monitor['apiVersion']}")
    if set(monitor["spec"]) - {"selector", "endpoints", "namespaceSelector", "jobLabel"}:
        problems.append(f"unexpected spec keys {sorted(monitor['spec'])}")
    port_names = {p["name"] for p in one(objs, "Service")["spec"]["ports"]}
    endpoints = monitor["spec"].get("endpoints", [])
    if not endpoints:
        problems.append("no endpoints")
    for ep in endpoints:
        if set(ep) - {"port", "path", "interval", "scrapeTimeout", "scheme"}:
            problems.append(f"unexpected endpoint keys {sorted(ep)}")
        if ep.get("port") not in port_names:
            problems.append(f"endpoint port {ep.get('port')} is not a Service port name")
        if ep.get("path") != "/metrics":
            problems.append(f"endpoint path {ep.get('path')} is not /metrics")
        if _seconds(ep.get("scrapeTimeout", "10s")) > _seconds(ep.get("interval", "30s")):
            problems.append("scrapeTimeout longer than interval")
    return problems


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, duration
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60}[match[2]]


def metric_problems(objs: list[Obj], adapter: Obj) -> list[str]:
    """The HPA's custom metric and the adapter rule's series are the gateway's
    own gauge; the rule sums its route label away, per pod."""
    metrics = Metrics.create()
    families = {f.name: f for f in metrics.registry.collect()}
    gauge = metrics.streams_active
    hpa = one(objs, "HorizontalPodAutoscaler")["spec"]
    problems = []
    pods = [m["pods"] for m in hpa["metrics"] if m["type"] == "Pods"]
    cpu = [m for m in hpa["metrics"] if m["type"] == "Resource"]
    if len(pods) != 1 or not cpu or cpu[0]["resource"]["name"] != "cpu":
        problems.append("HPA needs one Pods metric and CPU as the fallback")
    for p in pods:
        name = p["metric"]["name"]
        if name not in families or families[name].type != "gauge":
            problems.append(f"HPA metric {name} is not a gauge the gateway exports")
        if p["target"]["type"] != "AverageValue":
            problems.append("HPA Pods target should be an AverageValue per pod")
    if hpa["minReplicas"] < 2:
        problems.append(f"minReplicas {hpa['minReplicas']} < 2")
    rules = adapter["rules"]["custom"]
    exposed = {r["name"]["as"]: r for r in rules}
    for p in pods:
        rule = exposed.get(p["metric"]["name"])
        if rule is None:
            problems.append(f"no adapter rule exposes {p['metric']['name']}")
            continue
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"])
        if series is None or series[0] not in families:
            problems.append(f"adapter series {rule['seriesQuery']} is not a gateway metric")
        if not re.fullmatch(rule["name"]["matches"], series[0] if series else ""):
            problems.append("adapter name.matches does not match its series")
        if set(rule["resources"]["overrides"]) != {"namespace", "pod"}:
            problems.append("adapter rule should map namespace and pod labels")
        labels = set(gauge._labelnames)
        if not re.match(r"sum by \(<<\.GroupBy>>\)", rule["metricsQuery"]) and labels:
            problems.append(f"adapter metricsQuery does not sum {sorted(labels)} per pod")
    return problems


def security_problems(objs: list[Obj]) -> list[str]:
    """Non-root (the Dockerfile's nobody), read-only, no privileges."""
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    c = container(objs)
    merged = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    dockerfile_user = re.search(r"^USER (\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    problems = []
    want = {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
    }
    for key, value in want.items():
        if merged.get(key) != value:
            problems.append(f"securityContext.{key} is {merged.get(key)!r}, want {value!r}")
    if dockerfile_user is None or dockerfile_user[1] not in ("nobody", "65534"):
        problems.append("the Dockerfile's USER is not nobody (65534)")
    if merged.get("capabilities", {}).get("drop") != ["ALL"] or merged["capabilities"].get("add"):
        problems.append("capabilities should drop ALL and add none")
    if merged.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("seccompProfile should be RuntimeDefault")
    if merged.get("privileged"):
        problems.append("privileged container")
    for key in ("requests", "limits"):
        if set(c.get("resources", {}).get(key, {})) != {"cpu", "memory"}:
            problems.append(f"resources.{key} should set cpu and memory")
    return problems


def secret_problems(objs: list[Obj], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Secret holds exactly the variables the config needs (each model's
    key variable, the Redis URL's), the Deployment passes each from it, and
    its values are placeholders."""
    data = secret_data(objs)
    for key, value in data.items():  # what the config needs, whatever the Deployment passes
        monkeypatch.setenv(key, value)
    settings = settings_of(objs, monkeypatch)
    needed = {m.key_env for m in settings.models if isinstance(m, OpenAIModel | AnthropicModel)}
    needed.discard("")
    if settings.state.redis_url_env:
        needed.add(settings.state.redis_url_env)
    secret = one(objs, "Secret")["metadata"]["name"]
    passed = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container(objs).get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    problems = []
    if set(data) != needed:
        problems.append(f"Secret keys {sorted(data)} are not the needed {sorted(needed)}")
    for env in sorted(needed):
        ref = passed.get(env)
        if ref is None or ref["name"] != secret or ref["key"] not in data:
            problems.append(f"{env} is not passed from the Secret {secret}")
    for key, value in data.items():
        if "REPLACE-ME" not in value:
            problems.append(f"Secret {key} does not look like a placeholder")
    return problems


def test_manifests_agree_with_the_gateway(objs: list[Obj], monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = yaml.safe_load(ADAPTER_VALUES.read_text())
    assert config_problems(objs, monkeypatch) == []
    assert grace_problems(objs, monkeypatch) == []
    assert probe_problems(objs, monkeypatch) == []
    assert label_problems(objs) == []
    assert monitor_problems(objs) == []
    assert metric_problems(objs, adapter) == []
    assert security_problems(objs) == []
    assert secret_problems(objs, monkeypatch) == []


def _set(path: str, value: object) -> Callable[[list[Obj]], None]:
    """A mutation: ``Kind.dotted.path`` (integers index lists) set to ``value``."""
    kind, *keys = path.split(".")

    def mutate(objs: list[Obj]) -> None:
        node: Any = one(objs, kind)
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node[key]
        node[keys[-1]] = value

    return mutate


def _toml(old: str, new: str) -> Callable[[list[Obj]], None]:
    def mutate(objs: list[Obj]) -> None:
        data = one(objs, "ConfigMap")["data"]
        assert old in data["sluice.toml"]
        data["sluice.toml"] = data["sluice.toml"].replace(old, new)

    return mutate


POD = "Deployment.spec.template.spec"
C0 = f"{POD}.containers.0"
CHECKS: dict[str, Callable[..., list[str]]] = {
    "config": config_problems,
    "grace": grace_problems,
    "probe": probe_problems,
    "label": lambda objs, mp: label_problems(objs),
    "monitor": lambda objs, mp: monitor_problems(objs),
    "metric": lambda objs, mp: metric_problems(objs, yaml.safe_load(ADAPTER_VALUES.read_text())),
    "security": lambda objs, mp: security_problems(objs),
    "secret": secret_problems,
}


@pytest.mark.parametrize(
    ("check", "mutate", "expected"),
    [
        (
            "config",
            _toml("shutdown_grace_s", "shutdown_grace_sx"),
            "did you mean 'shutdown_grace_s'",
        ),
        ("config", _toml('redis_url_env = "SLUICE_REDIS_URL"', ""), "no [state] redis_url"),
        (
            "config",
            _set(f"{C0}.command", ["python", "-m", "gateway", "--host", "0.0.0.0"]),
            "--config",
        ),
        ("config", _toml('sha256 = "', 'sha256x = "'), "auth.keys[0]"),
        ("grace", _set(f"{POD}.terminationGracePeriodSeconds", 65), "<= shutdown_grace_s"),
        ("grace", _set(f"{POD}.terminationGracePeriodSeconds", 74), "< preStop"),
        ("grace", _set(f"{C0}.lifecycle", {}), "no preStop sleep"),
        ("probe", _set(f"{C0}.readinessProbe.httpGet.path", "/healthz"), "is not /readyz"),
        ("probe", _set(f"{C0}.livenessProbe.httpGet.path", "/livez"), "not a gateway route"),
        ("probe", _set(f"{C0}.ports.0.containerPort", 8000), "not the command's --port"),
        ("label", _set("Service.spec.selector", {"app.kubernetes.io/name": "sluicy"}), "Service"),
        ("label", _set("PodDisruptionBudget.spec.selector.matchLabels", {"app": "x"}), "PDB"),
        ("label", _set("HorizontalPodAutoscaler.spec.scaleTargetRef.name", "other"), "HPA"),
        ("label", _set("Service.spec.ports.0.targetPort", "web"), "targetPort"),
        ("label", _set("ServiceMonitor.spec.selector.matchLabels", {"a": "b"}), "ServiceMonitor"),
        ("monitor", _set("ServiceMonitor.spec.endpoints.0.port", "metrics"), "port name"),
        ("monitor", _set("ServiceMonitor.spec.endpoints.0.path", "/metric"), "/metrics"),
        ("monitor", _set("ServiceMonitor.spec.endpoint", []), "unexpected spec keys"),
        (
            "metric",
            _set("HorizontalPodAutoscaler.spec.metrics.0.pods.metric.name", "sluice_stream_active"),
            "not a gauge the gateway exports",
        ),
        ("metric", _set("HorizontalPodAutoscaler.spec.minReplicas", 1), "minReplicas"),
        ("security", _set(f"{C0}.securityContext.readOnlyRootFilesystem", False), "readOnly"),
        ("security", _set(f"{POD}.securityContext.runAsUser", 0), "runAsUser"),
        ("security", _set(f"{C0}.securityContext.capabilities", {"drop": ["NET_RAW"]}), "ALL"),
        ("secret", _set("Secret.stringData.OPENAI_API_KEY", "sk-live-123"), "placeholder"),
        (
            "secret",
            _toml('provider = "anthropic"', 'provider = "anthropic"\napi_key_env = "CLAUDE_KEY"'),
            "needed",
        ),
        ("secret", _set(f"{C0}.env", []), "is not passed from the Secret"),
    ],
)
def test_each_check_catches_a_broken_manifest(
    objs: list[Obj],
    monkeypatch: pytest.MonkeyPatch,
    check: str,
    mutate: Callable[[list[Obj]], None],
    expected: str,
) -> None:
    broken = copy.deepcopy(objs)
    mutate(broken)
    problems = CHECKS[check](broken, monkeypatch)
    assert any(expected in p for p in problems), problems


def test_adapter_rule_rejects_a_query_without_sum(objs: list[Obj]) -> None:
    adapter = yaml.safe_load(ADAPTER_VALUES.read_text())
    adapter["rules"]["custom"][0]["metricsQuery"] = "<<.Series>>{<<.LabelMatchers>>}"
    assert any("does not sum ['route']" in p for p in metric_problems(objs, adapter))
    adapter["rules"]["custom"][0]["seriesQuery"] = 'sluice_streams{pod!=""}'
    assert any("not a gateway metric" in p for p in metric_problems(objs, adapter))
