// Package topologysource gives every tandem plugin in a scheduler process the
// same informers for the custom resources they read — NodeTopology and
// PodGroup (scheduling.x-k8s.io) — each started once and synced before the
// first scheduling cycle, and the one placement model (topology.Cluster)
// those informers, the scheduler's node and pod informers, and the plugins'
// reservations keep current.
package topologysource

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	pgclient "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"
	pginformers "sigs.k8s.io/scheduler-plugins/pkg/generated/informers/externalversions"
	pglisters "sigs.k8s.io/scheduler-plugins/pkg/generated/listers/scheduling/v1alpha1"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/generated/clientset/versioned"
	"github.com/tandem-sched/tandem/pkg/generated/informers/externalversions"
	listers "github.com/tandem-sched/tandem/pkg/generated/listers/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/scheduler/activelease"
	"github.com/tandem-sched/tandem/pkg/topology"
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
	podGroupInformer cache.SharedIndexInformer
	podGroupLister   pglisters.PodGroupLister
	cluster          *topology.Cluster
	requests         RequestReader
	fresh            func(node string, heartbeat time.Time) bool
	onReport         []func(old, nt *topologyv1alpha1.NodeTopology)
	activeLease      *activelease.Guard
	dra              *DRA
}

// ActiveLease returns the process's one active-scheduler Lease guard,
// making it on the first call with the scheduler's context and client.
func (s *Source) ActiveLease(ctx context.Context, client kubernetes.Interface, clk clock.PassiveClock) *activelease.Guard {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.activeLease == nil {
		s.activeLease = activelease.New(ctx, client, clk, "")
	}
	return s.activeLease
}

// OnReport adds a function called after the model has taken in a
// NodeTopology added (old nil) or updated. Handlers of one informer run
// concurrently, so this is how a plugin acts on news the model already has.
func (s *Source) OnReport(f func(old, nt *topologyv1alpha1.NodeTopology)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onReport = append(s.onReport, f)
}

func (s *Source) reported(old, nt *topologyv1alpha1.NodeTopology) {
	s.mu.Lock()
	fs := s.onReport
	s.mu.Unlock()
	for _, f := range fs {
		f(old, nt)
	}
}

// RequestReader reads what a pod needs from a node's GPUs; NVLinkTopo
// installs its own (it knows the resource names and policies), so that
// PDAffinity plans a unit's pods by the rules their Filter will apply.
type RequestReader func(pod *v1.Pod) (topology.GPURequest, error)

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

// PodGroups returns the lister of PodGroups (scheduling.x-k8s.io/v1alpha1),
// which give an xPyD unit its size; started like Informer.
func (s *Source) PodGroups(ctx context.Context, cfg *rest.Config) (pglisters.PodGroupLister, error) {
	_, lister, err := s.PodGroupInformer(ctx, cfg)
	return lister, err
}

// PodGroupInformer returns the one PodGroup informer of the process and its
// lister, started and synced on the first call like Informer. Gang watches
// it to keep its groups' timestamps and to retry a group's pods when their
// PodGroup appears or changes.
func (s *Source) PodGroupInformer(ctx context.Context, cfg *rest.Config) (cache.SharedIndexInformer, pglisters.PodGroupLister, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.podGroupLister != nil {
		return s.podGroupInformer, s.podGroupLister, nil
	}
	client, err := pgclient.NewForConfig(jsonConfig(cfg))
	if err != nil {
		return nil, nil, fmt.Errorf("building the PodGroup client: %w", err)
	}
	factory := pginformers.NewSharedInformerFactory(client, 0)
	informer := factory.Scheduling().V1alpha1().PodGroups()
	if err := s.start(ctx, "podgroups.scheduling.x-k8s.io", informer.Informer(), factory.Start); err != nil {
		return nil, nil, err
	}
	s.podGroupInformer, s.podGroupLister = informer.Informer(), informer.Lister()
	return s.podGroupInformer, s.podGroupLister, nil
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

// Handle is what Model needs of the scheduler: its client config and its
// shared informers (fwk.Handle has both).
type Handle interface {
	KubeConfig() *rest.Config
	SharedInformerFactory() informers.SharedInformerFactory
}

// Model returns the process's placement model, building it on the first
// call: every NodeTopology report, every node's labels and every pod
// deletion reach it through event handlers, so it is current before the
// first scheduling cycle (the scheduler waits for its informers) and never
// rebuilt.
func (s *Source) Model(ctx context.Context, h Handle) (*topology.Cluster, error) {
	informer, _, err := s.Informer(ctx, h.KubeConfig())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cluster != nil {
		return s.cluster, nil
	}
	c := topology.NewCluster()
	logger := klog.FromContext(ctx)
	setReport := func(oldObj, obj interface{}) {
		nt, ok := obj.(*topologyv1alpha1.NodeTopology)
		if !ok {
			return
		}
		c.SetReport(nt.Name, ReportOf(nt))
		old, _ := oldObj.(*topologyv1alpha1.NodeTopology)
		s.reported(old, nt)
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { setReport(nil, obj) },
		UpdateFunc: setReport,
		DeleteFunc: func(obj interface{}) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if nt, ok := obj.(*topologyv1alpha1.NodeTopology); ok {
				c.SetReport(nt.Name, nil)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("watching NodeTopology for the placement model: %w", err)
	}
	setNode := func(obj interface{}) {
		if n, ok := obj.(*v1.Node); ok {
			c.SetNodeLabels(n.Name, n.Labels)
		}
	}
	if _, err := h.SharedInformerFactory().Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    setNode,
		UpdateFunc: func(_, obj interface{}) { setNode(obj) },
		DeleteFunc: func(obj interface{}) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if n, ok := obj.(*v1.Node); ok {
				c.RemoveNode(n.Name)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("watching nodes for the placement model: %w", err)
	}
	// A deleted pod's GPUs are free again whether or not the report has
	// caught up with its placement.
	if _, err := h.SharedInformerFactory().Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj interface{}) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if pod, ok := obj.(*v1.Pod); ok {
				c.Release(string(pod.UID))
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("watching pod deletions for the placement model: %w", err)
	}
	logger.V(2).Info("Placement model ready")
	s.cluster = c
	return c, nil
}

// SetRequestReader installs how pods' GPU requests are read and how fresh a
// report must be to trust.
func (s *Source) SetRequestReader(r RequestReader, fresh func(node string, heartbeat time.Time) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests, s.fresh = r, fresh
}

// Fresh is the installed freshness rule, or nil (trust every report).
func (s *Source) Fresh() func(node string, heartbeat time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fresh
}

// RequestOf reads a pod's GPU request with the installed reader, or, when
// no NVLinkTopo runs, counts the resource named gpuResource and asks for
// one island.
func (s *Source) RequestOf(pod *v1.Pod, gpuResource v1.ResourceName) (topology.GPURequest, error) {
	s.mu.Lock()
	r := s.requests
	s.mu.Unlock()
	if r != nil {
		return r(pod)
	}
	req := topology.GPURequest{Island: topology.IslandRequired, MaxNICLevel: topology.PCIeLevelSYS}
	n, err := GPUCount(pod, gpuResource)
	req.Count = n
	return req, err
}
