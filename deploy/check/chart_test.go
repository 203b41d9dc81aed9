package check

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bridgeworks/bridge/config"
)

const chartDir = "../helm/bridge"

// bridgeBin is the bridge binary built by TestMain, run for check-config.
var bridgeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deploy-check-")
	if err != nil {
		panic(err)
	}
	bridgeBin = filepath.Join(dir, "bridge")
	// Built in the bridge's own module, with its own go.sum.
	build := exec.Command("go", "build", "-o", bridgeBin, "./cmd/bridge")
	build.Dir = "../.."
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		panic("building the bridge for check-config: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// render renders the chart as `helm template bridge deploy/helm/bridge -n bridge
// -f <values>` would, with Helm's own engine.
func render(t *testing.T, values string) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ReadValues([]byte(values))
	if err != nil {
		t.Fatal(err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "bridge", Namespace: "bridge", IsInstall: true}, nil)
	if err != nil {
		return nil, err
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	for name := range out {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(out, name)
		}
	}
	return out, nil
}

// TestChart renders the chart for the common cases and checks every object.
func TestChart(t *testing.T) {
	t.Parallel()
	user := imageUser(t, "../../Dockerfile")
	type testCase struct {
		name, values string
		want         []string // kinds beyond the default set
		anyOptional  bool     // an operator's values: optional kinds may or may not render
	}
	cases := []testCase{
		{name: "defaults"},
		{name: "monitoring and network policy", values: `
serviceMonitor: {enabled: true, labels: {release: kube-prometheus-stack}}
prometheusRule: {enabled: true, labels: {release: kube-prometheus-stack}}
networkPolicy:
  enabled: true
  httpFrom:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
`, want: []string{"ServiceMonitor", "PrometheusRule", "NetworkPolicy"}},
		{name: "secret from values", values: `
secret:
  create: true
  existingSecret: ""
  data: {nats-password: p, support-bot-api-key: k}
`, want: []string{"Secret"}},
		{name: "no disruption budget, one replica", values: `
replicaCount: 1
podDisruptionBudget: {enabled: false}
topologySpread: []
`},
	}
	// An operator's own values file, checked the same way.
	if f := os.Getenv("BRIDGE_CHART_VALUES"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, testCase{name: f, values: string(b), anyOptional: true})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			files, err := render(t, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			o := decodeAll(t, files)
			checkChartObjects(t, o, user, tc.want, tc.anyOptional)
			dep := o.deployments[0]
			c := checkBridgeConfig(t, o, dep)
			if c != nil && len(c.Connection) == 0 {
				t.Error("the config has no connection")
			}
		})
	}
}

// TestChartRefusesMissingSecret: without a Secret to mount the chart does not
// render, and says which value is missing.
func TestChartRefusesMissingSecret(t *testing.T) {
	t.Parallel()
	_, err := render(t, "secret: {existingSecret: \"\"}\n")
	if err == nil || !strings.Contains(err.Error(), "secret.existingSecret") {
		t.Fatalf("want an error naming secret.existingSecret, got %v", err)
	}
}

func checkChartObjects(t *testing.T, o objects, user int64, want []string, anyOptional bool) {
	t.Helper()
	count := map[string]int{
		"ConfigMap": len(o.configMaps), "Secret": len(o.secrets), "Service": len(o.services),
		"Deployment": len(o.deployments), "PodDisruptionBudget": len(o.pdbs),
		"NetworkPolicy": len(o.netpols), "ServiceMonitor": len(o.monitors), "ScaledObject": len(o.scaledObject),
		"PrometheusRule": len(o.rules),
	}
	for kind, n := range count {
		wantN := 0
		if slices.Contains([]string{"ConfigMap", "Service", "Deployment"}, kind) || slices.Contains(want, kind) {
			wantN = 1
		}
		if kind == "PodDisruptionBudget" && len(o.deployments) == 1 && *o.deployments[0].Spec.Replicas > 1 {
			wantN = 1
		}
		if n != wantN && !(anyOptional && wantN == 0) {
			t.Errorf("%d %s objects, want %d", n, kind, wantN)
		}
	}
	if len(o.deployments) != 1 || len(o.services) != 1 {
		t.FailNow()
	}
	dep, svc := o.deployments[0], o.services[0]
	pod := dep.Spec.Template
	checkRestrictedPod(t, "Deployment "+dep.Name, pod.Spec, user)
	if !selects(t, dep.Spec.Selector, pod.Labels) {
		t.Errorf("Deployment %s: selector does not match its pod labels", dep.Name)
	}
	for _, c := range pod.Spec.TopologySpreadConstraints {
		if !selects(t, c.LabelSelector, pod.Labels) {
			t.Errorf("topology spread on %s does not select the bridge pods", c.TopologyKey)
		}
	}
	for _, p := range o.pdbs {
		if !selects(t, p.Spec.Selector, pod.Labels) {
			t.Errorf("PodDisruptionBudget %s does not select the bridge pods", p.Name)
		}
	}
	if !selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, pod.Labels) {
		t.Errorf("Service %s does not select the bridge pods", svc.Name)
	}
	for _, p := range svc.Spec.Ports {
		if containerPort(pod.Spec.Containers[0], p.TargetPort.String()) == 0 {
			t.Errorf("Service %s: targetPort %s is no port of the container", svc.Name, p.TargetPort.String())
		}
	}
	for _, m := range o.monitors {
		if !selects(t, &m.Spec.Selector, svc.Labels) {
			t.Errorf("ServiceMonitor %s does not select Service %s", m.Name, svc.Name)
		}
		for _, e := range m.Spec.Endpoints {
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
				t.Errorf("ServiceMonitor %s: port %q is not a port of Service %s", m.Name, e.Port, svc.Name)
			}
			if !served[e.Path] {
				t.Errorf("ServiceMonitor %s scrapes %s, which the bridge does not serve", m.Name, e.Path)
			}
		}
	}
	for _, np := range o.netpols {
		if !selects(t, &np.Spec.PodSelector, pod.Labels) {
			t.Errorf("NetworkPolicy %s does not select the bridge pods", np.Name)
		}
	}
	checkProbes(t, dep)
	if !slices.ContainsFunc(pod.Spec.Containers[0].Env, func(e corev1.EnvVar) bool {
		return e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil &&
			e.ValueFrom.ResourceFieldRef.Resource == "limits.memory"
	}) {
		t.Errorf("%s: GOMEMLIMIT does not come from the memory limit", dep.Name)
	}
}

// served are the paths the bridge's HTTP listener serves.
var served = map[string]bool{"/healthz": true, "/readyz": true, "/status": true, "/metrics": true}

// checkProbes: all three probes exist and point at served paths on the
// container's http port; liveness and startup use /healthz, which does not
// depend on NATS or the platforms, and readiness uses /readyz.
func checkProbes(t *testing.T, dep appsv1.Deployment) {
	t.Helper()
	c := dep.Spec.Template.Spec.Containers[0]
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"startupProbe", c.StartupProbe, "/healthz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s", dep.Name, p.name)
			continue
		}
		if g := p.probe.HTTPGet; g.Path != p.path || !served[g.Path] {
			t.Errorf("%s: %s path %s, want %s", dep.Name, p.name, g.Path, p.path)
		} else if containerPort(c, g.Port.String()) == 0 {
			t.Errorf("%s: %s port %s is no port of the container", dep.Name, p.name, g.Port.String())
		}
	}
}

// containerPort resolves a port name or number to the container's port, 0 when
// the container has none such.
func containerPort(c corev1.Container, port string) int32 {
	for _, p := range c.Ports {
		if p.Name == port || strconv.Itoa(int(p.ContainerPort)) == port {
			return p.ContainerPort
		}
	}
	return 0
}

// checkBridgeConfig checks the config the Deployment mounts: it is where --config
// points, passes `bridge check-config` with the Secret's files in place
// (placeholder values) and the container's environment, listens for HTTP on the
// container's http port on all interfaces, and reads no secret file the
// rendered Secret lacks. It returns the parsed config.
func checkBridgeConfig(t *testing.T, o objects, dep appsv1.Deployment) *config.Config {
	t.Helper()
	pod := dep.Spec.Template.Spec
	ctr := pod.Containers[0]
	mounts := map[string]corev1.Volume{} // mount path → volume
	for _, m := range ctr.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == m.Name {
				mounts[m.MountPath] = v
			}
		}
	}
	i := slices.Index(ctr.Args, "--config")
	if i < 0 || i+1 >= len(ctr.Args) {
		t.Fatalf("%s: args %v have no --config FILE", dep.Name, ctr.Args)
	}
	cfgPath := ctr.Args[i+1]
	cfgVol, ok := mounts[filepath.Dir(cfgPath)]
	if !ok || cfgVol.ConfigMap == nil {
		t.Fatalf("%s: --config %s is not in a mounted ConfigMap", dep.Name, cfgPath)
	}
	var toml string
	for _, cm := range o.configMaps {
		if cm.Name == cfgVol.ConfigMap.Name {
			toml, ok = cm.Data[filepath.Base(cfgPath)]
		}
	}
	if !ok {
		t.Fatalf("%s: ConfigMap %s with key %s is not rendered", dep.Name, cfgVol.ConfigMap.Name, filepath.Base(cfgPath))
	}

	// The Secret's keys appear as files under its mount path: put a placeholder
	// file in a temporary directory for each one the config names.
	tmp := t.TempDir()
	for mountPath, v := range mounts {
		if v.Secret == nil {
			continue
		}
		var rendered *corev1.Secret
		for i := range o.secrets {
			if o.secrets[i].Name == v.Secret.SecretName {
				rendered = &o.secrets[i]
			}
		}
		ref := regexp.MustCompile(`"` + regexp.QuoteMeta(mountPath) + `/([^"/]+)"`)
		for _, m := range ref.FindAllStringSubmatch(toml, -1) {
			key := m[1]
			if rendered != nil {
				if _, ok := rendered.StringData[key]; !ok {
					t.Errorf("the config reads %s/%s, but Secret %s has no key %s", mountPath, key, rendered.Name, key)
				}
			}
			dir := filepath.Join(tmp, "secret", filepath.Base(mountPath))
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, key), []byte("placeholder-secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		toml = strings.ReplaceAll(toml, `"`+mountPath+`/`, `"`+filepath.Join(tmp, "secret", filepath.Base(mountPath))+`/`)
	}
	file := filepath.Join(tmp, "config.toml")
	if err := os.WriteFile(file, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}

	// The container's environment, secrets as placeholders; nothing of the
	// test's own environment (a BRIDGE_* variable would override the file).
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmp}
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			env = append(env, e.Name+"=placeholder-secret")
		}
	}
	cmd := exec.Command(bridgeBin, "check-config", "--config", file)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: bridge check-config: %v\n%s\nconfig:\n%s", dep.Name, err, out, toml)
	}

	c, err := config.Parse([]byte(toml), env)
	if err != nil {
		t.Fatalf("%s: config: %v", dep.Name, err)
	}
	host, port, err := net.SplitHostPort(c.HTTP.Listen)
	if err != nil {
		t.Fatalf("%s: http.listen %q: %v", dep.Name, c.HTTP.Listen, err)
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		t.Errorf("%s: http.listen %s is loopback: probes and scrapes cannot reach it", dep.Name, c.HTTP.Listen)
	}
	if p := containerPort(ctr, "http"); strconv.Itoa(int(p)) != port {
		t.Errorf("%s: http.listen port %s is not the container's http port %d", dep.Name, port, p)
	}
	if c.NATS.URL == "" {
		t.Errorf("%s: nats.url is empty: the bridge would start an embedded server on a read-only filesystem", dep.Name)
	}
	return c
}
