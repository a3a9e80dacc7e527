{{/*
The labels Helm's conventions add to every object's metadata (not to
selectors or pod templates, which stay those of manifests/ so that an
install made with kustomize can be taken over).
*/}}
{{- define "tandem.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* An image reference from {repository, tag, digest}. */}}
{{- define "tandem.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{ $image.repository }}@{{ $image.digest }}
{{- else -}}
{{ $image.repository }}:{{ $image.tag | default $root.Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The scheduler's namespace: the release's. */}}
{{- define "tandem.schedulerNamespace" -}}
{{ .Release.Namespace }}
{{- end -}}

{{/*
A CRD from files/crds (a copy of manifests/crds that hack/update-codegen.sh
makes), with the keep policy when crds.keep is set.
*/}}
{{- define "tandem.crd" -}}
{{- $root := index . 0 -}}
{{- $crd := $root.Files.Get (index . 1) | fromYaml -}}
{{- if $crd.Error -}}
{{- fail (printf "%s: %s" (index . 1) $crd.Error) -}}
{{- end -}}
{{- $meta := $crd.metadata -}}
{{- $annotations := $meta.annotations | default dict -}}
{{- if $root.Values.crds.keep -}}
{{- $_ := set $annotations "helm.sh/resource-policy" "keep" -}}
{{- end -}}
{{- $_ := set $meta "annotations" $annotations -}}
{{- $_ := set $meta "labels" (merge ($meta.labels | default dict) (include "tandem.helmLabels" $root | fromYaml)) -}}
{{ toYaml $crd }}
{{- end -}}
