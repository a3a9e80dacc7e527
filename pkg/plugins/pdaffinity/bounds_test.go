package pdaffinity

import (
	"testing"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
)

// Numbers a pod carries are bounded before any arithmetic, and the pod is
// refused with a message that names it and the key.
func TestNumbersFromPodsAreBounded(t *testing.T) {
	placed := []*v1.Pod{
		engine("p0", "prefill", "chat", 2).Node("a2").Obj(),
		engine("d0", "decode", "chat", 2).Node("a1").Obj(),
	}
	for _, tc := range []struct {
		name string
		pod  *v1.Pod
		want string
	}{
		{name: "pd-ratio terms at int64's limit",
			pod:  engine("p1", "prefill", "chat", 4).Annotation(AnnotationPDRatio, "9223372036854775807:9223372036854775807").Obj(),
			want: `pod default/p1: annotation tandem.dev/pd-ratio="9223372036854775807:9223372036854775807" has a term above 1000`},
		{name: "pd-ratio prefill term at int64's limit",
			pod:  engine("p1", "prefill", "chat", 4).Annotation(AnnotationPDRatio, "9223372036854775807:1").Obj(),
			want: `pod default/p1: annotation tandem.dev/pd-ratio="9223372036854775807:1" has a term above 1000`},
		{name: "pd-ratio beyond int64",
			pod:  engine("p1", "prefill", "chat", 4).Annotation(AnnotationPDRatio, "1:99999999999999999999").Obj(),
			want: `pod annotation tandem.dev/pd-ratio="1:99999999999999999999" is not a ratio of positive whole numbers like 1:2`},
		{name: "unit-size that wraps the unit's GPU count to 0",
			pod:  engine("u-p0", "prefill", "u", 4, LabelUnitSize, "4611686018427387904").Obj(),
			want: `pod default/u-p0: label tandem.dev/unit-size="4611686018427387904" is more than 1024 pods`},
		{name: "GPU request that wraps the unit's GPU count",
			pod: st.MakePod().Name("u-p0").Namespace("default").UID("u-p0").
				Labels(map[string]string{LabelRole: "prefill", LabelGroup: "u", LabelUnitSize: "4"}).
				Req(map[v1.ResourceName]string{"nvidia.com/gpu": "4611686018427387904"}).Obj(),
			want: `pod default/u-p0 requests 4611686018427387904 nvidia.com/gpu, more than 1024`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl := newTestPlugin(t, nil)
			_, status := runCycle(t, pl, tc.pod, fabricNodes(), placed...)
			require.Equal(t, fwk.UnschedulableAndUnresolvable, status.Code(), status.Message())
			require.Contains(t, status.Message(), tc.want)
		})
	}
}

// At the bounds every score stays in [0, 100] (cycle.score asserts it).
func TestScoresAtTheBoundsStayInRange(t *testing.T) {
	placed := []*v1.Pod{
		engine("p0", "prefill", "chat", 2).Node("a2").Obj(),
		engine("d0", "decode", "chat", 2).Node("a1").Obj(),
		engine("d1", "decode", "chat", 2).Node("b1").Obj(),
	}
	for _, ratio := range []string{"1000:1000", "1000:1", "1:1000"} {
		for _, role := range []string{"prefill", "decode"} {
			pl := newTestPlugin(t, nil)
			pod := engine("x", role, "chat", 4).Annotation(AnnotationPDRatio, ratio).Obj()
			c, status := runCycle(t, pl, pod, fabricNodes(), placed...)
			require.True(t, status.IsSuccess(), status.Message())
			for n := range c.infos {
				if c.filter(t, pod, n).IsSuccess() {
					c.score(t, pod, n)
				}
			}
		}
	}
	pl := newTestPlugin(t, nil)
	first := engine("u-p0", "prefill", "u", 1024, LabelUnitSize, "1024").Obj()
	c, status := runCycle(t, pl, first, fabricNodes())
	require.True(t, status.IsSuccess(), status.Message())
	for n := range c.infos {
		c.score(t, first, n)
	}
}

func TestClampScore(t *testing.T) {
	for in, want := range map[int64]int64{-9223372036854775808: 0, -25: 0, 0: 0, 57: 57, 100: 100, 101: 100, 9223372036854775807: 100} {
		require.Equal(t, want, clampScore(in), "clampScore(%d)", in)
	}
}
