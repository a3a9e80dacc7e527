// Package topology models where nodes sit in a cluster's network and NVLink
// hierarchy, and what moving a KV cache between two of them costs.
//
// A hierarchy is a list of Levels, coarse to fine, each backed by a node
// label. A node's label values form its DomainPath; the finest level two
// paths share decides their PathClass, and a CostModel turns the class into
// a bandwidth and a transfer time. The package is pure: it reads label maps
// the caller supplies and never talks to the API server.
package topology
