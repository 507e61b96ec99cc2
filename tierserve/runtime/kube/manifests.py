"""Everything to deploy tierserve in a cluster, as plain objects (``tierserve kube manifests``).

* the ResourcePolicy CRD (ours, or ACK's group with ``ack_compatible``);
* namespace ``tierserve-system``, service accounts and least-privilege RBAC: the extender
  and controller read nodes, pods and policies, patch pods and create bindings; the
  second scheduler gets the stock ``system:kube-scheduler`` and
  ``system:volume-scheduler`` roles plus its own leader-election lease;
* a second scheduler (the upstream kube-scheduler image) whose
  KubeSchedulerConfiguration has one profile, ``tierserve-scheduler``, calling the
  extender for filter, prioritize and bind (``nodeCacheCapable: true``,
  ``ignorable: false``: a pod with a policy is never placed without it);
* the extender + pod controllers Deployment (two replicas, active/passive on the Lease
  ``tierserve-extender``: only the leader is Ready, so the Service routes kube-scheduler
  to it, and only it runs the controllers; a PodDisruptionBudget keeps one up) and the
  extender's Service;
* the extender speaks HTTPS and takes filter/prioritize/bind only from a client
  certificate named after the scheduler: its serving certificate (and the CA that
  signed the scheduler's) come from Secret ``tierserve-extender-tls``, the scheduler's
  client certificate (and the CA that signed the extender's) from Secret
  ``<scheduler>-client`` (``tls.crt``, ``tls.key``, ``ca.crt``; create them with
  cert-manager or openssl, see docs/kubernetes.md); a NetworkPolicy lets only the
  scheduler's pods reach it, and Prometheus pods that carry
  ``tierserve.io/scrape: "true"``;
* a mutating admission webhook (served by the extender on its own port) that gives every
  new pod a ResourcePolicy selects ``schedulerName: tierserve-scheduler`` and, where the
  policy has an ``eci``/``acs`` unit, the virtual-kubelet toleration, so ACK's manifests
  (which set neither) work as written. ``failurePolicy: Ignore``: while the webhook is
  down pods are still created, with what they say (a pod that then names no scheduler
  is placed by the default one, outside its policy); kube-system and tierserve's own
  namespace are never sent to it;
* the custom metrics API for the stock HPA (``tierserve kube metrics`` behind the
  APIService ``v1beta2.custom.metrics.k8s.io``; serving certificate from Secret
  ``tierserve-metrics-tls``), so arena's HPA on ``DCGM_CUSTOM_PROCESS_SM_UTIL`` works
  with no Prometheus and no adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from tierserve.runtime.kube.crd import ACK_GROUP, PLURAL, TIERSERVE_GROUP, resource_policy_crd

Obj = dict[str, Any]

DEFAULT_VERSION = "v1.37.2"
"""The Kubernetes release of the second scheduler's image (and of the test control plane)."""
SCHEDULER_NAME = "tierserve-scheduler"
EXTENDER_PORT = 8890
WEBHOOK_PORT = 8891
WEBHOOK_NAME = "pod-defaults.scheduling.tierserve.io"
EXTENDER_TLS_SECRET = "tierserve-extender-tls"
SCRAPE_LABEL = "tierserve.io/scrape"
"""Pods with this label set to ``"true"`` (Prometheus) may reach the extender's metrics."""
PART_OF = {"app.kubernetes.io/part-of": "tierserve"}
METRICS_NAME = "tierserve-metrics"
METRICS_PORT = 6443
METRICS_GROUP = "custom.metrics.k8s.io"
METRICS_VERSION = "v1beta2"


@dataclass(frozen=True)
class ManifestOptions:
    namespace: str = "tierserve-system"
    image: str = "ghcr.io/tierserve/tierserve:0.1.0"
    """The tierserve image (runs ``tierserve kube extender`` and ``kube controller``)."""
    scheduler_image: str = f"registry.k8s.io/kube-scheduler:{DEFAULT_VERSION}"
    scheduler_name: str = SCHEDULER_NAME
    ack_compatible: bool = False

    @property
    def group(self) -> str:
        return ACK_GROUP if self.ack_compatible else TIERSERVE_GROUP


def extender_stanza(
    url_prefix: str, node_cache_capable: bool = True, tls_config: Obj | None = None
) -> Obj:
    """One ``extenders`` entry of a KubeSchedulerConfiguration: the tierserve extender at
    ``url_prefix`` for filter, prioritize and bind, not ignorable; over HTTPS when the
    URL says so, with ``tls_config`` (``caFile``, ``certFile``, ``keyFile``: the CA that
    signed the extender's certificate, and the client certificate kube-scheduler shows)."""
    stanza: Obj = {
        "urlPrefix": url_prefix,
        "filterVerb": "filter",
        "prioritizeVerb": "prioritize",
        "bindVerb": "bind",
        "weight": 1,
        "enableHTTPS": url_prefix.startswith("https://"),
        "nodeCacheCapable": node_cache_capable,
        "ignorable": False,
        "httpTimeout": "5s",
    }
    if tls_config is not None:
        stanza["tlsConfig"] = dict(tls_config)
    return stanza


def scheduler_configuration(opts: ManifestOptions) -> Obj:
    """The second scheduler's KubeSchedulerConfiguration."""
    client = "/etc/kubernetes/tierserve/client"
    tls = {
        "caFile": f"{client}/ca.crt",
        "certFile": f"{client}/tls.crt",
        "keyFile": f"{client}/tls.key",
    }
    url = f"https://tierserve-extender.{opts.namespace}.svc:{EXTENDER_PORT}"
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "leaderElection": {
            "leaderElect": True,
            "resourceNamespace": opts.namespace,
            "resourceName": opts.scheduler_name,
        },
        # every feasible node is scored: with the default sample (as low as 5 % of a large
        # cluster) kube-scheduler may send the extender a sample without the virtual node,
        # and a pod that should overflow fails and retries
        "percentageOfNodesToScore": 100,
        "profiles": [{"schedulerName": opts.scheduler_name}],
        "extenders": [extender_stanza(url, tls_config=tls)],
    }


def _meta(name: str, opts: ManifestOptions, namespaced: bool = True) -> Obj:
    meta: Obj = {"name": name, "labels": dict(PART_OF)}
    if namespaced:
        meta["namespace"] = opts.namespace
    return meta


def _rbac(opts: ManifestOptions) -> list[Obj]:
    groups = [TIERSERVE_GROUP, ACK_GROUP]
    ns = opts.namespace
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta("tierserve", opts, namespaced=False),
            "rules": [
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
                {
                    "apiGroups": [""],
                    "resources": ["pods"],
                    "verbs": ["get", "list", "watch", "patch"],
                },
                {"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]},
                {"apiGroups": groups, "resources": [PLURAL], "verbs": ["get", "list", "watch"]},
            ],
        },
        _cluster_binding("tierserve", "tierserve", "tierserve", ns, opts),
        _cluster_binding(
            f"{opts.scheduler_name}-as-kube-scheduler",
            "system:kube-scheduler",
            opts.scheduler_name,
            ns,
            opts,
        ),
        _cluster_binding(
            f"{opts.scheduler_name}-as-volume-scheduler",
            "system:volume-scheduler",
            opts.scheduler_name,
            ns,
            opts,
        ),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {
                "name": f"{opts.scheduler_name}-auth-reader",
                "namespace": "kube-system",
                "labels": dict(PART_OF),
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "extension-apiserver-authentication-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": opts.scheduler_name, "namespace": ns}],
        },
        *_lease_rbac("tierserve", "tierserve-extender", opts),
        *_lease_rbac(opts.scheduler_name, opts.scheduler_name, opts),
    ]


def _lease_env() -> list[Obj]:
    """What a leader-electing container names itself by in the Lease (downward API)."""
    return [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]


def _lease_rbac(account: str, lease: str, opts: ManifestOptions) -> list[Obj]:
    """A Role to create the Lease ``lease`` and then read and renew only it, bound to the
    ServiceAccount ``account`` (leader election)."""
    name = f"{account}-leader-election"
    group = "coordination.k8s.io"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(name, opts),
            "rules": [
                {"apiGroups": [group], "resources": ["leases"], "verbs": ["create"]},
                {
                    "apiGroups": [group],
                    "resources": ["leases"],
                    "resourceNames": [lease],
                    "verbs": ["get", "update"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(name, opts),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": opts.namespace}],
        },
    ]


def _cluster_binding(name: str, role: str, account: str, ns: str, opts: ManifestOptions) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(name, opts, namespaced=False),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
    }


def _deployment(name: str, opts: ManifestOptions, pod_spec: Obj, replicas: int = 1) -> Obj:
    labels = {"app.kubernetes.io/name": name, **PART_OF}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, opts),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def _scheduler(opts: ManifestOptions) -> list[Obj]:
    config = yaml.safe_dump(scheduler_configuration(opts), sort_keys=False)
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(f"{opts.scheduler_name}-config", opts),
            "data": {"config.yaml": config},
        },
        _deployment(
            opts.scheduler_name,
            opts,
            {
                "serviceAccountName": opts.scheduler_name,
                "priorityClassName": "system-cluster-critical",
                "containers": [
                    {
                        "name": "kube-scheduler",
                        "image": opts.scheduler_image,
                        "command": [
                            "kube-scheduler",
                            "--config=/etc/kubernetes/tierserve/config.yaml",
                        ],
                        "livenessProbe": {
                            "httpGet": {"path": "/healthz", "port": 10259, "scheme": "HTTPS"},
                            "initialDelaySeconds": 15,
                        },
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                        "securityContext": {**_SECURITY, "runAsUser": 65532},
                        "volumeMounts": [
                            {"name": "config", "mountPath": "/etc/kubernetes/tierserve"},
                            {
                                "name": "client",
                                "mountPath": "/etc/kubernetes/tierserve/client",
                                "readOnly": True,
                            },
                        ],
                    }
                ],
                "volumes": [
                    {"name": "config", "configMap": {"name": f"{opts.scheduler_name}-config"}},
                    {"name": "client", "secret": {"secretName": f"{opts.scheduler_name}-client"}},
                ],
            },
        ),
    ]


def _tierserve(opts: ManifestOptions) -> list[Obj]:
    tls = "/etc/tierserve/tls"
    extender: Obj = {
        "name": "extender",
        "image": opts.image,
        "command": [
            "tierserve",
            "kube",
            "extender",
            "--with-controller",
            "--leader-elect",
            f"--listen=0.0.0.0:{EXTENDER_PORT}",
            f"--tls-cert={tls}/tls.crt",
            f"--tls-key={tls}/tls.key",
            f"--client-ca={tls}/ca.crt",
            f"--client-name={opts.scheduler_name}",
            f"--scheduler-name={opts.scheduler_name}",
            f"--webhook-listen=0.0.0.0:{WEBHOOK_PORT}",
        ],
        "env": _lease_env(),
        "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}},
        "securityContext": {**_SECURITY, "runAsUser": 65532},
    }
    extender["ports"] = [
        {"name": "https", "containerPort": EXTENDER_PORT},
        {"name": "webhook", "containerPort": WEBHOOK_PORT},
    ]
    # ready once its cache has listed nodes, pods and policies and it holds the Lease: the
    # Service then sends kube-scheduler to the leader only; the standby keeps a warm cache
    extender["readinessProbe"] = {
        "httpGet": {"path": "/readyz", "port": EXTENDER_PORT, "scheme": "HTTPS"},
        "periodSeconds": 2,
    }
    extender["livenessProbe"] = {
        "httpGet": {"path": "/healthz", "port": EXTENDER_PORT, "scheme": "HTTPS"},
        "initialDelaySeconds": 10,
    }
    extender["volumeMounts"] = [{"name": "tls", "mountPath": tls, "readOnly": True}]
    selector = {"app.kubernetes.io/name": "tierserve"}
    return [
        _deployment(
            "tierserve",
            opts,
            {
                "serviceAccountName": "tierserve",
                "containers": [extender],
                "volumes": [{"name": "tls", "secret": {"secretName": EXTENDER_TLS_SECRET}}],
            },
            replicas=2,  # active/passive on the Lease: one leads, one stands by warm
        ),
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta("tierserve", opts),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": dict(selector)}},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("tierserve-extender", opts),
            "spec": {
                "selector": dict(selector),
                "ports": [
                    {"name": "https", "port": EXTENDER_PORT, "targetPort": "https"},
                    {"name": "webhook", "port": 443, "targetPort": "webhook"},
                ],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("tierserve-extender", opts),
            "spec": {
                "podSelector": {"matchLabels": dict(selector)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "podSelector": {
                                    "matchLabels": {"app.kubernetes.io/name": opts.scheduler_name}
                                }
                            },
                            {
                                "namespaceSelector": {},
                                "podSelector": {"matchLabels": {SCRAPE_LABEL: "true"}},
                            },
                        ],
                        "ports": [{"protocol": "TCP", "port": EXTENDER_PORT}],
                    },
                    # kube-apiserver calls the webhook from outside the pod network
                    {"ports": [{"protocol": "TCP", "port": WEBHOOK_PORT}]},
                ],
            },
        },
    ]


def metrics_apiservice(
    opts: ManifestOptions, service: Obj | None = None, ca_bundle: str | None = None
) -> Obj:
    """The APIService ``v1beta2.custom.metrics.k8s.io`` routing the custom metrics API to
    ``tierserve kube metrics``. ``service`` defaults to its Service (port 443);
    ``ca_bundle`` (base64 PEM) is the CA of its serving certificate, else cert-manager
    injects it from the Certificate ``tierserve-metrics``."""
    meta = _meta(f"{METRICS_VERSION}.{METRICS_GROUP}", opts, namespaced=False)
    spec: Obj = {
        "group": METRICS_GROUP,
        "version": METRICS_VERSION,
        "service": service or {"namespace": opts.namespace, "name": METRICS_NAME, "port": 443},
        "groupPriorityMinimum": 100,
        "versionPriority": 200,
    }
    if ca_bundle is not None:
        spec["caBundle"] = ca_bundle
    else:
        meta["annotations"] = {"cert-manager.io/inject-ca-from": f"{opts.namespace}/{METRICS_NAME}"}
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": meta,
            "spec": spec}  # fmt: skip


def _metrics_api(opts: ManifestOptions) -> list[Obj]:
    """The custom metrics API for the stock HPA: ``tierserve kube metrics`` (its serving
    certificate from Secret ``tierserve-metrics-tls``, for
    ``tierserve-metrics.<namespace>.svc``), its Service and APIService, and RBAC: read
    pods (to find and scrape them), ``system:auth-delegator`` (the access review of each
    caller) and ``extension-apiserver-authentication-reader`` in
    kube-system (the front proxy's CA and allowed names, read at start-up). The stock
    ``system:controller:horizontal-pod-autoscaler`` role already reads
    ``custom.metrics.k8s.io``."""
    ns, tls = opts.namespace, "/etc/tierserve/tls"
    server: Obj = {
        "name": "metrics",
        "image": opts.image,
        "command": [
            "tierserve",
            "kube",
            "metrics",
            f"--listen=0.0.0.0:{METRICS_PORT}",
            f"--tls-cert={tls}/tls.crt",
            f"--tls-key={tls}/tls.key",
        ],
        "ports": [{"name": "https", "containerPort": METRICS_PORT}],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": METRICS_PORT, "scheme": "HTTPS"},
            "periodSeconds": 5,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": METRICS_PORT, "scheme": "HTTPS"},
            "initialDelaySeconds": 10,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": {**_SECURITY, "runAsUser": 65532},
        "volumeMounts": [{"name": "tls", "mountPath": tls, "readOnly": True}],
    }
    reader = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {**_meta(f"{METRICS_NAME}-auth-reader", opts), "namespace": "kube-system"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "extension-apiserver-authentication-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": METRICS_NAME, "namespace": ns}],
    }  # fmt: skip
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(METRICS_NAME, opts)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(METRICS_NAME, opts, namespaced=False),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
        _cluster_binding(METRICS_NAME, METRICS_NAME, METRICS_NAME, ns, opts),
        _cluster_binding(
            f"{METRICS_NAME}:system:auth-delegator",
            "system:auth-delegator",
            METRICS_NAME,
            ns,
            opts,
        ),
        reader,
        _deployment(
            METRICS_NAME,
            opts,
            {
                "serviceAccountName": METRICS_NAME,
                "containers": [server],
                "volumes": [{"name": "tls", "secret": {"secretName": f"{METRICS_NAME}-tls"}}],
            },
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(METRICS_NAME, opts),
            "spec": {
                "selector": {"app.kubernetes.io/name": METRICS_NAME},
                "ports": [{"name": "https", "port": 443, "targetPort": "https"}],
            },
        },
        metrics_apiservice(opts),
    ]


def pod_defaults_webhook(opts: ManifestOptions, client_config: Obj | None = None) -> Obj:
    """The MutatingWebhookConfiguration of the pod-defaults webhook. ``client_config``
    defaults to the extender's Service (its CA injected by cert-manager from the
    extender's Certificate, or set ``caBundle`` yourself)."""
    config = client_config or {
        "service": {
            "namespace": opts.namespace,
            "name": "tierserve-extender",
            "path": "/mutate-pods",
            "port": 443,
        }
    }
    meta = _meta("tierserve-pod-defaults", opts, namespaced=False)
    meta["annotations"] = {"cert-manager.io/inject-ca-from": f"{opts.namespace}/tierserve-extender"}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": meta,
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "clientConfig": config,
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": ["kube-system", opts.namespace],
                        }
                    ]
                },
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5,
                "reinvocationPolicy": "IfNeeded",
            }
        ],
    }


AUTOSCALER_NAME = "tierserve-autoscaler"


def _autoscaler(opts: ManifestOptions) -> list[Obj]:
    """tierserve's autoscaler (``tierserve kube autoscaler --leader-elect``): two replicas
    on the Lease ``tierserve-autoscaler``, reading Deployments, pods, nodes and
    ResourcePolicies (the tier planner's tiers), writing the Deployments' scale and
    state annotations, and Events."""
    ns = opts.namespace
    labels = {"app.kubernetes.io/name": AUTOSCALER_NAME, **PART_OF}
    container: Obj = {
        "name": "autoscaler",
        "image": opts.image,
        "command": ["tierserve", "kube", "autoscaler", "--leader-elect"],
        "env": _lease_env(),
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": {**_SECURITY, "runAsUser": 65532},
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(AUTOSCALER_NAME, opts)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(AUTOSCALER_NAME, opts, namespaced=False),
            "rules": [
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments"],
                    "verbs": ["get", "list", "watch", "patch"],
                },
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments/scale"],
                    "verbs": ["get", "patch", "update"],
                },
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                # the tier planner's tiers: nodes and ResourcePolicies
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
                {
                    "apiGroups": [TIERSERVE_GROUP, ACK_GROUP],
                    "resources": [PLURAL],
                    "verbs": ["get", "list"],
                },
                # a Warning is folded into one Event (read, then its count patched)
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "get", "patch"]},
            ],
        },
        _cluster_binding(AUTOSCALER_NAME, AUTOSCALER_NAME, AUTOSCALER_NAME, ns, opts),
        *_lease_rbac(AUTOSCALER_NAME, AUTOSCALER_NAME, opts),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(AUTOSCALER_NAME, opts),
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app.kubernetes.io/name": AUTOSCALER_NAME}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"serviceAccountName": AUTOSCALER_NAME, "containers": [container]},
                },
            },
        },
    ]


GATEWAY_NAME = "tierserve-gateway"
GATEWAY_PORT = 8000


def _gateway(opts: ManifestOptions) -> list[Obj]:
    """The tier-aware gateway (``tierserve gateway --discovery kubernetes``): two
    replicas (each keeps its own routes from a watch of pods, Deployments and nodes, so
    any one can serve), a Service on port 80 for an Ingress to point at, a PDB, and RBAC
    to read pods, Deployments and nodes."""
    ns = opts.namespace
    labels = {"app.kubernetes.io/name": GATEWAY_NAME, **PART_OF}
    container: Obj = {
        "name": "gateway",
        "image": opts.image,
        "command": [
            "tierserve",
            "gateway",
            "--discovery",
            "kubernetes",
            "--host",
            "0.0.0.0",
            "--port",
            str(GATEWAY_PORT),
        ],
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": GATEWAY_PORT}},
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": GATEWAY_PORT},
            "initialDelaySeconds": 10,
        },
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": {**_SECURITY, "runAsUser": 65532},
    }
    selector = {"app.kubernetes.io/name": GATEWAY_NAME}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(GATEWAY_NAME, opts)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(GATEWAY_NAME, opts, namespaced=False),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "nodes"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        },
        _cluster_binding(GATEWAY_NAME, GATEWAY_NAME, GATEWAY_NAME, ns, opts),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(GATEWAY_NAME, opts),
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": dict(selector)},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": GATEWAY_NAME,
                        # in-flight streams finish before the process is stopped
                        "terminationGracePeriodSeconds": 600,
                        "containers": [container],
                    },
                },
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(GATEWAY_NAME, opts),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": dict(selector)}},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(GATEWAY_NAME, opts),
            "spec": {
                "selector": dict(selector),
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
    ]


def manifests(opts: ManifestOptions | None = None) -> list[Obj]:
    """Every object, in apply order (CRD and namespace first)."""
    opts = opts or ManifestOptions()
    accounts = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, opts)}
        for name in ("tierserve", opts.scheduler_name)
    ]
    return [
        resource_policy_crd(opts.group),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(opts.namespace, opts, False)},
        *accounts,
        *_rbac(opts),
        *_scheduler(opts),
        *_tierserve(opts),
        pod_defaults_webhook(opts),
        *_metrics_api(opts),
        *_autoscaler(opts),
        *_gateway(opts),
    ]


def dump(objects: list[Obj]) -> str:
    """Objects as a multi-document YAML stream."""
    return yaml.safe_dump_all(objects, sort_keys=False)


__all__ = [
    "AUTOSCALER_NAME",
    "DEFAULT_VERSION",
    "GATEWAY_NAME",
    "SCHEDULER_NAME",
    "ManifestOptions",
    "dump",
    "extender_stanza",
    "manifests",
    "metrics_apiservice",
    "pod_defaults_webhook",
    "scheduler_configuration",
]
