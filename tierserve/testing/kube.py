"""A throwaway Kubernetes control plane on 127.0.0.1 for tests and demos.

etcd (Debian ``etcd-server``), kube-apiserver, kube-controller-manager and kube-scheduler,
with a CA, a serving certificate, static bearer tokens and a kubeconfig generated into a
temporary directory. There is no kubelet: nodes are API objects created by the tests and
pods are bound but never run, which is enough for scheduling and scale-in.

Facts that make a kubelet-less control plane usable:

* the ``TaintNodesByCondition`` admission plugin is disabled, otherwise every new node
  gets ``node.kubernetes.io/not-ready:NoSchedule``;
* the node-lifecycle controller is off, otherwise nodes without a kubelet heartbeat are
  tainted unreachable and their pods evicted;
* pods can only be created once the namespace's ``default`` ServiceAccount exists;
* node capacity and conditions are set through the ``status`` subresource;
* the aggregation layer is on (a front-proxy CA of its own, ``front-proxy-ca.crt``, and
  kube-apiserver's client certificate ``front-proxy-client``), so an APIService can
  route to a server on 127.0.0.1 through an ExternalName Service (no cluster network;
  :func:`register_metrics_api` does it for ``tierserve kube metrics``);
* kube-apiserver reaches kubelets (``pods/log``) with a client certificate of the
  testbed's CA (``--kubelet-client-certificate``, CN ``KUBELET_CLIENT``) and checks
  theirs against that CA (``--kubelet-certificate-authority``); a test node agent
  serves with :meth:`ControlPlane.kubelet_tls`;
* the controller-manager's HPA controller syncs every ``HPA_SYNC_PERIOD`` (1 s, not
  15 s) and stabilises scale-in over ``HPA_DOWNSCALE_STABILIZATION`` (10 s, not 5 min).

The binaries come from ``scripts/k8s-build`` (``~/.cache/tierserve/k8s/<version>/bin``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tierserve.errors import ConflictError, ExternalError, NotFoundError
from tierserve.runtime.kube import manifests
from tierserve.runtime.kube.apply import apply_all
from tierserve.runtime.kube.client import KubeClient
from tierserve.runtime.kube.manifests import DEFAULT_VERSION, extender_stanza
from tierserve.testing.nodeagent import KubeletTLS

COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
ADMIN_TOKEN = "tierserve-admin-token"
FRONT_PROXY_CLIENT = "front-proxy-client"
"""The common name of kube-apiserver's client certificate to aggregated API servers."""
KUBELET_CLIENT = "kube-apiserver-kubelet-client"
"""The common name of kube-apiserver's client certificate to kubelets (kubeadm's)."""
HPA_SYNC_PERIOD = "1s"
"""kube-controller-manager's HPA sync period on the testbed (default 15s)."""
HPA_DOWNSCALE_STABILIZATION = "10s"
"""... and its scale-in stabilisation window (default 5m)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End a process started with ``start_new_session`` and all it started: SIGTERM to its
    process group, SIGKILL after 10 s; nothing if it has exited already."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def bin_dir(version: str | None = None) -> Path:
    """Where ``scripts/k8s-build`` puts the binaries (``K8S_BIN`` overrides)."""
    if os.environ.get("K8S_BIN"):
        return Path(os.environ["K8S_BIN"])
    version = version or os.environ.get("K8S_VERSION", DEFAULT_VERSION)
    root = os.environ.get("K8S_CACHE") or str(Path.home() / ".cache/tierserve/k8s")
    return Path(root) / version / "bin"


def missing_binaries(version: str | None = None) -> list[str]:
    """What is missing to start a control plane (empty: all there)."""
    where = bin_dir(version)
    missing = [str(where / c) for c in COMPONENTS if not os.access(where / c, os.X_OK)]
    if shutil.which(os.environ.get("ETCD", "etcd")) is None:
        missing.append("etcd (apt-get install etcd-server)")
    if shutil.which("openssl") is None:
        missing.append("openssl")
    return missing


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(pki: Path) -> None:
    """A CA, a serving certificate for 127.0.0.1/localhost, and a service-account key."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-days", "2", "-subj", "/CN=tierserve-ca",
        "-out", "ca.crt", cwd=pki,
    )  # fmt: skip
    _openssl("genrsa", "-out", "server.key", "2048", cwd=pki)
    (pki / "san.cnf").write_text(
        "[req]\ndistinguished_name=dn\n[dn]\n[ext]\n"
        "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "req", "-new", "-key", "server.key", "-subj", "/CN=kube-apiserver", "-out", "server.csr",
        cwd=pki,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-extensions", "ext",
        "-out", "server.crt", cwd=pki,
    )  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    # the aggregation layer: the front proxy's own CA (requestheader client CA) and the
    # client certificate kube-apiserver presents to aggregated API servers
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "front-proxy-ca.key",
             cwd=pki)  # fmt: skip
    _openssl(
        "req", "-x509", "-new", "-key", "front-proxy-ca.key", "-days", "2",
        "-subj", "/CN=tierserve-front-proxy-ca", "-out", "front-proxy-ca.crt", cwd=pki,
    )  # fmt: skip
    issue_certificate(pki, "front-proxy-client", FRONT_PROXY_CLIENT, server=False,
                      ca="front-proxy-ca")  # fmt: skip
    # kube-apiserver -> kubelet (pods/log), and a kubelet's serving certificate
    issue_certificate(pki, "kubelet-client", KUBELET_CLIENT, server=False)
    issue_certificate(pki, "kubelet", "tierserve-test-kubelet", server=True)


def issue_certificate(
    pki: Path, name: str, cn: str, server: bool, ca: str = "ca", dns: Sequence[str] = ()
) -> tuple[Path, Path]:
    """A certificate signed by the testbed's CA (``pki/ca.crt``, or ``pki/<ca>.crt``): a
    serving one for 127.0.0.1/localhost (and the names in ``dns``, e.g. a Service's
    ``<name>.<namespace>.svc``), or a client one (``cn`` is the client's name). Returns
    (certificate, key)."""
    key, csr, crt, ext = (pki / f"{name}.{s}" for s in ("key", "csr", "crt", "cnf"))
    # an EC key: a TLS handshake costs the server a P-256 signature (~0.1 ms) instead of
    # an RSA-2048 one (~1.5 ms), and kube-scheduler opens connections often
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key.name, cwd=pki)
    _openssl("req", "-new", "-key", key.name, "-subj", f"/CN={cn}", "-out", csr.name, cwd=pki)
    if server:
        ext.write_text(
            "[ext]\nsubjectAltName=IP:127.0.0.1,DNS:localhost"
            + "".join(f",DNS:{d}" for d in dns)
            + "\n"
            "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        )
    else:
        ext.write_text(
            "[ext]\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
        )
    _openssl(
        "x509", "-req", "-in", csr.name, "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial",
        "-days", "2", "-extfile", ext.name, "-extensions", "ext", "-out", crt.name, cwd=pki,
    )  # fmt: skip
    return crt, key


def write_kubeconfig(path: Path, server: str, ca: Path, token: str, user: str) -> None:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: testbed
  context: {{cluster: testbed, user: {user}, namespace: default}}
current-context: testbed
"""
    )


@dataclass
class ControlPlane:
    """A running control plane; use :func:`control_plane` (or ``start``/``stop``)."""

    root: Path
    version: str = DEFAULT_VERSION
    api_port: int = 0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_s: float = 0.0

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def ca(self) -> Path:
        return self.root / "pki" / "ca.crt"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def kubelet_tls(self) -> KubeletTLS:
        """What a test node agent serves its kubelet endpoint with: the testbed's kubelet
        certificate (127.0.0.1), answering kube-apiserver's client certificate only."""
        pki = self.root / "pki"
        return KubeletTLS(pki / "kubelet.crt", pki / "kubelet.key", self.ca, (KUBELET_CLIENT,))

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.logs.mkdir(exist_ok=True)
        log = (self.logs / f"{name}.log").open("wb")
        # Own process group, so stop() can end the component and anything it started.
        self.processes[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def start(self, timeout_s: float = 120.0) -> None:
        begin = time.monotonic()
        missing = missing_binaries(self.version)
        if missing:
            raise NotFoundError("cannot start a control plane, missing: " + ", ".join(missing))
        bins = bin_dir(self.version)
        pki = self.root / "pki"
        _certificates(pki)
        tokens = self.root / "tokens.csv"
        users = {
            "admin": (ADMIN_TOKEN, "system:masters"),
            # system:masters: with one identity for all controllers (no per-controller service
            # account credentials) the stock system:kube-controller-manager role is too narrow.
            "system:kube-controller-manager": ("tierserve-kcm-token", "system:masters"),
            "system:kube-scheduler": ("tierserve-scheduler-token", ""),
        }
        tokens.write_text(
            "".join(
                f'{tok},{user},{user},"{group}"\n' if group else f"{tok},{user},{user}\n"
                for user, (tok, group) in users.items()
            )
        )
        self.api_port = free_port()
        etcd_client, etcd_peer = free_port(), free_port()
        self._spawn(
            "etcd",
            [
                os.environ.get("ETCD", "etcd"),
                "--data-dir", str(self.root / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
                "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
                "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync", "--log-level", "warn",
            ],
        )  # fmt: skip
        self._spawn(
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--tls-cert-file={pki / 'server.crt'}",
                f"--tls-private-key-file={pki / 'server.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={tokens}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=Node,RBAC",
                "--disable-admission-plugins=TaintNodesByCondition",
                f"--cert-dir={pki}",
                "--endpoint-reconciler-type=none",
                # the aggregation layer (APIService: tierserve's custom metrics API)
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                # kubelets (the test node agent): pods/log
                f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--v=1",
            ],
        )
        write_kubeconfig(self.kubeconfig, self.server, self.ca, ADMIN_TOKEN, "admin")
        self._wait_ready(begin + timeout_s)
        for name, (tok, _) in list(users.items())[1:]:
            short = name.split(":")[1]
            write_kubeconfig(self.root / f"{short}.kubeconfig", self.server, self.ca, tok, name)
        self._spawn(
            "kube-controller-manager",
            [
                str(bins / "kube-controller-manager"),
                f"--kubeconfig={self.root / 'kube-controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--controllers=*,-nodelifecycle,-node-lifecycle-controller,-nodeipam",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
                "--concurrent-replicaset-syncs=5",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                # the stock HPA controller, quick enough for tests
                f"--horizontal-pod-autoscaler-sync-period={HPA_SYNC_PERIOD}",
                f"--horizontal-pod-autoscaler-downscale-stabilization={HPA_DOWNSCALE_STABILIZATION}",
                "--v=1",
            ],
        )
        self.start_scheduler("kube-scheduler", None)
        self._wait_service_account(begin + timeout_s)
        self.started_s = time.monotonic() - begin

    def start_scheduler(self, name: str, config: Path | None) -> None:
        """Start a kube-scheduler (``config``: a KubeSchedulerConfiguration file)."""
        kubeconfig = self.root / "kube-scheduler.kubeconfig"
        if config is None:
            config = self.root / f"{name}.yaml"
            config.write_text(scheduler_config(kubeconfig))
        self._spawn(
            name,
            [
                str(bin_dir(self.version) / "kube-scheduler"),
                f"--config={config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--v=1",
            ],
        )

    def stop_process(self, name: str) -> None:
        proc = self.processes.pop(name, None)
        if proc is not None:
            stop_group(proc)

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop_process(name)

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def get(self, path: str) -> bytes:
        req = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        with urllib.request.urlopen(req, context=self._context(), timeout=5) as resp:
            data: bytes = resp.read()
            return data

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise ExternalError(f"{name} exited with {proc.returncode}:\n{tail}")

    def _wait_ready(self, deadline: float) -> None:
        while True:
            self._check_alive()
            with contextlib.suppress(OSError):
                if self.get("/readyz") == b"ok":
                    return
            if time.monotonic() > deadline:
                raise ExternalError(f"kube-apiserver not ready; see {self.logs}")
            time.sleep(0.2)

    def _wait_service_account(self, deadline: float) -> None:
        while True:
            self._check_alive()
            with contextlib.suppress(OSError):
                self.get("/api/v1/namespaces/default/serviceaccounts/default")
                return
            if time.monotonic() > deadline:
                raise ExternalError(f"no default ServiceAccount; see {self.logs}")
            time.sleep(0.2)


def scheduler_config(
    kubeconfig: Path,
    profile: str = "default-scheduler",
    extender: str | None = None,
    tls_config: dict[str, str] | None = None,
) -> str:
    """A KubeSchedulerConfiguration for the testbed: no leader election, one profile,
    optionally the tierserve extender (filter, prioritize, bind; not ignorable; HTTPS
    with ``tls_config`` for an ``https://`` URL)."""
    config: dict[str, object] = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig), "qps": 200, "burst": 400},
        "leaderElection": {"leaderElect": False},
        "profiles": [{"schedulerName": profile}],
    }
    if extender:
        config["extenders"] = [extender_stanza(extender, tls_config=tls_config)]
        config["percentageOfNodesToScore"] = 100  # as the rendered manifests do
    return yaml.safe_dump(config, sort_keys=False)


@contextlib.contextmanager
def control_plane(root: Path | None = None, version: str | None = None) -> Iterator[ControlPlane]:
    """Start a control plane in ``root`` (a temporary directory by default); always stop it."""
    tmp = None
    if root is None:
        tmp = tempfile.mkdtemp(prefix="tierserve-k8s-")
        root = Path(tmp)
    plane = ControlPlane(
        root=root, version=version or os.environ.get("K8S_VERSION", DEFAULT_VERSION)
    )
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
        if tmp is not None and not os.environ.get("TIERSERVE_KEEP_TESTBED"):
            shutil.rmtree(tmp, ignore_errors=True)


METRICS_APISERVICE = (
    f"/apis/apiregistration.k8s.io/v1/apiservices/"
    f"{manifests.METRICS_VERSION}.{manifests.METRICS_GROUP}"
)


async def register_metrics_api(
    kube: KubeClient, port: int, ca: Path, timeout_s: float = 60
) -> None:
    """Route the custom metrics API to ``tierserve kube metrics`` on 127.0.0.1:``port``
    (its serving certificate signed by ``ca``, for ``tierserve-metrics.<ns>.svc``): the
    manifests' APIService, to an ExternalName Service (the testbed has no cluster
    network; kube-apiserver resolves it to ``localhost:<port>``). Waits until it is
    Available."""
    ns, name = manifests.ManifestOptions.namespace, manifests.METRICS_NAME
    with contextlib.suppress(ConflictError):
        await kube.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "ExternalName", "externalName": "localhost",
                 "ports": [{"name": "https", "port": port}]},
    }  # fmt: skip
    apiservice = manifests.metrics_apiservice(
        manifests.ManifestOptions(),
        service={"namespace": ns, "name": name, "port": port},
        ca_bundle=base64.b64encode(ca.read_bytes()).decode(),
    )
    await apply_all(kube, [service, apiservice])
    deadline = time.monotonic() + timeout_s
    while True:
        status = (await kube.get(METRICS_APISERVICE)).get("status") or {}
        conditions = status.get("conditions") or []
        if any(c["type"] == "Available" and c["status"] == "True" for c in conditions):
            return
        if time.monotonic() > deadline:
            raise ExternalError(f"APIService not available after {timeout_s:g} s: {conditions}")
        await asyncio.sleep(0.25)


async def unregister_metrics_api(kube: KubeClient) -> None:
    """Remove the APIService (an unavailable aggregated API slows every discovery and
    stalls namespace deletion) and its Service."""
    ns, name = manifests.ManifestOptions.namespace, manifests.METRICS_NAME
    for path in (METRICS_APISERVICE, f"/api/v1/namespaces/{ns}/services/{name}"):
        with contextlib.suppress(NotFoundError):
            await kube.delete(path)
