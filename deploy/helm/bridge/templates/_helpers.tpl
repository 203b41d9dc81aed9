{{/* The release's name for its objects: <release>-bridge, or the release name when it already says bridge. */}}
{{- define "bridge.fullname" -}}
{{- if contains "bridge" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-bridge" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "bridge.selectorLabels" -}}
app.kubernetes.io/name: bridge
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "bridge.labels" -}}
{{ include "bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "bridge.secretName" -}}
{{- if .Values.secret.create -}}
{{ include "bridge.fullname" . }}
{{- else -}}
{{ required "secret.existingSecret is required unless secret.create is true" .Values.secret.existingSecret }}
{{- end -}}
{{- end -}}
