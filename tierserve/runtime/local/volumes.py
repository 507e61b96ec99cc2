"""Resolve a service's ``--data pvc:/path`` volumes to local directories (pure, no I/O).

A claim binds to a PersistentVolume the way Kubernetes would for static volumes:
``spec.volumeName`` first, then a PV whose ``claimRef`` names the claim, then a PV
matched by the claim's ``selector.matchLabels`` (the seed's OSS volume), then a PV
with the claim's own name. The PV's ``local_path()`` is the directory on this machine.
A PV with no claim of that name is accepted too, so one machine needs only the PV.
"""

from __future__ import annotations

from collections.abc import Iterable

from tierserve.errors import NotFoundError
from tierserve.model.service import InferenceService
from tierserve.model.storage import (
    LOCAL_PATH_ANNOTATION,
    PersistentVolume,
    PersistentVolumeClaim,
)


def bound_volume(
    claim_name: str,
    namespace: str,
    claims: Iterable[PersistentVolumeClaim],
    volumes: Iterable[PersistentVolume],
) -> PersistentVolume | None:
    """The PV the claim ``namespace/claim_name`` binds to, or None."""
    pvs = list(volumes)
    by_name = {pv.name: pv for pv in pvs}
    claim = next((c for c in claims if c.name == claim_name and c.namespace == namespace), None)
    if claim is not None and claim.spec.volume_name:
        return by_name.get(claim.spec.volume_name)
    for pv in pvs:
        ref = pv.spec.claim_ref or {}
        if ref.get("name") == claim_name and ref.get("namespace", "default") == namespace:
            return pv
    if claim is not None and claim.spec.selector is not None:
        wanted = claim.spec.selector.match_labels
        for pv in pvs:
            if wanted and all(pv.metadata.labels.get(k) == v for k, v in wanted.items()):
                return pv
    return by_name.get(claim_name)


def resolve_data_dirs(
    service: InferenceService,
    claims: Iterable[PersistentVolumeClaim],
    volumes: Iterable[PersistentVolume],
    default_root: str | None = None,
) -> dict[str, str]:
    """Claim name → local directory for every ``spec.data`` entry of ``service``.

    A PV that names no local directory (e.g. the seed's OSS CSI volume) maps to
    ``<default_root>/<pv name>`` when ``default_root`` is given. Raises ``NotFoundError``
    naming the field when a claim has no PV or the PV no local directory (the caller may
    retry once the volume is applied).
    """
    claims, volumes = list(claims), list(volumes)
    subject = f"InferenceService {service.namespace}/{service.name}"
    dirs: dict[str, str] = {}
    for i, data in enumerate(service.spec.data):
        pv = bound_volume(data.name, service.namespace, claims, volumes)
        if pv is None:
            raise NotFoundError(
                f"{subject}: spec.data[{i}].name: claim {data.name!r} is bound to no "
                "PersistentVolume; expected a PV named like the claim, one its volumeName "
                "names, or one its selector matches"
            )
        path = pv.local_path()
        if path is None and default_root is not None:
            path = f"{default_root.rstrip('/')}/{pv.name}"
        if path is None:
            raise NotFoundError(
                f"{subject}: spec.data[{i}].name: PersistentVolume {pv.name!r} has no local "
                f"directory; expected spec.hostPath.path, spec.local.path or the "
                f"{LOCAL_PATH_ANNOTATION} annotation"
            )
        dirs[data.name] = path
    return dirs
