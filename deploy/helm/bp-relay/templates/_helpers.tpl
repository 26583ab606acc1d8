{{/*
Names, labels and the few derived values every template shares.
*/}}

{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "bp-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: <release>-<chart> unless the release name already has it. */}}
{{- define "bp-relay.fullname" -}}
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

{{- define "bp-relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bp-relay.labels" -}}
helm.sh/chart: {{ include "bp-relay.chart" . }}
{{ include "bp-relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bp-relay
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "bp-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bp-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of the helm test pod: not the selector labels (the Services, the PDB and the
NetworkPolicy must not select it), plus the client label that lets it through the NetworkPolicy.
*/}}
{{- define "bp-relay.testLabels" -}}
helm.sh/chart: {{ include "bp-relay.chart" . }}
app.kubernetes.io/name: {{ include "bp-relay.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: test
{{ include "bp-relay.clientLabel" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Label that lets a pod through the NetworkPolicy as a client (the helm test pod carries it). */}}
{{- define "bp-relay.clientLabel" -}}
{{ include "bp-relay.fullname" . }}-client: "true"
{{- end }}

{{- define "bp-relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bp-relay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Grafana dashboard's uid: namespace and fullname, so that two releases (staging and
production, or one per Authvia environment) never overwrite each other's dashboard in one
Grafana. Grafana allows 40 characters; a longer one keeps its start and a hash of the whole.
*/}}
{{- define "bp-relay.dashboardUid" -}}
{{- $id := printf "%s-%s" .Release.Namespace (include "bp-relay.fullname" .) }}
{{- if gt (len $id) 40 }}
{{- $id = printf "%s-%s" ($id | trunc 31 | trimSuffix "-") ($id | sha256sum | trunc 8) }}
{{- end }}
{{- $id }}
{{- end }}

{{/* The scrape job of this release: the ServiceMonitor sets it, the alerts select on it. */}}
{{- define "bp-relay.job" -}}
{{- include "bp-relay.fullname" . }}
{{- end }}

{{- define "bp-relay.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* True when the Kafka connection uses TLS. */}}
{{- define "bp-relay.kafkaTLS" -}}
{{- if has .Values.kafka.securityProtocol (list "ssl" "sasl_ssl") }}true{{ end }}
{{- end }}

{{/* True when the Kafka connection uses SASL. */}}
{{- define "bp-relay.kafkaSASL" -}}
{{- if has .Values.kafka.securityProtocol (list "sasl_plaintext" "sasl_ssl") }}true{{ end }}
{{- end }}

{{/* True when the actions route has its own signing secrets (`signing.actions`). */}}
{{- define "bp-relay.actionsSigning" -}}
{{- if or .Values.signing.actions.existingSecret .Values.signing.actions.secrets }}true{{ end }}
{{- end }}

{{/* Data of the Secret the chart creates; empty when every credential comes from an existing Secret. */}}
{{- define "bp-relay.secretData" -}}
{{- if not .Values.signing.existingSecret }}
signing-secrets: {{ join "\n" .Values.signing.secrets | b64enc | quote }}
{{- end }}
{{- if and .Values.signing.actions.secrets (not .Values.signing.actions.existingSecret) }}
actions-signing-secrets: {{ join "\n" .Values.signing.actions.secrets | b64enc | quote }}
{{- end }}
{{- if and (include "bp-relay.kafkaSASL" .) (not .Values.kafka.sasl.existingSecret) }}
kafka-sasl-password: {{ .Values.kafka.sasl.password | b64enc | quote }}
{{- end }}
{{- end }}

{{/* Directory the projected secrets volume is mounted at. */}}
{{- define "bp-relay.secretsDir" -}}/var/run/secrets/bp-relay{{- end }}

{{/*
Fails the render on values the schema cannot express: missing credentials and shutdown
budgets that do not add up.
*/}}
{{- define "bp-relay.validate" -}}
{{- if not .Values.image.repository }}
{{- fail "image.repository is required: no bp-relay image is published. Build deploy/Dockerfile, push it to a registry your nodes pull from and set image.repository (and image.tag or image.digest); see docs/deploy.md, \"1. Build and push the image\"" }}
{{- end }}
{{- range $key, $_ := .Values.commonLabels }}
{{- if or (hasPrefix "app.kubernetes.io/" $key) (hasPrefix "helm.sh/" $key) }}
{{- fail (printf "commonLabels.%s: the chart sets the app.kubernetes.io/* and helm.sh/* labels itself" $key) }}
{{- end }}
{{- end }}
{{- if not .Values.kafka.brokers }}
{{- fail "kafka.brokers is required: the bootstrap brokers, comma-separated host:port" }}
{{- end }}
{{- if and (not .Values.signing.existingSecret) (not .Values.signing.secrets) }}
{{- fail "signing: set signing.existingSecret (recommended) or signing.secrets" }}
{{- end }}
{{- if and .Values.signing.actions.existingSecret .Values.signing.actions.secrets }}
{{- fail "signing.actions: set existingSecret or secrets, not both" }}
{{- end }}
{{- range .Values.signing.actions.secrets }}
{{- if has . $.Values.signing.secrets }}
{{- fail "signing.actions.secrets: a secret is also in signing.secrets; each route needs its Subscription's own secret (or leave signing.actions empty to share one list)" }}
{{- end }}
{{- end }}
{{- if include "bp-relay.kafkaSASL" . }}
{{- if or (not .Values.kafka.sasl.mechanism) (not .Values.kafka.sasl.username) }}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.mechanism and kafka.sasl.username" .Values.kafka.securityProtocol) }}
{{- end }}
{{- if and (not .Values.kafka.sasl.existingSecret) (not .Values.kafka.sasl.password) }}
{{- fail "kafka.sasl: set kafka.sasl.existingSecret (recommended) or kafka.sasl.password" }}
{{- end }}
{{- end }}
{{- if and (or .Values.kafka.tls.ca.existingSecret .Values.kafka.tls.ca.existingConfigMap .Values.kafka.tls.clientCert.existingSecret) (not (include "bp-relay.kafkaTLS" .)) }}
{{- fail "kafka.tls.* Secrets or ConfigMap are set but kafka.securityProtocol is neither ssl nor sasl_ssl" }}
{{- end }}
{{- if and .Values.kafka.tls.ca.existingSecret .Values.kafka.tls.ca.existingConfigMap }}
{{- fail "kafka.tls.ca: set existingSecret or existingConfigMap, not both" }}
{{- end }}
{{- $s := .Values.shutdown }}
{{- if gt (add $s.preStopSleepSeconds $s.drainSeconds 5 | int) ($s.terminationGracePeriodSeconds | int) }}
{{- fail (printf "shutdown: terminationGracePeriodSeconds (%v) must be at least preStopSleepSeconds (%v) + drainSeconds (%v) + 5" $s.terminationGracePeriodSeconds $s.preStopSleepSeconds $s.drainSeconds) }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (ne (toString .Values.podDisruptionBudget.minAvailable) "") (ne (toString .Values.podDisruptionBudget.maxUnavailable) "") }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to \"\")" }}
{{- end }}
{{- $a := .Values.autoscaling }}
{{- if and $a.enabled (not (or $a.targetCPUUtilizationPercentage $a.targetMemoryUtilizationPercentage $a.metrics)) }}
{{- fail "autoscaling: set a CPU or memory target, or autoscaling.metrics" }}
{{- end }}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- fail "autoscaling: minReplicas is above maxReplicas" }}
{{- end }}
{{- $r := .Values.replayStore }}
{{- if and $r.url $r.redis.enabled }}
{{- fail "replayStore.url and replayStore.redis.enabled: set one, not both (the URL names your own Redis; replayStore.redis.enabled runs one in the release and points the relay at it)" }}
{{- end }}
{{- if and $r.redis.enabled $r.existingSecret }}
{{- fail "replayStore.existingSecret is the password of the Redis at replayStore.url; the password of the chart's Redis (replayStore.redis.enabled) is replayStore.redis.existingSecret, or generated when empty" }}
{{- end }}
{{- if and (or $a.enabled (gt (int .Values.replicaCount) 1)) (not (include "bp-relay.sharedReplayGuard" .)) (not $r.acceptPerReplicaRisk) }}
{{- fail "replicaCount above 1 (or autoscaling.enabled) without a shared replay guard: each pod would remember only the signings it saw, so captured X-AUTHVIA-* headers could carry another body through another pod. Set replayStore.url to a Redis 7.0+ running with maxmemory-policy noeviction (and replayStore.existingSecret), or replayStore.redis.enabled: true to let the chart run a small Redis for the guard, or replicaCount: 1 without autoscaling, or replayStore.acceptPerReplicaRisk: true to accept that risk (README, \"Replicas and the replay guard\")" }}
{{- end }}
{{- range $k, $v := .Values.kafka.options }}
{{- if or (contains ";" (toString $v)) (contains ";" $k) }}
{{- fail (printf "kafka.options.%s: values may not contain ';' (it separates BP_RELAY_KAFKA_OPTIONS entries)" $k) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Checksum of every credential the pods mount. The chart's own Secret is hashed from values;
existing Secrets are read with `lookup` on install and upgrade (empty under `helm template`),
so rotating one and running `helm upgrade` rolls the pods.
*/}}
{{- define "bp-relay.secretChecksum" -}}
{{- $parts := list (include "bp-relay.secretData" .) }}
{{- $names := list .Values.signing.existingSecret .Values.signing.actions.existingSecret .Values.replayStore.existingSecret }}
{{- if .Values.replayStore.redis.enabled }}
{{- $names = append $names .Values.replayStore.redis.existingSecret }}
{{- end }}
{{- if include "bp-relay.kafkaSASL" . }}
{{- $names = append $names .Values.kafka.sasl.existingSecret }}
{{- end }}
{{- if include "bp-relay.kafkaTLS" . }}
{{- $names = concat $names (list .Values.kafka.tls.ca.existingSecret .Values.kafka.tls.clientCert.existingSecret) }}
{{- end }}
{{- range $name := $names }}
{{- if $name }}
{{- $existing := lookup "v1" "Secret" $.Release.Namespace $name }}
{{- $parts = append $parts (printf "%s=%s" $name (toJson (dig "data" dict $existing))) }}
{{- end }}
{{- end }}
{{- join "\n" $parts | sha256sum }}
{{- end }}

{{/* True when every pod shares one replay guard: a Redis of the user's or the chart's. */}}
{{- define "bp-relay.sharedReplayGuard" -}}
{{- if or .Values.replayStore.url .Values.replayStore.redis.enabled }}true{{ end }}
{{- end }}

{{/* Name of the chart-run Redis (replayStore.redis): its Deployment, Service, ConfigMap, Secret. */}}
{{- define "bp-relay.redis.fullname" -}}
{{- printf "%s-redis" (include "bp-relay.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{/*
Selector labels of the chart-run Redis: not the relay's (its Services, PDB and NetworkPolicy
must not select the Redis pod).
*/}}
{{- define "bp-relay.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bp-relay.name" . }}-redis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: replay-store
{{- end }}

{{- define "bp-relay.redis.labels" -}}
helm.sh/chart: {{ include "bp-relay.chart" . }}
{{ include "bp-relay.redis.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bp-relay
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "bp-relay.redis.image" -}}
{{- $i := .Values.replayStore.redis.image }}
{{- if $i.digest }}
{{- printf "%s@%s" $i.repository $i.digest }}
{{- else }}
{{- printf "%s:%s" $i.repository $i.tag }}
{{- end }}
{{- end }}

{{/* The relay's BP_RELAY_REPLAY_STORE: the user's Redis, or the chart's through its Service. */}}
{{- define "bp-relay.replayStoreUrl" -}}
{{- if .Values.replayStore.redis.enabled }}
{{- printf "redis://%s.%s.svc:6379/0" (include "bp-relay.redis.fullname" .) .Release.Namespace }}
{{- else }}
{{- .Values.replayStore.url }}
{{- end }}
{{- end }}

{{/* The Secret and key of the chart-run Redis' password: the user's, or the one the chart generates. */}}
{{- define "bp-relay.redis.secretName" -}}
{{- default (include "bp-relay.redis.fullname" .) .Values.replayStore.redis.existingSecret }}
{{- end }}
{{- define "bp-relay.redis.secretKey" -}}
{{- ternary .Values.replayStore.redis.existingSecretKey "redis-password" (not (empty .Values.replayStore.redis.existingSecret)) }}
{{- end }}
