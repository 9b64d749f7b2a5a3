// Package infra holds the deployment of the ticketing system: the
// Kubernetes manifests (k8s/, and the kustomize overlays of skaffold's
// profiles: k8s-replicas/ and k8s-jetstream/), checked by this package's
// tests together with skaffold.yaml, the services' Dockerfile and the
// documentation, without a cluster: every manifest, and every overlay as
// kustomize renders it, decodes strictly into the k8s.io/api types and
// every reference between them holds; the JetStream cluster's nats.conf
// is parsed by nats-server's own parser. The k8s.io dependencies live in
// this module only.
package infra
