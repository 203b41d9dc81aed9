package check

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/bridgeworks/bridge/internal/testutil"
)

const natsValuesFile = "../nats/values.yaml"

// natsValues mirrors the keys of the official NATS chart (version 2.14.2) that
// deploy/nats/values.yaml sets; a strict decode refuses any other key, so a
// misspelt key cannot be silently ignored by the chart.
type natsValues struct {
	Config struct {
		Cluster struct {
			Enabled  bool `json:"enabled"`
			Replicas int  `json:"replicas"`
		} `json:"cluster"`
		JetStream struct {
			Enabled   bool `json:"enabled"`
			FileStore struct {
				Enabled bool   `json:"enabled"`
				Dir     string `json:"dir"`
				PVC     struct {
					Enabled          bool    `json:"enabled"`
					Size             string  `json:"size"`
					StorageClassName *string `json:"storageClassName,omitempty"`
				} `json:"pvc"`
			} `json:"fileStore"`
		} `json:"jetstream"`
		Monitor struct {
			Enabled bool `json:"enabled"`
			Port    int  `json:"port"`
		} `json:"monitor"`
		Merge map[string]any `json:"merge"`
	} `json:"config"`
	Container struct {
		Env map[string]corev1.EnvVarSource `json:"env"`
	} `json:"container"`
	PodTemplate struct {
		TopologySpreadConstraints map[string]struct {
			MaxSkew           int    `json:"maxSkew"`
			WhenUnsatisfiable string `json:"whenUnsatisfiable"`
		} `json:"topologySpreadConstraints"`
	} `json:"podTemplate"`
}

// envNames are the variables container.env defines.
func (v natsValues) envNames() []string {
	var out []string
	for k := range v.Container.Env {
		out = append(out, k)
	}
	return out
}

func readNATSValues(t *testing.T) natsValues {
	t.Helper()
	b, err := os.ReadFile(natsValuesFile)
	if err != nil {
		t.Fatal(err)
	}
	// container.env values are {valueFrom: {...}}: lift valueFrom for the strict decode.
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if c, ok := raw["container"].(map[string]any); ok {
		if env, ok := c["env"].(map[string]any); ok {
			for k, v := range env {
				vf, ok := v.(map[string]any)["valueFrom"]
				if !ok || len(v.(map[string]any)) != 1 {
					t.Fatalf("%s: container.env.%s is not {valueFrom: ...}", natsValuesFile, k)
				}
				env[k] = vf
			}
		}
	}
	lifted, _ := json.Marshal(raw)
	var v natsValues
	if err := unmarshalStrict(lifted, &v); err != nil {
		t.Fatalf("%s: %v", natsValuesFile, err)
	}
	return v
}

var unquoteVar = regexp.MustCompile(`"<<\s+(.*?)\s+>>"`)

// mergeConf turns config.merge into nats.conf text the way the chart documents
// it: raw JSON (no HTML escaping, as its toPrettyRawJson), with "<< x >>"
// strings unquoted.
func mergeConf(t *testing.T, merge map[string]any) string {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(merge); err != nil {
		t.Fatal(err)
	}
	return unquoteVar.ReplaceAllString(b.String(), "$1")
}

// TestNATSValues checks deploy/nats/values.yaml: only documented chart keys, a
// 3-node cluster with JetStream on a file store with a volume, the monitoring
// port on, every password variable defined from a Secret, and accounts that
// grant exactly what the permissions block of docs/security.md grants (both
// parsed by nats-server's own config parser and compared).
func TestNATSValues(t *testing.T) {
	t.Parallel()
	v := readNATSValues(t)
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas < 3 {
		t.Errorf("cluster: enabled %v, replicas %d; want a cluster of 3 for the bridge's replicas = 3", c.Cluster.Enabled, c.Cluster.Replicas)
	}
	js := c.JetStream
	if !js.Enabled || !js.FileStore.Enabled || !js.FileStore.PVC.Enabled {
		t.Errorf("jetstream: enabled %v, fileStore %v, pvc %v; want all on", js.Enabled, js.FileStore.Enabled, js.FileStore.PVC.Enabled)
	}
	if q, err := resource.ParseQuantity(js.FileStore.PVC.Size); err != nil || q.IsZero() {
		t.Errorf("jetstream.fileStore.pvc.size %q: %v", js.FileStore.PVC.Size, err)
	}
	if !c.Monitor.Enabled {
		t.Error("monitor is off: KEDA reads consumer lag from it")
	}

	// Define each variable the merge refers to, as the container env does.
	vars := map[string]string{}
	for _, name := range v.envNames() {
		if src := v.Container.Env[name]; src.SecretKeyRef == nil || src.SecretKeyRef.Name == "" || src.SecretKeyRef.Key == "" {
			t.Errorf("container.env.%s does not come from a Secret key", name)
		}
		vars[name] = "pw-" + strings.ToLower(name)
	}
	merged := mergeConf(t, c.Merge)
	for _, m := range regexp.MustCompile(`(?m):\s+\$([A-Za-z_][A-Za-z0-9_]*),?$`).FindAllStringSubmatch(merged, -1) {
		if _, ok := vars[m[1]]; !ok {
			t.Errorf("config.merge refers to $%s, which container.env does not define", m[1])
		}
	}
	var defs strings.Builder
	for k, val := range vars {
		defs.WriteString(k + ": \"" + val + "\"\n")
	}
	got, err := conf.Parse(defs.String() + "\n" + strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(merged), "{"), "}"))
	if err != nil {
		t.Fatalf("config.merge is not a valid nats.conf: %v\n%s", err, merged)
	}
	doc, err := conf.Parse(defs.String() + testutil.DocumentedNATSConfig(t, "../../docs/security.md"))
	if err != nil {
		t.Fatalf("docs/security.md block: %v", err)
	}
	if !reflect.DeepEqual(normalize(t, got["accounts"]), normalize(t, doc["accounts"])) {
		g, _ := json.MarshalIndent(normalize(t, got["accounts"]), "", " ")
		d, _ := json.MarshalIndent(normalize(t, doc["accounts"]), "", " ")
		t.Errorf("the accounts of %s differ from docs/security.md's permissions block\nvalues: %s\ndocs:   %s", natsValuesFile, g, d)
	}
}

// normalize makes the parsers' number types and nesting comparable.
func normalize(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNATSChartRender renders the official NATS chart with
// deploy/nats/values.yaml and loads the resulting nats.conf into nats-server's
// option parser. The chart is not part of this repository: the test runs when
// NATS_CHART_DIR names an unpacked copy of it (helm pull nats/nats --version
// 2.14.2 --untar) and is skipped otherwise.
func TestNATSChartRender(t *testing.T) {
	dir := os.Getenv("NATS_CHART_DIR")
	if dir == "" {
		t.Skip("NATS_CHART_DIR is not set")
	}
	ch, err := loader.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ReadValuesFile(natsValuesFile)
	if err != nil {
		t.Fatal(err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "nats", Namespace: "nats", IsInstall: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatal(err)
	}
	var natsConf string
	for _, text := range out {
		for _, doc := range docSeparator.Split(text, -1) {
			var cm corev1.ConfigMap
			if yaml.Unmarshal([]byte(doc), &cm) == nil && cm.Kind == "ConfigMap" && cm.Data["nats.conf"] != "" {
				natsConf = cm.Data["nats.conf"]
			}
		}
	}
	if natsConf == "" {
		t.Fatal("the chart rendered no nats.conf")
	}
	for _, name := range readNATSValues(t).envNames() {
		t.Setenv(name, "pw-"+strings.ToLower(name))
	}
	t.Setenv("SERVER_NAME", "nats-0") // the chart sets it to the pod's name
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(natsConf), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("nats-server refuses the rendered config: %v\n%s", err, natsConf)
	}
	if !o.JetStream || o.Cluster.Port == 0 || o.HTTPPort == 0 {
		t.Errorf("rendered config: jetstream %v, cluster port %d, monitor port %d", o.JetStream, o.Cluster.Port, o.HTTPPort)
	}
	if len(o.Users) != 2 {
		t.Errorf("rendered config has %d users, want the bridge and the worker", len(o.Users))
	}
	t.Logf("nats.conf:\n%s", natsConf)
}
