package pdaffinity

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tandem-sched/tandem/pkg/topology"
)

func testPod(name string) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name)}}
}

// In a pool a decode pairs once (the pair is counted when its second pod binds): decodes bound before
// any prefill pair with the first prefill, a decode bound after prefills
// pairs with the nearest, and a deleted prefill's instance starts over.
func TestPairBookCountsEachPairOnceWhenItsSecondPodBinds(t *testing.T) {
	// Nodes on the same letter share an NVLink domain; others pair at the leaf.
	price := func(a, b string) (topology.PathClass, time.Duration) {
		if a[0] == b[0] {
			return topology.LevelNVLinkDomain, time.Millisecond
		}
		return topology.LevelLeaf, 10 * time.Millisecond
	}
	b := newPairBook()
	if got := b.bound("ns/u", testPod("d0"), "a1", false, true, price); len(got) != 0 {
		t.Fatalf("a decode bound first completed pairs %v", got)
	}
	if got := b.bound("ns/u", testPod("d1"), "b1", false, true, price); len(got) != 0 {
		t.Fatalf("a second decode bound before any prefill completed pairs %v", got)
	}
	got := b.bound("ns/u", testPod("p0"), "b2", true, true, price)
	if len(got) != 2 || got[0].decode.pod.Name != "d0" || got[0].class != topology.LevelLeaf ||
		got[1].decode.pod.Name != "d1" || got[1].class != topology.LevelNVLinkDomain {
		t.Fatalf("the first prefill completed %+v, want d0 over the leaf and d1 over NVLink", got)
	}
	if got := b.bound("ns/u", testPod("p1"), "a2", true, true, price); len(got) != 0 {
		t.Fatalf("a second prefill re-paired decodes already paired: %+v", got)
	}
	got = b.bound("ns/u", testPod("d2"), "a3", false, true, price)
	if len(got) != 1 || got[0].prefill.pod.Name != "p1" || got[0].class != topology.LevelNVLinkDomain {
		t.Fatalf("a decode bound after prefills completed %+v, want the nearest, p1", got)
	}
	if got := b.bound("ns/other", testPod("d3"), "a4", false, true, price); len(got) != 0 {
		t.Fatalf("a decode paired with another instance's prefill: %+v", got)
	}

	for _, uid := range []string{"p0", "p1", "d0", "d1", "d2"} {
		b.forget(types.UID(uid))
	}
	if _, ok := b.byInstance["ns/u"]; ok {
		t.Errorf("an instance with no pod left is still kept")
	}
	if got := b.bound("ns/u", testPod("d4"), "a1", false, true, price); len(got) != 0 {
		t.Errorf("a decode paired with a deleted prefill: %+v", got)
	}
}

// A replica unit: every prefill pairs with every decode, each pair counted
// when its second pod binds.
func TestPairBookCountsEveryPairOfAReplicaUnit(t *testing.T) {
	price := func(a, b string) (topology.PathClass, time.Duration) {
		if a[0] == b[0] {
			return topology.LevelNVLinkDomain, time.Millisecond
		}
		return topology.LevelLeaf, 10 * time.Millisecond
	}
	b := newPairBook()
	if got := b.bound("ns/u", testPod("p0"), "a1", true, false, price); len(got) != 0 {
		t.Fatalf("a prefill bound first completed pairs %v", got)
	}
	got := b.bound("ns/u", testPod("d0"), "a2", false, false, price)
	if len(got) != 1 || got[0].prefill.pod.Name != "p0" || got[0].class != topology.LevelNVLinkDomain {
		t.Fatalf("d0 completed %+v, want p0 over NVLink", got)
	}
	got = b.bound("ns/u", testPod("p1"), "b1", true, false, price)
	if len(got) != 1 || got[0].decode.pod.Name != "d0" || got[0].class != topology.LevelLeaf {
		t.Fatalf("p1 completed %+v, want d0 over the leaf", got)
	}
	got = b.bound("ns/u", testPod("d1"), "b2", false, false, price)
	if len(got) != 2 || got[0].prefill.pod.Name != "p0" || got[0].class != topology.LevelLeaf ||
		got[1].prefill.pod.Name != "p1" || got[1].class != topology.LevelNVLinkDomain {
		t.Fatalf("d1 completed %+v, want p0 over the leaf and p1 over NVLink", got)
	}
	for _, uid := range []string{"p0", "p1", "d0", "d1"} {
		b.forget(types.UID(uid))
	}
	if _, ok := b.byInstance["ns/u"]; ok {
		t.Errorf("an instance with no pod left is still kept")
	}
}
