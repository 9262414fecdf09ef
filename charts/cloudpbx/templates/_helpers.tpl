{{/*
Names, labels, image references and store Secrets, defined once for every template.
*/}}

{{- define "cloudpbx.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-cloudpbx, or the release name when it already says cloudpbx. */}}
{{- define "cloudpbx.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "cloudpbx.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The labels that tie an object to this release (selectors use these only). */}}
{{- define "cloudpbx.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cloudpbx.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cloudpbx.labels" -}}
{{ include "cloudpbx.selectorLabels" . }}
app.kubernetes.io/part-of: cloudpbx
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: (dict "root" $ "component" "operator"). */}}
{{- define "cloudpbx.componentLabels" -}}
{{ include "cloudpbx.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cloudpbx.componentSelector" -}}
{{ include "cloudpbx.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image reference: (dict "image" .Values.edge.image "root" $) -> repo:tag[@digest]. */}}
{{- define "cloudpbx.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag -}}
{{- if .image.digest -}}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "cloudpbx.operatorServiceAccount" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "cloudpbx.fullname" .)) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name names the existing ServiceAccount when create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* kopf's ClusterKopfPeering of the operator's replicas (cluster-scoped, like the ClusterRole). */}}
{{- define "cloudpbx.peering" -}}
{{- printf "%s-operator" (include "cloudpbx.fullname" .) -}}
{{- end -}}

{{- define "cloudpbx.platformConfigMap" -}}
{{- printf "%s-platform" (include "cloudpbx.fullname" .) -}}
{{- end -}}

{{- define "cloudpbx.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "cloudpbx.fullname" .) -}}
{{- end -}}

{{- define "cloudpbx.redis.fullname" -}}
{{- printf "%s-redis" (include "cloudpbx.fullname" .) -}}
{{- end -}}

{{/* The Secret and key holding the billing store's URL (bundled PostgreSQL or external). */}}
{{- define "cloudpbx.billingSecretName" -}}
{{- if .Values.postgresql.enabled -}}
{{- printf "%s-dsn" (include "cloudpbx.postgresql.fullname" .) -}}
{{- else -}}
{{- required "externalDatabase.existingSecret is required unless postgresql.enabled" .Values.externalDatabase.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "cloudpbx.billingSecretKey" -}}
{{- if .Values.postgresql.enabled -}}dsn{{- else -}}{{ .Values.externalDatabase.existingSecretKey }}{{- end -}}
{{- end -}}

{{- define "cloudpbx.redisSecretName" -}}
{{- if .Values.redis.enabled -}}
{{- printf "%s-url" (include "cloudpbx.redis.fullname" .) -}}
{{- else -}}
{{- required "externalRedis.existingSecret is required unless redis.enabled" .Values.externalRedis.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "cloudpbx.redisSecretKey" -}}
{{- if .Values.redis.enabled -}}url{{- else -}}{{ .Values.externalRedis.existingSecretKey }}{{- end -}}
{{- end -}}

{{/*
A password generated once: the value given, else the one already in the Secret (kept
across upgrades), else a new random one. (dict "root" $ "secret" NAME "key" KEY "given" VALUE)
*/}}
{{- define "cloudpbx.password" -}}
{{- if .given -}}
{{- .given -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The security context of every container the chart renders: non-root, nothing extra. */}}
{{- define "cloudpbx.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
