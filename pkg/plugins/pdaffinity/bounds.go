package pdaffinity

import (
	"fmt"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"
)

// Bounds on the numbers a pod carries. They are far above any real unit or
// pool, and low enough that no sum or product of them overflows.
const (
	// MaxUnitSize is the most pods one replica-mode unit may have, from
	// tandem.dev/unit-size or a PodGroup's minMember.
	MaxUnitSize = 1024
	// MaxRatioTerm is the largest term of tandem.dev/pd-ratio.
	MaxRatioTerm = 1000
)

// parsePDRatio reads tandem.dev/pd-ratio: two positive whole numbers, each
// at most MaxRatioTerm, written without signs or leading zeros.
func parsePDRatio(pod *v1.Pod, v string) (prefill, decode int, err error) {
	ps, ds, ok := strings.Cut(v, ":")
	if ok {
		prefill, err = strconv.Atoi(ps)
		if err == nil {
			decode, err = strconv.Atoi(ds)
		}
	}
	if !ok || err != nil || prefill < 1 || decode < 1 || strconv.Itoa(prefill)+":"+strconv.Itoa(decode) != v {
		return 0, 0, fmt.Errorf("pod annotation %s=%q is not a ratio of positive whole numbers like 1:2", AnnotationPDRatio, v)
	}
	if prefill > MaxRatioTerm || decode > MaxRatioTerm {
		return 0, 0, fmt.Errorf("pod %s/%s: annotation %s=%q has a term above %d", pod.Namespace, pod.Name, AnnotationPDRatio, v, MaxRatioTerm)
	}
	return prefill, decode, nil
}

// parseUnitSize reads tandem.dev/unit-size: a number of pods in
// [1, MaxUnitSize].
func parseUnitSize(pod *v1.Pod, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("pod label %s=%q is not a positive number of pods", LabelUnitSize, v)
	}
	if n > MaxUnitSize {
		return 0, fmt.Errorf("pod %s/%s: label %s=%q is more than %d pods", pod.Namespace, pod.Name, LabelUnitSize, v, MaxUnitSize)
	}
	return n, nil
}

// clampScore keeps a score in [0, MaxNodeScore] whatever went into it.
func clampScore(s int64) int64 {
	return max(0, min(fwk.MaxNodeScore, s))
}
