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
# Watch TokenRotations and write their status; patch adds and removes the finalizer a
# rotation in flight holds (deleting the resource then rolls the rotation back first).
- apiGroups: ["tokenrotator.io"]
  resources: ["tokenrotations"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["tokenrotator.io"]
  resources: ["tokenrotations/status"]
  verbs: ["get", "update", "patch"]
# The staging Secret is owned by its TokenRotation with blockOwnerDeletion, which clusters
# running the OwnerReferencesPermissionEnforcement admission plugin (e.g. OpenShift) only
# allow to those who may update the owner's finalizers.
- apiGroups: ["tokenrotator.io"]
  resources: ["tokenrotations/finalizers"]
  verbs: ["update"]
# Target Secrets (server-side apply), a staging Secret per rotation, the credentials Secret.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Restart (pod template annotation) and roll back consuming workloads.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "list", "watch", "patch"]
# Events about TokenRotations (events.k8s.io; core events for older API servers).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
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
