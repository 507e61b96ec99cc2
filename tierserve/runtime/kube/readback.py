"""A serving job read back from the objects ``serve kserve --backend kubernetes`` made:
the inverse of :func:`tierserve.runtime.kube.serving.render` (pure).

``serve update kserve --backend kubernetes`` applies its flags to the service read back
here and renders the result again, so an updated service is what ``serve kserve`` with
the new flags renders. ``render(read_back(render(s)))`` is ``render(s)``.

What it reads:

* a service sized by tierserve's autoscaler carries itself as JSON
  (``autoscaling.tierserve.io/service``): that is the service, but for its replicas,
  which are the Deployment's now (the autoscaler writes them);
* otherwise the predictor's pod template (a KServe ``InferenceService``'s
  ``spec.predictor``, or the raw Deployment's template): image, command, port,
  resources, env, readiness probe, tolerations, node selector, volumes; the labels and
  annotations less those the rendering adds; the replicas and bounds (the
  InferenceService's ``minReplicas``/``maxReplicas``, and the replicas of the Deployment
  KServe made for it when it autoscales; else the raw Deployment's ``replicas``); and the
  scale metrics from the HPA ``<name>-hpa``.

Fields the rendering leaves out (``modelName``; the bounds of a service without a scale
metric) cannot be read back; nothing rendered depends on them.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tierserve.model.node import VIRTUAL_KUBELET_TAINT
from tierserve.model.quantity import QuantityError, parse_milli
from tierserve.model.resourcepolicy import ResourcePolicy
from tierserve.model.resources import CPU, GPU, MEMORY
from tierserve.model.service import SERVING_GROUP_VERSION, InferenceService
from tierserve.runtime.kube.client import Obj
from tierserve.runtime.kube.serving import (
    AUTOSCALER_ANNOTATION,
    SERVICE_ANNOTATION,
    TIERSERVE,
    custom_metric,
    needs_virtual_toleration,
)

RENDERED_LABELS = ("servingType", "servingName")
DEPLOYMENT_MODE = ("serving.kserve.io/deploymentMode", "RawDeployment")
AUTOSCALER_CLASS = ("serving.kserve.io/autoscalerClass", "external")
PROBE_DEFAULTS = {"periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3}
"""What the API server fills into a probe that leaves them out: not the service's own."""
PROBE_TIMINGS = ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold")


@dataclass(frozen=True)
class Rendered:
    """A serving job's objects on the cluster: the KServe ``InferenceService`` or the raw
    ``Deployment`` (+ ``Service``), and the HPA when there is one; ``scaled``: the
    Deployment KServe made for the InferenceService (not rendered: what its HPA, or
    tierserve's autoscaler, scales), when it is there."""

    primary: Obj
    raw: bool
    hpa: Obj | None = None
    service: Obj | None = None
    scaled: Obj | None = None

    def objects(self) -> list[Obj]:
        """The rendered ones (``scaled`` is KServe's)."""
        return [o for o in (self.primary, self.service, self.hpa) if o is not None]

    def replicas(self) -> int | None:
        """The Deployment's replicas now (the raw one, else KServe's); None: no Deployment."""
        deployment = self.primary if self.raw else self.scaled
        spec = (deployment or {}).get("spec") or {}
        return int(spec["replicas"]) if "replicas" in spec else None


def _container(pod: Obj) -> Obj:
    containers = pod.get("containers") or [{}]
    return next((c for c in containers if c.get("name") == "kserve-container"), containers[0])


def _command(container: Obj) -> tuple[str, str]:
    """(shell, command line) from ``[shell, -c, line]``, else the words joined."""
    words = [*(container.get("command") or []), *(container.get("args") or [])]
    if len(words) == 3 and words[1] == "-c":
        return str(words[0]), str(words[2])
    return "sh", shlex.join(str(w) for w in words)


def _resources(container: Obj, spec: Obj) -> None:
    resources = container.get("resources") or {}
    limits: dict[str, Any] = {
        **(resources.get("requests") or {}),
        **(resources.get("limits") or {}),
    }
    if GPU in limits:
        with contextlib.suppress(QuantityError):
            spec["gpus"] = parse_milli(str(limits[GPU])) // 1000
    for name, key in ((CPU, "cpu"), (MEMORY, "memory")):
        if name in limits:
            spec[key] = str(limits[name])


def _probe(container: Obj) -> Obj | None:
    probe = container.get("readinessProbe") or {}
    http = probe.get("httpGet") or {}
    if not http.get("path"):
        return None
    out: Obj = {"httpGet": {"path": http["path"]}}
    for key in PROBE_TIMINGS:
        value = probe.get(key)
        if (
            value is not None
            and value != PROBE_DEFAULTS.get(key)
            and not (key == "initialDelaySeconds" and value == 0)
        ):
            out[key] = value
    return out


def _volumes(pod: Obj, container: Obj, spec: Obj) -> None:
    mounts = {m.get("name"): m.get("mountPath") for m in container.get("volumeMounts") or []}
    data, data_dir = [], []
    for volume in pod.get("volumes") or []:
        path = mounts.get(volume.get("name"))
        if path is None:
            continue
        if "persistentVolumeClaim" in volume:
            data.append({"name": volume["persistentVolumeClaim"]["claimName"], "mountPath": path})
        elif "hostPath" in volume:
            data_dir.append({"hostPath": volume["hostPath"]["path"], "mountPath": path})
    if data:
        spec["data"] = data
    if data_dir:
        spec["dataDir"] = data_dir


def _scaling(hpa: Obj | None, spec: Obj) -> None:
    if hpa is None:
        return
    hpa_spec = hpa.get("spec") or {}
    targets = []
    for metric in hpa_spec.get("metrics") or []:
        pods = metric.get("pods") or {}
        name = (pods.get("metric") or {}).get("name")
        value = (pods.get("target") or {}).get("averageValue")
        if name is None or value is None:
            continue
        try:
            target = parse_milli(str(value)) / 1000
        except QuantityError:
            continue
        targets.append({"name": name, "target": target})
    if not targets:
        return
    spec["scaleMetric"], spec["scaleTarget"] = targets[0]["name"], targets[0]["target"]
    if targets[1:]:
        spec["metrics"] = targets[1:]
    spec["minReplicas"] = int(hpa_spec.get("minReplicas", 1))
    spec["maxReplicas"] = int(hpa_spec["maxReplicas"])


def _from_annotation(objects: Rendered) -> Obj | None:
    """The service a tierserve-autoscaled job carries, with the Deployment's replicas."""
    meta = objects.primary.get("metadata") or {}
    text = (meta.get("annotations") or {}).get(SERVICE_ANNOTATION)
    if not text:
        return None
    doc: Obj = json.loads(text)
    if objects.replicas() is not None:
        doc.setdefault("spec", {})["replicas"] = objects.replicas()
    return doc


def read_back(objects: Rendered, policies: Sequence[ResourcePolicy] = ()) -> Obj:
    """The serving job as the API returns a tierserve InferenceService (``apiVersion``,
    ``kind``, ``metadata``, ``spec``), for ``service_for_update``; ``policies``: the
    namespace's, to tell the virtual-kubelet toleration the rendering adds from the
    user's own."""
    carried = _from_annotation(objects)
    if carried is not None:
        return carried
    primary = objects.primary
    meta = primary.get("metadata") or {}
    name = (meta.get("labels") or {}).get("servingName") or meta["name"]
    namespace = meta.get("namespace") or "default"
    if objects.raw:
        template = (primary.get("spec") or {}).get("template") or {}
        pod = template.get("spec") or {}
        annotations = dict((template.get("metadata") or {}).get("annotations") or {})
    else:
        pod = (primary.get("spec") or {}).get("predictor") or {}
        annotations = dict(meta.get("annotations") or {})
        for key, value in (DEPLOYMENT_MODE, (SERVICE_ANNOTATION, None)):
            if value is None or annotations.get(key) == value:
                annotations.pop(key, None)
    container = _container(pod)
    shell, command = _command(container)
    spec: Obj = {"shell": shell, "command": command}
    for key in ("image", "imagePullPolicy"):
        if container.get(key):
            spec[key] = container[key]
    ports = container.get("ports") or []
    if ports and ports[0].get("containerPort"):
        spec["port"] = int(ports[0]["containerPort"])
    _resources(container, spec)
    # literal values only (the API server leaves out an empty one): a valueFrom is not
    # the rendering's, nor a flag's, to write
    env = {
        e["name"]: str(e.get("value", ""))
        for e in container.get("env") or []
        if "name" in e and "valueFrom" not in e
    }
    if env:
        spec["env"] = env
    probe = _probe(container)
    if probe is not None:
        spec["readinessProbe"] = probe
    _volumes(pod, container, spec)
    if pod.get("nodeSelector"):
        spec["nodeSelector"] = dict(pod["nodeSelector"])
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in RENDERED_LABELS}
    if labels:
        spec["labels"] = labels
    _scaling(objects.hpa, spec)
    if objects.raw:
        spec["replicas"] = int((primary.get("spec") or {}).get("replicas", 1))
    else:
        low, high = (int(pod.get(k, 1)) for k in ("minReplicas", "maxReplicas"))
        # autoscaled: as many as KServe's Deployment has now; fixed: min = max
        now = objects.replicas() if objects.hpa is not None else None
        spec["replicas"] = low if now is None else now
        if objects.hpa is None and low == high:
            spec.pop("minReplicas", None)
            spec.pop("maxReplicas", None)
    tolerations = list(pod.get("tolerations") or [])
    doc: Obj = {
        "apiVersion": SERVING_GROUP_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    # What the rendering adds, known only once the rest is read: the virtual-kubelet
    # toleration (last) and KServe's external autoscaler class.
    auto = {"key": VIRTUAL_KUBELET_TAINT.key, "operator": "Exists", "effect": "NoSchedule"}
    so_far = InferenceService.model_validate({**doc, "spec": {**spec, "annotations": annotations}})
    if tolerations and tolerations[-1] == auto and needs_virtual_toleration(so_far, policies):
        tolerations.pop()
    if tolerations:
        spec["tolerations"] = tolerations
    by_tierserve = annotations.get(AUTOSCALER_ANNOTATION) == TIERSERVE
    if (
        not objects.raw
        and annotations.get(AUTOSCALER_CLASS[0]) == AUTOSCALER_CLASS[1]
        and (custom_metric(so_far) or by_tierserve)
    ):
        annotations.pop(AUTOSCALER_CLASS[0])
    if annotations:
        spec["annotations"] = annotations
    return doc


__all__ = ["Rendered", "read_back"]
