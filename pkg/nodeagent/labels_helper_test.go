package nodeagent

import "k8s.io/apimachinery/pkg/util/validation"

func isValidLabel(v string) bool { return len(validation.IsValidLabelValue(v)) == 0 }
