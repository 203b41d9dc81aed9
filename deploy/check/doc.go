// Package check validates the deploy artifacts offline, without a cluster: the
// Helm chart in deploy/helm/bridge (rendered with Helm's own engine for the
// common value sets), the KEDA example in deploy/keda and the NATS chart values
// in deploy/nats. Every rendered object is decoded strictly into its typed
// Kubernetes object (k8s.io/api, and the Prometheus Operator's types for the
// ServiceMonitor; the KEDA ScaledObject into a strict struct of the fields the
// example uses), the embedded bridge config must pass `bridge check-config`, the
// probes must point at paths the bridge serves, and every pod must meet the
// "restricted" Pod Security Standard.
//
// It is a module of its own so that Helm and the Kubernetes API types stay out
// of the bridge's go.mod; .ci/run runs its tests.
package check
