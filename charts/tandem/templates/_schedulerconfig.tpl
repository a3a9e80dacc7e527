{{/*
The KubeSchedulerConfiguration: with default values the same document as
manifests/scheduler/scheduler-config.yaml, which docs/deploy.md describes
setting by setting. An arg left empty or null is left out, so that the
plugin's default applies.
*/}}
{{- define "tandem.schedulerConfig" -}}
{{- $s := .Values.scheduler -}}
{{- $ns := include "tandem.schedulerNamespace" . -}}
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: {{ int $s.percentageOfNodesToScore }}
leaderElection:
  leaderElect: {{ $s.leaderElection.leaderElect }}
  resourceNamespace: {{ $ns }}
  resourceName: tandem-scheduler
profiles:
- schedulerName: tandem-scheduler
  plugins:
    multiPoint:
      enabled:
      - name: Gang
      - name: NVLinkTopo
        weight: {{ int $s.nvlinkTopo.weight }}
      - name: PDAffinity
        weight: {{ int $s.pdAffinity.weight }}
      disabled:
      - name: PrioritySort
    bind:
      enabled:
      - name: PDAffinity
      - name: DefaultBinder
      disabled:
      - name: DefaultBinder
  pluginConfig:
  - name: Gang
    args:
      {{- with $s.gang }}
      {{- if not (kindIs "invalid" .permitWaitingTimeSeconds) }}
      permitWaitingTimeSeconds: {{ int64 .permitWaitingTimeSeconds }}
      {{- end }}
      {{- if not (kindIs "invalid" .podGroupBackoffSeconds) }}
      podGroupBackoffSeconds: {{ int64 .podGroupBackoffSeconds }}
      {{- end }}
      {{- if not (kindIs "invalid" .podGroupRejectPercentage) }}
      podGroupRejectPercentage: {{ int .podGroupRejectPercentage }}
      {{- end }}
      {{- end }}
  - name: NVLinkTopo
    args:
      {{- with $s.nvlinkTopo }}
      {{- if .gpuResourceName }}
      gpuResourceName: {{ .gpuResourceName }}
      {{- end }}
      {{- if kindIs "slice" .rdmaResourceNames }}
      rdmaResourceNames: {{ toJson .rdmaResourceNames }}
      {{- end }}
      {{- if .islandPolicy }}
      islandPolicy: {{ .islandPolicy }}
      {{- end }}
      {{- if .maxPCIeLevel }}
      maxPCIeLevel: {{ .maxPCIeLevel }}
      {{- end }}
      {{- if .maxTopologyAge }}
      maxTopologyAge: {{ .maxTopologyAge }}
      {{- end }}
      {{- if .scoreWeights }}
      scoreWeights: {{ toJson .scoreWeights }}
      {{- end }}
      {{- if kindIs "slice" .draDeviceClassNames }}
      draDeviceClassNames: {{ toJson .draDeviceClassNames }}
      {{- end }}
      {{- if .draDriverName }}
      draDriverName: {{ .draDriverName }}
      {{- end }}
      {{- if kindIs "slice" .draRDMADeviceClassNames }}
      draRDMADeviceClassNames: {{ toJson .draRDMADeviceClassNames }}
      {{- end }}
      {{- end }}
  - name: PDAffinity
    args:
      {{- with $s.pdAffinity }}
      {{- if .levels }}
      levels: {{ toJson .levels }}
      {{- else if .levelPreset }}
      levelPreset: {{ .levelPreset }}
      {{- end }}
      {{- if .sameNode }}
      sameNode: {{ .sameNode }}
      {{- end }}
      {{- if kindIs "slice" .labelPresets }}
      labelPresets: {{ toJson .labelPresets }}
      {{- end }}
      {{- if .gpuResourceName }}
      gpuResourceName: {{ .gpuResourceName }}
      {{- end }}
      {{- if .placementLabels }}
      placementLabels: true
      {{- end }}
      {{- end }}
{{- end -}}
