{{- define "triton-repo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "triton-repo.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "triton-repo.labels" -}}
{{ include "triton-repo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- /* Build Jobs' pods: not app.kubernetes.io/name=<chart>, so no Service, the Deployment or the PDB selects them. */ -}}
{{- define "triton-repo.build.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-build
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: build
{{- end -}}

{{- define "triton-repo.build.labels" -}}
{{ include "triton-repo.build.selectorLabels" . }}
app.kubernetes.io/part-of: {{ .Chart.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
