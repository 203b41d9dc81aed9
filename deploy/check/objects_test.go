package check

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// objects are the decoded objects of one rendering, by type.
type objects struct {
	configMaps   []corev1.ConfigMap
	secrets      []corev1.Secret
	services     []corev1.Service
	deployments  []appsv1.Deployment
	pdbs         []policyv1.PodDisruptionBudget
	netpols      []networkingv1.NetworkPolicy
	monitors     []monitoringv1.ServiceMonitor
	rules        []monitoringv1.PrometheusRule
	scaledObject []scaledObject
}

// scaledObject mirrors the fields of KEDA's keda.sh/v1alpha1 ScaledObject that
// deploy/keda uses, so a strict decode refuses a misspelt or misplaced field.
// KEDA's own Go module pulls in most of KEDA's dependencies; these few fields
// are spelt as in KEDA's API reference (spec.scaleTargetRef, the replica
// bounds, pollingInterval, cooldownPeriod, triggers[].type/metadata).
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion,omitempty"`
			Kind       string `json:"kind,omitempty"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		Triggers        []struct {
			Type     string            `json:"type"`
			Name     string            `json:"name,omitempty"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// decodeAll decodes every YAML document of files (name → text) strictly into
// its typed object. An object of a kind the artifacts should not contain, an
// unknown field, or a duplicate key fails the test.
func decodeAll(t *testing.T, files map[string]string) objects {
	t.Helper()
	var out objects
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		for i, doc := range docSeparator.Split(files[name], -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			where := fmt.Sprintf("%s (document %d)", name, i)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			var err error
			switch gvk := tm.APIVersion + " " + tm.Kind; gvk {
			case "v1 ConfigMap":
				out.configMaps = append(out.configMaps, strict[corev1.ConfigMap](doc, &err))
			case "v1 Secret":
				out.secrets = append(out.secrets, strict[corev1.Secret](doc, &err))
			case "v1 Service":
				out.services = append(out.services, strict[corev1.Service](doc, &err))
			case "apps/v1 Deployment":
				out.deployments = append(out.deployments, strict[appsv1.Deployment](doc, &err))
			case "policy/v1 PodDisruptionBudget":
				out.pdbs = append(out.pdbs, strict[policyv1.PodDisruptionBudget](doc, &err))
			case "networking.k8s.io/v1 NetworkPolicy":
				out.netpols = append(out.netpols, strict[networkingv1.NetworkPolicy](doc, &err))
			case "monitoring.coreos.com/v1 ServiceMonitor":
				out.monitors = append(out.monitors, strict[monitoringv1.ServiceMonitor](doc, &err))
			case "monitoring.coreos.com/v1 PrometheusRule":
				out.rules = append(out.rules, strict[monitoringv1.PrometheusRule](doc, &err))
			case "keda.sh/v1alpha1 ScaledObject":
				out.scaledObject = append(out.scaledObject, strict[scaledObject](doc, &err))
			default:
				err = fmt.Errorf("unexpected object %q", gvk)
			}
			if err != nil {
				t.Errorf("%s: %v\n%s", where, err, doc)
			}
		}
	}
	return out
}

// strict decodes doc into a T as the API server's strict field validation
// does: field names match case-sensitively (encoding/json alone would take
// readOnlyRootFileSystem for readOnlyRootFilesystem), and an unknown or
// duplicate field is an error.
func strict[T any](doc string, errp *error) T {
	var v T
	if err := unmarshalStrict([]byte(doc), &v); err != nil {
		*errp = err
	}
	return v
}

func unmarshalStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := sigsjson.UnmarshalStrict(j, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func stripComments(doc string) string {
	var b strings.Builder
	for l := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// checkRestrictedPod checks the pod against the "restricted" Pod Security
// Standard (its non-root, seccomp, privilege-escalation, capability and
// volume-type rules, host namespaces and ports), plus what the project adds:
// a read-only root filesystem, no service-account token, and the image's
// numeric user from the Dockerfile.
func checkRestrictedPod(t *testing.T, name string, pod corev1.PodSpec, wantUser int64) {
	t.Helper()
	errorf := func(format string, a ...any) { t.Errorf(name+": "+format, a...) }
	psc := pod.SecurityContext
	if psc == nil {
		errorf("no pod securityContext")
		psc = &corev1.PodSecurityContext{}
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		errorf("uses a host namespace")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		errorf("automountServiceAccountToken is not false")
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		errorf("pod seccompProfile is not RuntimeDefault")
	}
	if psc.RunAsUser == nil || *psc.RunAsUser != wantUser {
		errorf("pod runAsUser is not the image's numeric user %d", wantUser)
	}
	for _, v := range pod.Volumes {
		switch {
		case v.ConfigMap != nil, v.Secret != nil, v.EmptyDir != nil, v.Projected != nil,
			v.DownwardAPI != nil, v.PersistentVolumeClaim != nil, v.Ephemeral != nil, v.CSI != nil:
		default:
			errorf("volume %s is of a type the restricted standard forbids (hostPath or another)", v.Name)
		}
	}
	for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
		sc := c.SecurityContext
		if sc == nil {
			errorf("container %s: no securityContext", c.Name)
			continue
		}
		nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
		if !nonRoot {
			errorf("container %s: runAsNonRoot is not true", c.Name)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			errorf("container %s: runAsUser 0", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			errorf("container %s: privileged", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			errorf("container %s: capabilities do not drop ALL", c.Name)
		} else if slices.ContainsFunc(sc.Capabilities.Add, func(c corev1.Capability) bool { return c != "NET_BIND_SERVICE" }) {
			errorf("container %s: adds capabilities %v", c.Name, sc.Capabilities.Add)
		}
		if sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
			errorf("container %s: seccomp Unconfined", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			errorf("container %s: root filesystem is not read-only", c.Name)
		}
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				errorf("container %s: hostPort %d", c.Name, p.HostPort)
			}
		}
		if c.Resources.Limits.Memory().IsZero() {
			errorf("container %s: no memory limit", c.Name)
		}
	}
}

// imageUser is the numeric uid of the Dockerfile's USER line.
func imageUser(t *testing.T, dockerfile string) int64 {
	t.Helper()
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^USER (\d+):(\d+)$`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("%s: USER is not a numeric uid:gid (runAsNonRoot cannot verify a name)", dockerfile)
	}
	var uid int64
	fmt.Sscan(m[1], &uid)
	return uid
}

// selects reports whether the selector matches the pod labels.
func selects(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("selector %v: %v", sel, err)
		return false
	}
	return !s.Empty() && s.Matches(labels.Set(podLabels))
}
