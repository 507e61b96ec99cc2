"""Typed objects (Node, ResourcePolicy, InferenceService, Replica, storage) and YAML I/O."""

from tierserve.model.base import ObjectMeta, TypedObject
from tierserve.model.loader import KINDS, dump_documents, load_documents, parse_object
from tierserve.model.node import VIRTUAL_KUBELET_TAINT, GPUSpec, Node, NodeSpec, VirtualSpec
from tierserve.model.replica import Phase, Replica, ReplicaSpec, ReplicaStatus
from tierserve.model.resourcepolicy import ResourcePolicy, Unit, WhenTryNextUnits
from tierserve.model.resources import CPU, GPU, MEMORY, PODS, Taint, Toleration
from tierserve.model.service import InferenceService
from tierserve.model.storage import PersistentVolume, PersistentVolumeClaim, Secret

__all__ = [
    "CPU",
    "GPU",
    "KINDS",
    "MEMORY",
    "PODS",
    "VIRTUAL_KUBELET_TAINT",
    "GPUSpec",
    "InferenceService",
    "Node",
    "NodeSpec",
    "ObjectMeta",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Phase",
    "Replica",
    "ReplicaSpec",
    "ReplicaStatus",
    "ResourcePolicy",
    "Secret",
    "Taint",
    "Toleration",
    "TypedObject",
    "Unit",
    "VirtualSpec",
    "WhenTryNextUnits",
    "dump_documents",
    "load_documents",
    "parse_object",
]
