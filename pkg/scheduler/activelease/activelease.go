// Package activelease makes a second active tandem scheduler loud and
// harmless. Every scheduler process that places GPU pods holds the Lease
// tandem-scheduler-active, whether or not leader election is on; while
// another process holds it, this one places no GPU pod and says why in the
// pod's FailedScheduling event and in its log. With leader election on (as
// shipped) only the leader schedules, so the standby never asks for it.
package activelease

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

const (
	// Name is the Lease's name, in the scheduler's namespace.
	Name = "tandem-scheduler-active"
	// Duration is how long a holder's renewal keeps others off; it matches
	// the leader-election lease, so a new leader rarely waits for it.
	Duration = 15 * time.Second
	// RenewInterval is how often the holder renews it.
	RenewInterval = 5 * time.Second
	// defaultNamespace is where the Lease lives when the process does not
	// run in a pod (tests, demo).
	defaultNamespace = "tandem-system"
	namespaceFile    = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
)

// Guard holds the Lease for this process once it starts scheduling.
type Guard struct {
	ctx       context.Context
	client    kubernetes.Interface
	clock     clock.PassiveClock
	namespace string
	identity  string

	once     sync.Once
	mu       sync.Mutex
	conflict error
}

// New returns a Guard for the Lease in namespace ("" for the pod's own
// namespace, else tandem-system). It holds the Lease until ctx, the
// scheduler process's, ends.
func New(ctx context.Context, client kubernetes.Interface, clk clock.PassiveClock, namespace string) *Guard {
	if namespace == "" {
		namespace = defaultNamespace
		if data, err := os.ReadFile(namespaceFile); err == nil && strings.TrimSpace(string(data)) != "" {
			namespace = strings.TrimSpace(string(data))
		}
	}
	host, _ := os.Hostname()
	return &Guard{ctx: ctx, client: client, clock: clk, namespace: namespace, identity: host + "_" + string(uuid.NewUUID())}
}

// Identity is this process's holder identity.
func (g *Guard) Identity() string { return g.identity }

// Check returns an error naming the other holder while another tandem
// scheduler holds the Lease, else nil. The first call takes the Lease and
// starts renewing it until the process's context ends, when it is given
// back.
func (g *Guard) Check() error {
	g.once.Do(func() {
		g.renew(g.ctx)
		go g.loop(g.ctx)
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.conflict
}

func (g *Guard) loop(ctx context.Context) {
	ticker := time.NewTicker(RenewInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			g.release()
			return
		case <-ticker.C:
			g.renew(ctx)
		}
	}
}

// renew takes or renews the Lease unless another holder renewed it within
// Duration. An API error leaves scheduling alone (logged): a Lease this
// process cannot read must not stop every GPU pod.
func (g *Guard) renew(ctx context.Context) {
	logger := klog.FromContext(ctx)
	conflict, err := g.tryHold(ctx)
	if err != nil {
		logger.Error(err, "Cannot hold the active-scheduler Lease; a second tandem scheduler would go unnoticed", "lease", klog.KRef(g.namespace, Name))
	}
	if conflict != nil {
		logger.Error(conflict, "Another tandem scheduler is active: this one places no GPU pod until it stops; run the scheduler with leader election (leaderElection.leaderElect: true)",
			"lease", klog.KRef(g.namespace, Name), "identity", g.identity)
	}
	g.mu.Lock()
	g.conflict = conflict
	g.mu.Unlock()
}

func (g *Guard) tryHold(ctx context.Context) (conflict, err error) {
	leases := g.client.CoordinationV1().Leases(g.namespace)
	now := metav1.NewMicroTime(g.clock.Now())
	lease, err := leases.Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: g.namespace},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(g.identity), LeaseDurationSeconds: ptr.To(int32(Duration / time.Second)),
				AcquireTime: &now, RenewTime: &now},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil, nil // the next renewal reads who won
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	holder := ptr.Deref(lease.Spec.HolderIdentity, "")
	if holder != "" && holder != g.identity && lease.Spec.RenewTime != nil {
		age := g.clock.Since(lease.Spec.RenewTime.Time)
		valid := time.Duration(ptr.Deref(lease.Spec.LeaseDurationSeconds, int32(Duration/time.Second))) * time.Second
		if age < valid {
			return fmt.Errorf("another tandem scheduler (%s) holds Lease %s/%s, renewed %s ago: two schedulers without leader election would place pods on the same GPUs",
				holder, g.namespace, Name, age.Round(time.Second)), nil
		}
	}
	if holder != g.identity {
		lease.Spec.HolderIdentity = ptr.To(g.identity)
		lease.Spec.AcquireTime = &now
		lease.Spec.LeaseDurationSeconds = ptr.To(int32(Duration / time.Second))
	}
	lease.Spec.RenewTime = &now
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return nil, nil
	}
	return nil, err
}

// release gives the Lease back on a clean stop, so a successor need not wait.
func (g *Guard) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	leases := g.client.CoordinationV1().Leases(g.namespace)
	lease, err := leases.Get(ctx, Name, metav1.GetOptions{})
	if err != nil || ptr.Deref(lease.Spec.HolderIdentity, "") != g.identity {
		return
	}
	lease.Spec.HolderIdentity = nil
	lease.Spec.RenewTime = nil
	_, _ = leases.Update(ctx, lease, metav1.UpdateOptions{})
}
