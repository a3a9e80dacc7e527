// Package topologysource gives every tandem plugin in a scheduler process the
// same NodeTopology informer, started once and synced before the first
// scheduling cycle.
package topologysource

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/tandem-sched/tandem/pkg/generated/clientset/versioned"
	"github.com/tandem-sched/tandem/pkg/generated/informers/externalversions"
	listers "github.com/tandem-sched/tandem/pkg/generated/listers/topology/v1alpha1"
)

// DefaultSyncTimeout bounds the wait for the first list of NodeTopology
// objects, so that a cluster without the CRD fails start-up with a reason
// instead of hanging.
const DefaultSyncTimeout = time.Minute

// Source starts one NodeTopology informer for the process on first use. The
// scheduler binary makes one Source and hands it to each plugin factory.
type Source struct {
	syncTimeout time.Duration

	mu       sync.Mutex
	informer cache.SharedIndexInformer
	lister   listers.NodeTopologyLister
}

// New returns a Source that waits up to syncTimeout for the informer's first sync.
func New(syncTimeout time.Duration) *Source {
	return &Source{syncTimeout: syncTimeout}
}

// Informer returns the NodeTopology informer and its lister, starting and
// syncing the informer with cfg on the first call. The informer runs until
// ctx ends; the scheduler passes its own lifetime context to plugin
// constructors. Event handlers added to it see an object only after the
// lister does.
func (s *Source) Informer(ctx context.Context, cfg *rest.Config) (cache.SharedIndexInformer, listers.NodeTopologyLister, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lister != nil {
		return s.informer, s.lister, nil
	}
	// The scheduler's own config asks for protobuf, which custom resources
	// do not speak.
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = runtime.ContentTypeJSON
	cfg.AcceptContentTypes = runtime.ContentTypeJSON
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("building the NodeTopology client: %w", err)
	}
	factory := externalversions.NewSharedInformerFactory(client, 0)
	informer := factory.Tandem().V1alpha1().NodeTopologies()
	synced := informer.Informer().HasSynced
	factory.Start(ctx.Done())

	syncCtx, cancel := context.WithTimeout(ctx, s.syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), synced) {
		return nil, nil, fmt.Errorf("NodeTopology informer did not sync within %s: is the nodetopologies.tandem.dev CRD installed (manifests/crds) and may the scheduler list it?", s.syncTimeout)
	}
	klog.FromContext(ctx).V(2).Info("NodeTopology informer synced")
	s.informer, s.lister = informer.Informer(), informer.Lister()
	return s.informer, s.lister, nil
}
