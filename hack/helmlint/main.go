// Command helmlint runs Helm's lint (what `helm lint --strict` runs, through
// Helm's SDK) on a chart, once with its default values and once more with
// each values file given, and exits non-zero on any error or warning.
// hack/verify.sh runs it on charts/tandem.
//
//	go run ./hack/helmlint CHART [VALUES.yaml ...]
package main

import (
	"fmt"
	"os"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"sigs.k8s.io/yaml"
)

// kubeVersion is the Kubernetes version lint renders for: the one tandem
// builds against.
var kubeVersion = &common.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: helmlint CHART [VALUES.yaml ...]")
		os.Exit(2)
	}
	chart := os.Args[1]
	runs := []string{""}
	runs = append(runs, os.Args[2:]...)
	failed := false
	for _, file := range runs {
		values := map[string]any{}
		name := "default values"
		if file != "" {
			name = file
			data, err := os.ReadFile(file)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			if err := yaml.Unmarshal(data, &values); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
				os.Exit(1)
			}
		}
		lint := action.NewLint()
		lint.Strict = true
		lint.Namespace = "tandem-system"
		lint.KubeVersion = kubeVersion
		result := lint.Run([]string{chart}, values)
		shown := 0
		for _, msg := range result.Messages {
			if msg.Severity > support.InfoSev {
				fmt.Printf("%s (%s): %s\n", chart, name, msg)
				shown++
			}
		}
		// Errors repeats each message shown; the rest (an unreadable chart)
		// come only here.
		if shown == 0 {
			for _, err := range result.Errors {
				fmt.Printf("%s (%s): %v\n", chart, name, err)
			}
		}
		if len(result.Errors) > 0 || result.TotalChartsLinted != 1 {
			failed = true
		} else {
			fmt.Printf("%s (%s): lint ok\n", chart, name)
		}
	}
	if failed {
		os.Exit(1)
	}
}
