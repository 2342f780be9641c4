{{/* The value of istio.io/rev: Istio calls the unnamed revision "default". */}}
{{- define "mizzen.rev" -}}
{{- .Values.revision | default "default" -}}
{{- end -}}

{{/* "-<revision>" for a named revision, else nothing. */}}
{{- define "mizzen.suffix" -}}
{{- if .Values.revision -}}-{{ .Values.revision }}{{- end -}}
{{- end -}}

{{/* Name of the control plane's Deployment, Service and ServiceAccount. */}}
{{- define "mizzen.istiod" -}}
istiod{{ include "mizzen.suffix" . }}
{{- end -}}

{{- define "mizzen.injector" -}}
istio-sidecar-injector{{ include "mizzen.suffix" . }}
{{- end -}}

{{- define "mizzen.validator" -}}
istio-validator{{ include "mizzen.suffix" . }}-{{ .Release.Namespace }}
{{- end -}}

{{- define "mizzen.clusterrole" -}}
istiod-clusterrole{{ include "mizzen.suffix" . }}-{{ .Release.Namespace }}
{{- end -}}

{{- define "mizzen.labels" -}}
app: istiod
istio: pilot
istio.io/rev: {{ include "mizzen.rev" . | quote }}
{{- end -}}

{{/* Where the webhooks reach the control plane; caBundle is patched in at run time. */}}
{{- define "mizzen.webhookService" -}}
service:
  name: {{ include "mizzen.istiod" .root }}
  namespace: {{ .root.Release.Namespace }}
  path: {{ .path }}
  port: 443
{{- end -}}
