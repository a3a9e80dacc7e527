package v1

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	schedschemev1 "k8s.io/kube-scheduler/config/v1"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
)

// SchemeGroupVersion is kubescheduler.config.k8s.io/v1.
var SchemeGroupVersion = schema.GroupVersion{Group: schedconfig.GroupName, Version: "v1"}

var (
	// The args join the kube-scheduler's own v1 scheme builder, so that a
	// KubeSchedulerConfiguration's pluginConfig decodes them.
	localSchemeBuilder = &schedschemev1.SchemeBuilder
	// AddToScheme adds the v1 args types, defaults and conversions to a scheme.
	AddToScheme = localSchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion,
		&NVLinkTopoArgs{},
		&PDAffinityArgs{},
		&GangArgs{},
	)
	return nil
}

func init() {
	// Generated functions register themselves in the generated files; these
	// are the hand-written ones.
	localSchemeBuilder.Register(addKnownTypes)
	localSchemeBuilder.Register(RegisterDefaults)
	localSchemeBuilder.Register(RegisterConversions)
}
