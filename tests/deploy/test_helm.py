"""The Helm chart (deploy/helm/tierserve): it lints, renders with each switch, passes a
server-side dry run on the test control plane, and renders the same objects as
``tierserve kube manifests`` for the same settings, so the two cannot drift."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tierserve import __version__
from tierserve.errors import ConflictError
from tierserve.runtime.kube import manifests
from tierserve.runtime.kube.apply import apply_all, wait_established
from tierserve.runtime.kube.client import KubeClient, load_config
from tierserve.testing.kube import ControlPlane

Obj = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "tierserve"
HELM_LABELS = frozenset(
    {
        "helm.sh/chart",
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/component",
    }
)
"""Labels the chart adds to every object's metadata (the manifests carry only part-of)."""


def helm_run(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=60)


def render(
    helm: Path, tmp_path: Path, values: Obj | None = None, namespace: str = "tierserve-system"
) -> list[Obj]:
    """``helm template`` with ``values``: the objects, in Helm's install order."""
    args = ["template", "tierserve", str(CHART), "--namespace", namespace]
    if values:
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["--values", str(path)]
    done = helm_run(helm, *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def refused(helm: Path, tmp_path: Path, values: Obj) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    done = helm_run(helm, "template", "tierserve", str(CHART), "--values", str(path))
    assert done.returncode != 0, done.stdout
    return done.stderr


def find(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    (obj,) = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return obj


def kinds(objects: list[Obj]) -> set[str]:
    return {o["kind"] for o in objects}


def container(objects: list[Obj], deployment: str) -> Obj:
    pod = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]
    (only,) = pod["containers"]
    return dict(only)


def volumes(objects: list[Obj], deployment: str) -> dict[str, Obj]:
    pod = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]
    return {v["name"]: v for v in pod["volumes"]}


def normalized(obj: Obj) -> Obj:
    """``obj`` without what only the chart adds: Helm's standard labels, the CRD's keep
    annotation, pods' instance label and config checksum, images' pull policy; the
    scheduler's configuration parsed (YAML text compares by layout, not meaning)."""
    obj = copy.deepcopy(obj)
    meta = obj["metadata"]
    meta["labels"] = {k: v for k, v in meta.get("labels", {}).items() if k not in HELM_LABELS}
    annotations = {
        k: v for k, v in meta.pop("annotations", {}).items() if k != "helm.sh/resource-policy"
    }
    if annotations:
        meta["annotations"] = annotations
    if obj["kind"] == "Deployment":
        template = obj["spec"]["template"]
        template["metadata"]["labels"].pop("app.kubernetes.io/instance", None)
        template["metadata"].pop("annotations", None)
        for c in template["spec"]["containers"]:
            c.pop("imagePullPolicy", None)
    if obj["kind"] == "ConfigMap":
        obj["data"] = {k: yaml.safe_load(v) for k, v in obj["data"].items()}
    return obj


def by_identity(objects: list[Obj]) -> dict[tuple[str, str, str], Obj]:
    return {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): normalized(o)
        for o in objects
    }


def cli_manifests(*args: str) -> list[Obj]:
    import typer

    from tierserve.cli import kube as kube_cli

    app = typer.Typer()
    kube_cli.register(app)
    done = CliRunner().invoke(app, ["kube", "manifests", *args])
    assert done.exit_code == 0, done.output
    return [doc for doc in yaml.safe_load_all(done.output) if doc]


# --- lint and render -----------------------------------------------------------------

SWITCHES: list[Obj] = [
    {},
    {"ackCompatible": True},
    {"crd": {"install": False}},
    {"certManager": {"enabled": True}},
    {"certManager": {"enabled": True, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}},
    {"webhook": {"enabled": False}},
    {"webhook": {"failurePolicy": "Fail", "caBundle": "LS0tLS1CRUdJTi0tLS0t"}},
    {"networkPolicy": {"enabled": False}},
    {"metrics": {"enabled": False}},
    {"metrics": {"caBundle": "LS0tLS1CRUdJTi0tLS0t"}},
    {"extender": {"replicas": 1, "leaderElection": {"enabled": False}}},
    {"extender": {"replicas": 3, "leaderElection": {"leaseDurationSeconds": 20}}},
    {"image": {"repository": "registry.internal/tierserve", "tag": "dev", "pullPolicy": "Always"}},
]


def flat(values: Obj, prefix: str = "") -> list[str]:
    """``{"webhook": {"enabled": False}}`` as ``["webhook.enabled=false"]`` (test ids)."""
    out = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += flat(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={json.dumps(value)}".replace('"', ""))
    return out


IDS = [",".join(flat(s)) or "defaults" for s in SWITCHES]


def test_chart_version_and_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == __version__  # the image tag defaults to it


@pytest.mark.parametrize("values", SWITCHES, ids=IDS)
def test_helm_lint_passes_strict(helm: Path, tmp_path: Path, values: Obj) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    done = helm_run(helm, "lint", "--strict", str(CHART), "--values", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("values", SWITCHES, ids=IDS)
def test_every_object_carries_the_standard_labels(helm: Path, tmp_path: Path, values: Obj) -> None:
    for obj in render(helm, tmp_path, values):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "tierserve", obj["metadata"]
        assert labels["app.kubernetes.io/instance"] == "tierserve"
        assert labels["app.kubernetes.io/version"] == __version__
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "tierserve-0.1.0"
        assert labels["app.kubernetes.io/part-of"] == "tierserve"


def test_switches_change_what_they_say(helm: Path, tmp_path: Path) -> None:
    default = render(helm, tmp_path)
    assert find(default, "CustomResourceDefinition")["metadata"]["name"] == (
        "resourcepolicies.scheduling.tierserve.io"
    )
    crd = find(render(helm, tmp_path, {"ackCompatible": True}), "CustomResourceDefinition")
    assert crd["metadata"]["name"] == "resourcepolicies.scheduling.alibabacloud.com"
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert "CustomResourceDefinition" not in kinds(
        render(helm, tmp_path, {"crd": {"install": False}})
    )
    assert "NetworkPolicy" not in kinds(
        render(helm, tmp_path, {"networkPolicy": {"enabled": False}})
    )

    # webhook off: no configuration, no port, no listener, no open ingress rule
    off = render(helm, tmp_path, {"webhook": {"enabled": False}})
    assert "MutatingWebhookConfiguration" not in kinds(off)
    assert not any(a.startswith("--webhook-listen") for a in container(off, "tierserve")["command"])
    assert [p["name"] for p in find(off, "Service", "tierserve-extender")["spec"]["ports"]] == [
        "https"
    ]
    assert len(find(off, "NetworkPolicy")["spec"]["ingress"]) == 1

    strict = render(helm, tmp_path, {"webhook": {"failurePolicy": "Fail", "caBundle": "QUJD"}})
    webhook = find(strict, "MutatingWebhookConfiguration")
    assert webhook["webhooks"][0]["failurePolicy"] == "Fail"
    assert webhook["webhooks"][0]["clientConfig"]["caBundle"] == "QUJD"
    assert "annotations" not in webhook["metadata"]  # nothing injects over the given CA

    # one extender without a Lease: no --leader-elect, no Lease rights, no PDB
    single = render(
        helm, tmp_path, {"extender": {"replicas": 1, "leaderElection": {"enabled": False}}}
    )
    assert "--leader-elect" not in container(single, "tierserve")["command"]
    roles = [o["metadata"]["name"] for o in single if o["kind"] == "Role"]
    assert "tierserve-leader-election" not in roles  # the scheduler's and autoscaler's remain
    assert "tierserve-scheduler-leader-election" in roles
    pdbs = [o["metadata"]["name"] for o in single if o["kind"] == "PodDisruptionBudget"]
    assert "tierserve" not in pdbs  # a single extender: no PDB to block node drains
    three = render(
        helm,
        tmp_path,
        {"extender": {"replicas": 3, "leaderElection": {"leaseDurationSeconds": 20}}},
    )
    assert find(three, "Deployment", "tierserve")["spec"]["replicas"] == 3
    assert "--lease-duration=20" in container(three, "tierserve")["command"]

    # the custom metrics API: off on a cluster where another adapter serves it
    no_metrics = render(helm, tmp_path, {"metrics": {"enabled": False}})
    assert "APIService" not in kinds(no_metrics)
    assert not [o for o in no_metrics if "tierserve-metrics" in o["metadata"]["name"]]
    given = find(render(helm, tmp_path, {"metrics": {"caBundle": "QUJD"}}), "APIService")
    assert given["spec"]["caBundle"] == "QUJD"
    assert "annotations" not in given["metadata"]

    image = render(
        helm,
        tmp_path,
        {"image": {"repository": "r.internal/ts", "tag": "dev", "pullPolicy": "Always"}},
    )
    assert container(image, "tierserve")["image"] == "r.internal/ts:dev"
    assert container(image, "tierserve")["imagePullPolicy"] == "Always"
    assert container(default, "tierserve")["image"] == f"ghcr.io/tierserve/tierserve:{__version__}"


def test_existing_tls_secrets_are_mounted(helm: Path, tmp_path: Path) -> None:
    values = {"tls": {"extenderSecret": "ext-tls", "schedulerClientSecret": "sched-tls"}}
    objects = render(helm, tmp_path, values)
    assert volumes(objects, "tierserve")["tls"]["secret"]["secretName"] == "ext-tls"
    assert volumes(objects, "tierserve-scheduler")["client"]["secret"]["secretName"] == "sched-tls"
    assert "Certificate" not in kinds(objects)


def test_cert_manager_issues_the_secrets_the_pods_mount(helm: Path, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, {"certManager": {"enabled": True}}, namespace="ml")
    certs = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Certificate"}
    assert set(certs) == {
        "tierserve-ca", "tierserve-extender", "tierserve-scheduler-client", "tierserve-metrics"
    }  # fmt: skip
    ext, client = certs["tierserve-extender"], certs["tierserve-scheduler-client"]
    assert ext["secretName"] == volumes(objects, "tierserve")["tls"]["secret"]["secretName"]
    assert ext["dnsNames"][0] == "tierserve-extender.ml.svc"
    assert "server auth" in ext["usages"]
    mounted = volumes(objects, "tierserve-scheduler")["client"]["secret"]["secretName"]
    assert client["secretName"] == mounted
    # the extender admits the scheduler by this name (--client-name)
    assert f"--client-name={client['commonName']}" in container(objects, "tierserve")["command"]
    assert "client auth" in client["usages"]
    # both from one CA, so each Secret's ca.crt is the CA of the other side
    assert ext["issuerRef"] == client["issuerRef"] == {
        "name": "tierserve-ca", "kind": "Issuer", "group": "cert-manager.io"
    }  # fmt: skip
    assert certs["tierserve-ca"]["isCA"] is True
    issuers = {o["metadata"]["name"] for o in objects if o["kind"] == "Issuer"}
    assert issuers == {"tierserve-selfsigned", "tierserve-ca"}
    webhook = find(objects, "MutatingWebhookConfiguration")
    assert webhook["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "ml/tierserve-extender"
    }

    metrics = certs["tierserve-metrics"]
    assert (
        metrics["secretName"]
        == volumes(objects, "tierserve-metrics")["tls"]["secret"]["secretName"]
    )
    assert metrics["dnsNames"][0] == "tierserve-metrics.ml.svc"
    apiservice = find(objects, "APIService")
    assert apiservice["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "ml/tierserve-metrics"
    }

    corp = {"enabled": True, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}
    objects = render(helm, tmp_path, {"certManager": corp})
    assert "Issuer" not in kinds(objects)
    refs = [o["spec"]["issuerRef"] for o in objects if o["kind"] == "Certificate"]
    assert refs == [{"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}] * 3


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"extender": {"replicas": 2, "leaderElection": {"enabled": False}}},
            "extender.replicas > 1 needs extender.leaderElection.enabled",
        ),
        ({"webhook": {"failurePolicy": "Never"}}, "failurePolicy"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ],
)
def test_settings_that_cannot_work_are_refused(
    helm: Path, tmp_path: Path, values: Obj, message: str
) -> None:
    assert message in refused(helm, tmp_path, values)


# --- the same objects as `tierserve kube manifests` -----------------------------------


@pytest.mark.parametrize(
    ("values", "namespace", "cli_args"),
    [
        ({}, "tierserve-system", []),
        ({"ackCompatible": True}, "tierserve-system", ["--ack-compatible"]),
        (
            {
                "image": {"repository": "registry.internal/tierserve", "tag": "1.2.3"},
                "scheduler": {"image": "registry.internal/kube-scheduler:v1.37.2"},
            },
            "ml-platform",
            [
                "--namespace", "ml-platform",
                "--image", "registry.internal/tierserve:1.2.3",
                "--scheduler-image", "registry.internal/kube-scheduler:v1.37.2",
            ],
        ),
    ],
    ids=["defaults", "ack-compatible", "namespace-and-images"],
)  # fmt: skip
def test_chart_renders_what_kube_manifests_renders(
    helm: Path, tmp_path: Path, values: Obj, namespace: str, cli_args: list[str]
) -> None:
    chart = by_identity(render(helm, tmp_path, values, namespace))
    # Helm makes the namespace (--create-namespace); everything else is object for object
    plain = by_identity([o for o in cli_manifests(*cli_args) if o["kind"] != "Namespace"])
    assert sorted(chart) == sorted(plain)
    for identity, obj in plain.items():
        assert chart[identity] == obj, identity


def is_metrics_api(obj: Obj) -> bool:
    return obj["kind"] == "APIService" or obj["metadata"]["name"].startswith(manifests.METRICS_NAME)


def test_chart_without_the_metrics_api_renders_the_rest(helm: Path, tmp_path: Path) -> None:
    chart = by_identity(render(helm, tmp_path, {"metrics": {"enabled": False}}))
    plain = by_identity(
        [o for o in manifests.manifests() if o["kind"] != "Namespace" and not is_metrics_api(o)]
    )
    assert sorted(chart) == sorted(plain)
    for identity, obj in plain.items():
        assert chart[identity] == obj, identity


def is_autoscaler(obj: Obj) -> bool:
    return obj["metadata"]["name"].startswith(manifests.AUTOSCALER_NAME)


def is_gateway(obj: Obj) -> bool:
    return obj["metadata"]["name"].startswith(manifests.GATEWAY_NAME)


def test_chart_without_the_gateway_renders_the_rest(helm: Path, tmp_path: Path) -> None:
    chart = by_identity(render(helm, tmp_path, {"gateway": {"enabled": False}}))
    plain = by_identity(
        [o for o in manifests.manifests() if o["kind"] != "Namespace" and not is_gateway(o)]
    )
    assert sorted(chart) == sorted(plain)
    for identity, obj in plain.items():
        assert chart[identity] == obj, identity


def test_chart_without_the_autoscaler_renders_the_rest(helm: Path, tmp_path: Path) -> None:
    chart = by_identity(render(helm, tmp_path, {"autoscaler": {"enabled": False}}))
    plain = by_identity(
        [o for o in manifests.manifests() if o["kind"] != "Namespace" and not is_autoscaler(o)]
    )
    assert sorted(chart) == sorted(plain)
    for identity, obj in plain.items():
        assert chart[identity] == obj, identity


def test_chart_follows_the_scheduler_name(helm: Path, tmp_path: Path) -> None:
    chart = by_identity(render(helm, tmp_path, {"scheduler": {"name": "gpu-scheduler"}}))
    opts = manifests.ManifestOptions(scheduler_name="gpu-scheduler")
    plain = by_identity([o for o in manifests.manifests(opts) if o["kind"] != "Namespace"])
    assert sorted(chart) == sorted(plain)
    for identity, obj in plain.items():
        assert chart[identity] == obj, identity


# --- server-side dry run on the test control plane -------------------------------------

CERT_MANAGER_STUBS = [
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.cert-manager.io"},
        "spec": {
            "group": "cert-manager.io",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [{"name": "v1", "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": {
                              "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }
    for plural, kind in (("certificates", "Certificate"), ("issuers", "Issuer"))
]  # fmt: skip
"""cert-manager's CRDs as stand-ins that take any spec: the dry run checks that the chart's
Certificates and Issuers are well-formed objects of a served API, not cert-manager's schema."""


@pytest.mark.kube
@pytest.mark.slow
async def test_rendered_chart_passes_server_side_dry_run(
    helm: Path, tmp_path: Path, testbed: ControlPlane
) -> None:
    namespace = "tierserve-helm"
    ca_bundle = base64.b64encode(testbed.ca.read_bytes()).decode()
    cases: list[Obj] = [
        *SWITCHES,
        {"webhook": {"caBundle": ca_bundle}},
        {"extender": {"nodeSelector": {"pool": "system"},
                      "tolerations": [{"key": "dedicated", "operator": "Exists"}]},
         "imagePullSecrets": [{"name": "registry"}]},
    ]  # fmt: skip
    async with KubeClient(load_config(str(testbed.kubeconfig))) as kube:
        # namespaced objects are only dry-run-able in an existing namespace
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        with contextlib.suppress(ConflictError):
            await kube.create("/api/v1/namespaces", ns)
        for stub in CERT_MANAGER_STUBS:
            with contextlib.suppress(ConflictError):
                await kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", stub)
            await wait_established(kube, stub["metadata"]["name"])
        for values in cases:
            objects = render(helm, tmp_path, values, namespace)
            answered = await apply_all(kube, objects, dry_run=True)
            assert [a["kind"] for a in answered] == [o["kind"] for o in objects], values
        # helm's own server-side dry run of an install: its checks against the cluster's
        # discovery, and the notes a user reads
        done = helm_run(
            helm, "install", "tierserve", str(CHART), "--namespace", namespace,
            "--dry-run=server", "--kubeconfig", str(testbed.kubeconfig),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        notes = done.stdout.split("NOTES:", 1)[1]
        assert f"tierserve {__version__} is installed in namespace {namespace}." in notes
        assert "tierserve-extender-tls   the extender's certificate" in notes
        # a dry run creates nothing
        crds = await kube.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        names = {c["metadata"]["name"] for c in crds["items"]}
        assert "resourcepolicies.scheduling.tierserve.io" not in names
