// Package v1 is the versioned form of tandem's scheduler plugin args, in the
// kubescheduler.config.k8s.io/v1 group that KubeSchedulerConfiguration uses.
//
// +k8s:deepcopy-gen=package
// +k8s:conversion-gen=github.com/tandem-sched/tandem/apis/config
// +k8s:defaulter-gen=TypeMeta
// +k8s:defaulter-gen-input=github.com/tandem-sched/tandem/apis/config/v1
package v1
