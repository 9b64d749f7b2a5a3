// Package infra holds the deployment of the ticketing system: the
// Kubernetes manifests (k8s/, and k8s-replicas/ for skaffold's "replicas"
// profile), checked by this package's tests together with skaffold.yaml,
// the services' Dockerfile and the documentation, without a cluster: every
// manifest decodes strictly into the k8s.io/api types and every reference
// between them holds. The k8s.io dependencies live in this module only.
package infra
