{{/* Chart name, truncated to a DNS label. */}}
{{- define "gridwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix of every resource. Kept to 40 characters so that suffixed
names ("-connector-influxdb", "-dashboard-…") stay DNS labels.
*/}}
{{- define "gridwatch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gridwatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every resource carries. */}}
{{- define "gridwatch.labels" -}}
helm.sh/chart: {{ include "gridwatch.chart" . }}
app.kubernetes.io/name: {{ include "gridwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gridwatch
{{- end }}

{{/* Selector labels of one component: pass (dict "ctx" $ "component" "pipeline"). */}}
{{- define "gridwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gridwatch.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "gridwatch.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "gridwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gridwatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding tokens and keys: the user's, or the chart's. */}}
{{- define "gridwatch.secretName" -}}
{{- default (include "gridwatch.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Where the Secret's keys are mounted as files in every pod. */}}
{{- define "gridwatch.secretDir" -}}/etc/gridwatch/secrets{{- end }}
{{- define "gridwatch.fluvioTlsDir" -}}/etc/gridwatch/fluvio-tls{{- end }}
{{- define "gridwatch.modulesDir" -}}/usr/share/gridwatch/modules{{- end }}
{{- define "gridwatch.dataDir" -}}/var/lib/gridwatch{{- end }}

{{/* Refuses value combinations that cannot work, naming the key. */}}
{{- define "gridwatch.validate" -}}
{{- if not (has .Values.backend (list "fluvio" "embedded")) }}
{{- fail (printf "backend = %q is not allowed: fluvio or embedded" .Values.backend) }}
{{- end }}
{{- if and (eq .Values.backend "embedded") (gt (int .Values.pipeline.replicas) 1) }}
{{- fail (printf "pipeline.replicas = %d is not allowed with backend = embedded: the embedded log lives on one pod's volume; use backend = fluvio to scale out" (int .Values.pipeline.replicas)) }}
{{- end }}
{{- if and (eq .Values.backend "fluvio") (lt (int .Values.fluvio.partitions) (int .Values.pipeline.replicas)) }}
{{- fail (printf "fluvio.partitions = %d is not allowed with pipeline.replicas = %d: every replica needs at least one partition" (int .Values.fluvio.partitions) (int .Values.pipeline.replicas)) }}
{{- end }}
{{- if and .Values.fluvio.tls.enabled (not .Values.fluvio.tls.existingSecret) }}
{{- fail "fluvio.tls.existingSecret must name a Secret with ca.crt, tls.crt and tls.key when fluvio.tls.enabled is true" }}
{{- end }}
{{- if and .Values.sinks.kafka.enabled (not .Values.sinks.kafka.brokers) }}
{{- fail "sinks.kafka.brokers must be set when sinks.kafka.enabled is true" }}
{{- end }}
{{- if and .Values.sinks.influxdb.enabled (not .Values.sinks.influxdb.url) }}
{{- fail "sinks.influxdb.url must be set when sinks.influxdb.enabled is true" }}
{{- end }}
{{- if and .Values.sinks.lake.enabled (not .Values.sinks.lake.url) }}
{{- fail "sinks.lake.url must be set when sinks.lake.enabled is true" }}
{{- end }}
{{- if and .Values.sources.mqtt.enabled (not .Values.sources.mqtt.url) }}
{{- fail "sources.mqtt.url must be set when sources.mqtt.enabled is true" }}
{{- end }}
{{- end }}

{{/*
The gridwatch configuration, as a dict; "component" selects what goes in:
"pipeline" (everything) or "register" (what the registration Job needs).
Secrets never appear here: they are files under secretDir or env vars.
*/}}
{{- define "gridwatch.configDict" -}}
{{- $v := .ctx.Values }}
{{- $secretDir := include "gridwatch.secretDir" .ctx }}
{{- $c := dict
  "data_dir" (include "gridwatch.dataDir" .ctx)
  "backend" $v.backend
  "http" (dict "listen" (printf "0.0.0.0:%d" 8080))
  "admin" (dict "token_file" (printf "%s/admin-token" $secretDir))
  "runtime" (dict "modules_dir" (include "gridwatch.modulesDir" .ctx))
  "detector" (dict
      "window" $v.detector.window
      "threshold" $v.detector.threshold
      "min_samples" $v.detector.minSamples
      "fields" $v.detector.fields
      "allowed_lateness" $v.detector.allowedLateness
      "idle_timeout" $v.detector.idleTimeout)
  "simulator" (dict "enabled" $v.simulator.enabled "meters" $v.simulator.meters "rate" $v.simulator.rate)
}}
{{- if eq $v.backend "fluvio" }}
{{- $f := dict "partitions" $v.fluvio.partitions "instances" $v.pipeline.replicas }}
{{- if $v.fluvio.profile }}{{ $_ := set $f "profile" $v.fluvio.profile }}{{ else }}{{ $_ := set $f "endpoint" $v.fluvio.endpoint }}{{ end }}
{{- if $v.fluvio.tls.enabled }}
{{- $dir := include "gridwatch.fluvioTlsDir" .ctx }}
{{- $_ := set $f "tls" (dict "domain" $v.fluvio.tls.domain "ca_cert" (printf "%s/ca.crt" $dir) "cert" (printf "%s/tls.crt" $dir) "key" (printf "%s/tls.key" $dir)) }}
{{- end }}
{{- $_ := set $c "fluvio" $f }}
{{- end }}
{{- if $v.registry.url }}
{{- $_ := set $c "registry" (dict "url" $v.registry.url "api" $v.registry.api "group" $v.registry.group "compatibility" $v.registry.compatibility) }}
{{- end }}
{{- if and (eq .component "pipeline") $v.sources.mqtt.enabled }}
{{- $_ := set $c "sources" (dict "mqtt" (dict "url" $v.sources.mqtt.url "topics" $v.sources.mqtt.topics "qos" $v.sources.mqtt.qos)) }}
{{- end }}
{{- if and (eq .component "pipeline") (eq $v.sinks.mode "inProcess") }}
{{- $s := dict }}
{{- range $name := list "kafka" "influxdb" "lake" }}
{{- if (index $v.sinks $name).enabled }}
{{- $_ := set $s $name (include "gridwatch.sinkSection" (dict "ctx" $.ctx "sink" $name) | fromYaml) }}
{{- end }}
{{- end }}
{{- if $s }}{{ $_ := set $c "sinks" $s }}{{ end }}
{{- end }}
{{- if eq .component "pipeline" }}
{{- $c = mustMergeOverwrite $c (deepCopy $v.config) }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{/*
One sink's settings in the binary's `sinks.<name>` form, used both for the
in-process config and for a connector's own section. Secrets are files
(`*_file`) or env vars set in the pod, never inline.
*/}}
{{- define "gridwatch.sinkSection" -}}
{{- $v := .ctx.Values }}
{{- $secretDir := include "gridwatch.secretDir" .ctx }}
{{- if eq .sink "kafka" }}
{{- $k := $v.sinks.kafka }}
brokers:
{{- range $b := splitList "," $k.brokers }}
{{- if trim $b }}
  - {{ trim $b | quote }}
{{- end }}
{{- end }}
topic: {{ $k.topic | quote }}
{{- if $k.dlqTopic }}
dlq_topic: {{ $k.dlqTopic | quote }}
{{- end }}
{{- if $k.sasl.enabled }}
sasl:
  mechanism: {{ $k.sasl.mechanism | quote }}
  username: {{ $k.sasl.username | quote }}
  password_file: {{ printf "%s/kafka-sasl-password" $secretDir | quote }}
{{- end }}
{{- else if eq .sink "influxdb" }}
{{- $i := $v.sinks.influxdb }}
url: {{ $i.url | quote }}
api: {{ $i.api | quote }}
{{- if eq $i.api "v1" }}
database: {{ $i.database | quote }}
{{- else }}
org: {{ $i.org | quote }}
bucket: {{ $i.bucket | quote }}
token_file: {{ printf "%s/influxdb-token" $secretDir | quote }}
{{- end }}
{{- else if eq .sink "lake" }}
{{- $l := $v.sinks.lake }}
url: {{ $l.url | quote }}
{{- if $l.endpoint }}
endpoint: {{ $l.endpoint | quote }}
{{- end }}
region: {{ $l.region | quote }}
path_style: {{ $l.pathStyle }}
access_key_id_file: {{ printf "%s/s3-access-key-id" $secretDir | quote }}
secret_access_key_file: {{ printf "%s/s3-secret-access-key" $secretDir | quote }}
{{- end }}
{{- end }}

{{/* Env vars carrying the registry credentials into a container (the other secrets are files). */}}
{{- define "gridwatch.secretEnv" -}}
{{- $v := .ctx.Values }}
{{- $secret := include "gridwatch.secretName" .ctx }}
{{- if and $v.registry.url (ne $v.registry.auth.type "none") }}
- name: GRIDWATCH_REGISTRY__AUTH__TYPE
  value: {{ $v.registry.auth.type | quote }}
{{- if eq $v.registry.auth.type "basic" }}
- name: GRIDWATCH_REGISTRY__AUTH__USERNAME
  value: {{ $v.registry.auth.username | quote }}
- name: GRIDWATCH_REGISTRY__AUTH__PASSWORD
{{- else }}
- name: GRIDWATCH_REGISTRY__AUTH__TOKEN
{{- end }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.registry.auth.passwordKey }}
{{- end }}
{{- end }}

{{/* Volumes every Gridwatch pod mounts: its config, the Secret, Fluvio TLS. */}}
{{- define "gridwatch.commonVolumes" -}}
- name: secrets
  secret:
    secretName: {{ include "gridwatch.secretName" .ctx }}
    defaultMode: 0440
{{- if and (eq .ctx.Values.backend "fluvio") .ctx.Values.fluvio.tls.enabled }}
- name: fluvio-tls
  secret:
    secretName: {{ .ctx.Values.fluvio.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
- name: tmp
  emptyDir: {}
{{- end }}

{{- define "gridwatch.commonMounts" -}}
- name: secrets
  mountPath: {{ include "gridwatch.secretDir" .ctx }}
  readOnly: true
{{- if and (eq .ctx.Values.backend "fluvio") .ctx.Values.fluvio.tls.enabled }}
- name: fluvio-tls
  mountPath: {{ include "gridwatch.fluvioTlsDir" .ctx }}
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end }}
