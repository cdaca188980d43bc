{{/* The chart name, or nameOverride. */}}
{{- define "edict.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else the release name when it already
contains the chart name (`helm install edict ...` gives `edict`), else <release>-<chart>.
*/}}
{{- define "edict.fullname" -}}
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

{{/* The chart label value: <name>-<version>. */}}
{{- define "edict.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "edict.labels" -}}
helm.sh/chart: {{ include "edict.chart" . }}
{{ include "edict.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: edict
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels on the operator pods: no chart version or manager, so a chart bump alone restarts nothing. */}}
{{- define "edict.podLabels" -}}
{{ include "edict.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: edict
{{- end }}

{{/* Labels that select the operator pods. Never change them: Deployment selectors are immutable. */}}
{{- define "edict.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edict.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "edict.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "edict.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Kubernetes username edict acts as: system:serviceaccount:<namespace>:<name>. */}}
{{- define "edict.username" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "edict.serviceAccountName" .) }}
{{- end }}

{{/* The image reference: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "edict.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
