package activelease

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestASecondActiveSchedulerIsRefusedUntilTheFirstStops(t *testing.T) {
	client := fake.NewClientset()
	clk := clocktesting.NewFakeClock(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	firstCtx, stopFirst := context.WithCancel(context.Background())
	defer stopFirst()

	first := New(firstCtx, client, clk, "tandem-system")
	require.NoError(t, first.Check(), "the first scheduler to place a GPU pod holds the Lease")
	secondCtx, stopSecond := context.WithCancel(context.Background())
	defer stopSecond()
	second := New(secondCtx, client, clk, "tandem-system")
	err := second.Check()
	require.ErrorContains(t, err, "another tandem scheduler ("+first.Identity()+") holds Lease tandem-system/tandem-scheduler-active")

	// The first stops renewing (a crash): once the Lease runs out the
	// second takes it.
	clk.Step(Duration + time.Second)
	second.renew(secondCtx)
	require.NoError(t, second.Check())
	lease, err := client.CoordinationV1().Leases("tandem-system").Get(context.Background(), Name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, second.Identity(), *lease.Spec.HolderIdentity)

	// And now the first, still running, is the one refused.
	first.renew(firstCtx)
	require.ErrorContains(t, first.Check(), second.Identity())

	// A clean stop gives the Lease back at once.
	stopSecond()
	require.Eventually(t, func() bool {
		l, err := client.CoordinationV1().Leases("tandem-system").Get(context.Background(), Name, metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity == nil
	}, 5*time.Second, 10*time.Millisecond)
	first.renew(firstCtx)
	require.NoError(t, first.Check())
}
