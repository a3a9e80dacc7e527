// Package scheme registers tandem's plugin args into the kube-scheduler's
// config scheme, so that a KubeSchedulerConfiguration naming them decodes,
// defaults and converts them. Import it for its side effect, as the
// scheduler binary does.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	kubeschedulerscheme "k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"

	"github.com/tandem-sched/tandem/apis/config"
	configv1 "github.com/tandem-sched/tandem/apis/config/v1"
)

func init() {
	AddToScheme(kubeschedulerscheme.Scheme)
}

// AddToScheme adds the internal and v1 args types to a scheme.
func AddToScheme(scheme *runtime.Scheme) {
	utilruntime.Must(config.AddToScheme(scheme))
	utilruntime.Must(configv1.AddToScheme(scheme))
}
