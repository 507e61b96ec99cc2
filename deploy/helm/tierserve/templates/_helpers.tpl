{{/*
Names are fixed, as `tierserve kube manifests` renders them: the scheduler's
configuration, the certificates and the webhook refer to tierserve-extender.<namespace>.svc.
*/}}

{{- define "tierserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Standard labels on every object's metadata. */}}
{{- define "tierserve.labels" -}}
helm.sh/chart: {{ include "tierserve.chart" . }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tierserve
{{- end -}}

{{/*
Pod labels of a component (its name is the selector, as in the manifests: the Service,
PDB and NetworkPolicy select app.kubernetes.io/name). Call with (list . "name").
*/}}
{{- define "tierserve.podLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/part-of: tierserve
app.kubernetes.io/instance: {{ $root.Release.Name }}
{{- end -}}

{{- define "tierserve.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The ResourcePolicy API group of the CRD. */}}
{{- define "tierserve.group" -}}
{{- ternary "scheduling.alibabacloud.com" "scheduling.tierserve.io" .Values.ackCompatible -}}
{{- end -}}

{{- define "tierserve.schedulerName" -}}
{{- required "scheduler.name is required" .Values.scheduler.name -}}
{{- end -}}

{{- define "tierserve.extenderSecret" -}}
{{- required "tls.extenderSecret is required" .Values.tls.extenderSecret -}}
{{- end -}}

{{- define "tierserve.clientSecret" -}}
{{- .Values.tls.schedulerClientSecret | default (printf "%s-client" (include "tierserve.schedulerName" .)) -}}
{{- end -}}

{{/* Settings that cannot work together. */}}
{{- define "tierserve.validate" -}}
{{- if and (gt (int .Values.extender.replicas) 1) (not .Values.extender.leaderElection.enabled) -}}
{{- fail "extender.replicas > 1 needs extender.leaderElection.enabled: two active extenders would each place pods up to a unit's max" -}}
{{- end -}}
{{- end -}}

{{/* The security context of every container (non-root 65532, read-only root). */}}
{{- define "tierserve.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
runAsUser: 65532
{{- end -}}

{{/* nodeSelector, tolerations, affinity and image pull secrets of a pod, when set. */}}
{{- define "tierserve.podPlacement" -}}
{{- $root := index . 0 -}}
{{- $v := index . 1 -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The second scheduler's KubeSchedulerConfiguration. */}}
{{- define "tierserve.schedulerConfig" -}}
{{- $sched := include "tierserve.schedulerName" . -}}
{{- $client := "/etc/kubernetes/tierserve/client" -}}
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection:
  leaderElect: true
  resourceNamespace: {{ .Release.Namespace }}
  resourceName: {{ $sched }}
# every feasible node is scored: with the default sample (as low as 5 % of a large
# cluster) kube-scheduler may send the extender a sample without the virtual node
percentageOfNodesToScore: 100
profiles:
- schedulerName: {{ $sched }}
extenders:
- urlPrefix: https://tierserve-extender.{{ .Release.Namespace }}.svc:8890
  filterVerb: filter
  prioritizeVerb: prioritize
  bindVerb: bind
  weight: 1
  enableHTTPS: true
  nodeCacheCapable: true
  ignorable: false
  httpTimeout: 5s
  tlsConfig:
    caFile: {{ $client }}/ca.crt
    certFile: {{ $client }}/tls.crt
    keyFile: {{ $client }}/tls.key
{{- end -}}
