// Package config holds the internal form of tandem's scheduler plugin args,
// registered into the kube-scheduler config scheme the way scheduler-plugins
// registers its own.
//
// +k8s:deepcopy-gen=package
package config
