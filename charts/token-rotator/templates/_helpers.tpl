{{/* Chart name, overridable. */}}
{{- define "token-rotator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name: <release>-<chart>, or the release name alone when it already
contains the chart name. Truncated to 63 characters (the DNS label limit of some names).
*/}}
{{- define "token-rotator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "token-rotator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "token-rotator.labels" -}}
helm.sh/chart: {{ include "token-rotator.chart" . }}
{{ include "token-rotator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: token-rotator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that identify this release's pods; immutable in the Deployment selector. */}}
{{- define "token-rotator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "token-rotator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "token-rotator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "token-rotator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when a digest is given, else repository:tag (tag defaults to appVersion). */}}
{{- define "token-rotator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "token-rotator.pullPolicy" -}}
{{- if .Values.image.pullPolicy }}
{{- .Values.image.pullPolicy }}
{{- else if .Values.image.digest }}
{{- "IfNotPresent" }}
{{- else }}
{{- "Always" }}
{{- end }}
{{- end }}

{{/*
Namespaces the operator manages in `namespaces` mode; fails with a message naming the value
(values.schema.json rejects this first; this guards a chart rendered with schema validation off).
*/}}
{{- define "token-rotator.watchNamespaces" -}}
{{- if not .Values.rbac.namespaces }}
{{- fail "rbac.namespaces must list at least one namespace when rbac.scope is \"namespaces\"" }}
{{- end }}
{{- join "," .Values.rbac.namespaces }}
{{- end }}

{{/*
What the operator does in the API, and nothing more. Shared by the ClusterRole (scope cluster)
and the per-namespace Roles (scope namespaces).
*/}}
{{- define "token-rotator.operatorRules" -}}
# Every verb here is used by the operator: tests/rbac.rs runs it under these rules on an
# RBAC-enforcing API server and fails on a 403 or on a verb it never needed.
# Watch TokenRotations; patch adds and removes the finalizer a rotation in flight holds.
- apiGroups: ["tokenrotator.io"]
  resources: ["tokenrotations"]
  verbs: ["get", "list", "watch", "patch"]
# Status is written whole (PUT), before every irreversible step.
- apiGroups: ["tokenrotator.io"]
  resources: ["tokenrotations/status"]
  verbs: ["update"]
# Target Secrets and the staging Secret are written by server-side apply, which needs create
# when the Secret does not exist yet; delete removes the staging Secret; the credentials
# Secret is read.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Restart (pod template annotation, server-side apply) and roll back consuming workloads,
# which are watched, not fetched one by one.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["list", "watch", "patch"]
# The Pod-level barrier: pods that read a target Secret are listed once the workloads are
# through, and promotion waits until none holds the old token; delete is for
# workloads.unmanagedPods: Delete.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "delete"]
# A consumer pod's owner: the Deployment or Argo Rollout behind its ReplicaSet.
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["get"]
# Argo Rollouts are restarted by setting spec.restartAt (read first, then server-side apply).
- apiGroups: ["argoproj.io"]
  resources: ["rollouts"]
  verbs: ["get", "patch"]
# Events about TokenRotations; a repeated Event is patched (its series counted).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
checkov finding CKV2_K8S_5 ("No ServiceAccount should be able to read all secrets") is inherent
to the operator: it reads Secrets whose names users choose in each TokenRotation, so RBAC cannot
name them (resourceNames). Rendered into the operator's (Cluster)RoleBindings.
*/}}
{{- define "token-rotator.skipReadSecrets" -}}
checkov.io/skip1: CKV2_K8S_5=The operator reads and rotates Secrets whose names users choose per TokenRotation so RBAC cannot restrict it by resourceNames; use rbac.scope namespaces to limit it to listed namespaces
{{- end }}
