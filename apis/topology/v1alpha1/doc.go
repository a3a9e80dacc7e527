// Package v1alpha1 holds the tandem.dev/v1alpha1 API: NodeTopology, the
// hardware picture of one GPU node that tandem's node agent publishes and
// tandem's scheduler plugins read.
//
// +k8s:deepcopy-gen=package
// +groupName=tandem.dev
package v1alpha1
