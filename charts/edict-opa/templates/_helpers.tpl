{{/* The chart name, or nameOverride. */}}
{{- define "edict-opa.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects: fullnameOverride, else the release name when it
already contains the chart name, else <release>-<chart>. */}}
{{- define "edict-opa.fullname" -}}
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

{{/* Labels on every object. */}}
{{- define "edict-opa.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "edict-opa.selectorLabels" . }}
app.kubernetes.io/version: {{ include "edict-opa.tag" . | quote }}
app.kubernetes.io/component: {{ .Values.mode }}
app.kubernetes.io/part-of: edict
app.kubernetes.io/managed-by: {{ .Release.Service }}
edict.dev/system: {{ include "edict-opa.system" . }}
{{- end }}

{{/* Labels that select the OPA pods. Never change them: Deployment selectors are immutable. */}}
{{- define "edict-opa.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edict-opa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The System this OPA serves. */}}
{{- define "edict-opa.system" -}}
{{- required "system must name the edict System this OPA serves (its ConfigMap is <system>-opa-config)" .Values.system }}
{{- end }}

{{/* The ServiceAccount OPA runs as: the System's spec.serviceAccountName. */}}
{{- define "edict-opa.serviceAccountName" -}}
{{- required "serviceAccount.name must be the System's spec.serviceAccountName" .Values.serviceAccount.name }}
{{- end }}

{{/* The image tag: the OPA release, with -envoy in envoy mode. */}}
{{- define "edict-opa.tag" -}}
{{- $version := .Values.image.tag | default .Chart.AppVersion }}
{{- if and (eq .Values.mode "envoy") (not (hasSuffix "-envoy" $version)) (not (contains "-envoy-" $version)) }}
{{- printf "%s-envoy" $version }}
{{- else }}
{{- $version }}
{{- end }}
{{- end }}

{{/* The Secret holding OPA's serving certificate. */}}
{{- define "edict-opa.tlsSecretName" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "edict-opa.fullname" .)) }}
{{- end }}
