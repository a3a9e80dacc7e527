// Package topologysource gives every tandem plugin in a scheduler process the
// same informers for the custom resources they read — NodeTopology and
// scheduler-plugins' PodGroup — each started once and synced before the
// first scheduling cycle.
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
	pgclient "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"
	pginformers "sigs.k8s.io/scheduler-plugins/pkg/generated/informers/externalversions"
	pglisters "sigs.k8s.io/scheduler-plugins/pkg/generated/listers/scheduling/v1alpha1"

	"github.com/tandem-sched/tandem/pkg/generated/clientset/versioned"
	"github.com/tandem-sched/tandem/pkg/generated/informers/externalversions"
	listers "github.com/tandem-sched/tandem/pkg/generated/listers/topology/v1alpha1"
)

// DefaultSyncTimeout bounds the wait for an informer's first list, so that a
// cluster without the CRD fails start-up with a reason instead of hanging.
const DefaultSyncTimeout = time.Minute

// Source starts each informer once for the process, on first use. The
// scheduler binary makes one Source and hands it to each plugin factory.
type Source struct {
	syncTimeout time.Duration

	mu               sync.Mutex
	topologyInformer cache.SharedIndexInformer
	topologyLister   listers.NodeTopologyLister
	podGroupLister   pglisters.PodGroupLister
}

// New returns a Source that waits up to syncTimeout for an informer's first sync.
func New(syncTimeout time.Duration) *Source {
	return &Source{syncTimeout: syncTimeout}
}

// jsonConfig copies cfg to speak JSON: the scheduler's own config asks for
// protobuf, which custom resources do not speak.
func jsonConfig(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = runtime.ContentTypeJSON
	cfg.AcceptContentTypes = runtime.ContentTypeJSON
	return cfg
}

// Informer returns the NodeTopology informer and its lister, starting and
// syncing the informer with cfg on the first call. The informer runs until
// ctx ends; the scheduler passes its own lifetime context to plugin
// constructors. Event handlers added to it see an object only after the
// lister does.
func (s *Source) Informer(ctx context.Context, cfg *rest.Config) (cache.SharedIndexInformer, listers.NodeTopologyLister, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.topologyLister != nil {
		return s.topologyInformer, s.topologyLister, nil
	}
	client, err := versioned.NewForConfig(jsonConfig(cfg))
	if err != nil {
		return nil, nil, fmt.Errorf("building the NodeTopology client: %w", err)
	}
	factory := externalversions.NewSharedInformerFactory(client, 0)
	informer := factory.Tandem().V1alpha1().NodeTopologies()
	if err := s.start(ctx, "nodetopologies.tandem.dev", informer.Informer(), factory.Start); err != nil {
		return nil, nil, err
	}
	s.topologyInformer, s.topologyLister = informer.Informer(), informer.Lister()
	return s.topologyInformer, s.topologyLister, nil
}

// PodGroups returns the lister of scheduler-plugins' PodGroups, which give
// an xPyD unit its size; started like Informer.
func (s *Source) PodGroups(ctx context.Context, cfg *rest.Config) (pglisters.PodGroupLister, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.podGroupLister != nil {
		return s.podGroupLister, nil
	}
	client, err := pgclient.NewForConfig(jsonConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("building the PodGroup client: %w", err)
	}
	factory := pginformers.NewSharedInformerFactory(client, 0)
	informer := factory.Scheduling().V1alpha1().PodGroups()
	if err := s.start(ctx, "podgroups.scheduling.x-k8s.io", informer.Informer(), factory.Start); err != nil {
		return nil, err
	}
	s.podGroupLister = informer.Lister()
	return s.podGroupLister, nil
}

func (s *Source) start(ctx context.Context, resource string, informer cache.SharedIndexInformer, start func(<-chan struct{})) error {
	synced := informer.HasSynced
	start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, s.syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), synced) {
		return fmt.Errorf("%s informer did not sync within %s: is the CRD installed (manifests/crds) and may the scheduler list it?", resource, s.syncTimeout)
	}
	klog.FromContext(ctx).V(2).Info("Informer synced", "resource", resource)
	return nil
}
