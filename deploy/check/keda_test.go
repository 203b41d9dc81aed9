package check

import (
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/dispatch"
	"github.com/bridgeworks/bridge/subjects"
)

const kedaFile = "../keda/worker.yaml"

// The metadata KEDA's nats-jetstream scaler reads, and the ones it requires.
var (
	jetstreamScalerKeys     = []string{"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold", "activationLagThreshold", "useHttps"}
	jetstreamScalerRequired = []string{"natsServerMonitoringEndpoint", "account", "stream", "consumer"}
)

// TestKEDAWorker checks deploy/keda/worker.yaml: its objects decode strictly,
// the worker pod meets the restricted standard, and the ScaledObject scales
// that Deployment on the lag of the managed-dispatch consumer of the worker's
// connection, in the stream, account and NATS release the other artifacts
// define: the connection and its dispatch rule exist in the chart's default
// config, the consumer is dispatch.ConsumerName of it, the account and the
// worker's user exist in deploy/nats/values.yaml with the right to answer that
// connection's work requests, and the monitoring endpoint is the NATS
// release's headless Service on the monitor port.
func TestKEDAWorker(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(kedaFile)
	if err != nil {
		t.Fatal(err)
	}
	o := decodeAll(t, map[string]string{kedaFile: string(b)})
	if len(o.deployments) != 1 || len(o.scaledObject) != 1 {
		t.Fatalf("%s: %d Deployments and %d ScaledObjects, want one each", kedaFile, len(o.deployments), len(o.scaledObject))
	}
	dep, so := o.deployments[0], o.scaledObject[0]
	checkRestrictedPod(t, "Deployment "+dep.Name, dep.Spec.Template.Spec, imageUser(t, "../keda/Dockerfile.worker"))
	if !selects(t, dep.Spec.Selector, dep.Spec.Template.Labels) {
		t.Errorf("Deployment %s: selector does not match its pod labels", dep.Name)
	}

	ref := so.Spec.ScaleTargetRef
	if ref.Name != dep.Name || (ref.Kind != "" && ref.Kind != "Deployment") {
		t.Errorf("ScaledObject %s scales %s %q, not Deployment %s", so.Name, ref.Kind, ref.Name, dep.Name)
	}
	if so.Spec.MinReplicaCount == nil || so.Spec.MaxReplicaCount == nil || *so.Spec.MinReplicaCount > *so.Spec.MaxReplicaCount {
		t.Errorf("ScaledObject %s: replica bounds %v..%v", so.Name, so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount)
	}
	if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "nats-jetstream" {
		t.Fatalf("ScaledObject %s: want one nats-jetstream trigger, got %+v", so.Name, so.Spec.Triggers)
	}
	md := so.Spec.Triggers[0].Metadata
	for k := range md {
		if !slices.Contains(jetstreamScalerKeys, k) {
			t.Errorf("trigger metadata %q is not a nats-jetstream scaler field", k)
		}
	}
	for _, k := range jetstreamScalerRequired {
		if md[k] == "" {
			t.Errorf("trigger metadata %q is missing", k)
		}
	}
	for _, k := range []string{"lagThreshold", "activationLagThreshold"} {
		if v, ok := md[k]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < 0 || (k == "lagThreshold" && n == 0) {
				t.Errorf("trigger metadata %s %q is not a positive integer", k, v)
			}
		}
	}

	// The worker's connection, NATS URL and user.
	ctr := dep.Spec.Template.Spec.Containers[0]
	arg := func(flag string) string {
		if i := slices.Index(ctr.Args, flag); i >= 0 && i+1 < len(ctr.Args) {
			return ctr.Args[i+1]
		}
		t.Fatalf("worker args %v lack %s", ctr.Args, flag)
		return ""
	}
	conn := arg("--conn")
	natsURL, err := url.Parse(strings.ReplaceAll(arg("--nats"), "$(NATS_PASSWORD)", "pw"))
	if err != nil || natsURL.User == nil {
		t.Fatalf("worker --nats %q is not a URL with a user: %v", arg("--nats"), err)
	}
	hasSecretPassword := false
	for _, e := range ctr.Env {
		if e.Name == "NATS_PASSWORD" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			hasSecretPassword = true
		}
	}
	if !hasSecretPassword {
		t.Error("the worker's NATS_PASSWORD does not come from a Secret")
	}

	// The bridge side: the chart's default config.
	files, err := render(t, "")
	if err != nil {
		t.Fatal(err)
	}
	chart := decodeAll(t, files)
	cfg := checkBridgeConfig(t, chart, chart.deployments[0])
	i := slices.IndexFunc(cfg.Connection, func(c config.Connection) bool { return c.Name == conn })
	if i < 0 {
		t.Fatalf("the worker's connection %q is not in the chart's config", conn)
	}
	platform := cfg.Connection[i].Platform
	if md["consumer"] != dispatch.ConsumerName(conn) {
		t.Errorf("consumer %q, want the managed-dispatch consumer %q of connection %s", md["consumer"], dispatch.ConsumerName(conn), conn)
	}
	if !slices.ContainsFunc(cfg.Dispatch, func(d config.Dispatch) bool { return d.Connection == conn }) {
		t.Errorf("the chart's config has no [[dispatch]] rule for %s, so %s does not exist", conn, md["consumer"])
	}
	if want := subjects.StreamName(cfg.NATS.Prefix, subjects.StreamEvents); md["stream"] != want {
		t.Errorf("stream %q, want %q", md["stream"], want)
	}
	bridgeNATS, err := url.Parse(cfg.NATS.URL)
	if err != nil {
		t.Fatal(err)
	}
	if bridgeNATS.Host != natsURL.Host {
		t.Errorf("the worker connects to %s, the bridge to %s", natsURL.Host, bridgeNATS.Host)
	}

	// The NATS side: account, users and the monitoring endpoint.
	nv := readNATSValues(t)
	host, port, err := net.SplitHostPort(md["natsServerMonitoringEndpoint"])
	if err != nil {
		t.Fatalf("natsServerMonitoringEndpoint: %v", err)
	}
	if port != strconv.Itoa(nv.Config.Monitor.Port) {
		t.Errorf("natsServerMonitoringEndpoint port %s, NATS monitor port %d", port, nv.Config.Monitor.Port)
	}
	svc, rest, _ := strings.Cut(natsURL.Hostname(), ".")
	if want := svc + "-headless." + rest; host != want {
		t.Errorf("natsServerMonitoringEndpoint host %s, want the headless Service %s", host, want)
	}
	accounts, _ := nv.Config.Merge["accounts"].(map[string]any)
	account, _ := accounts[md["account"]].(map[string]any)
	if account == nil {
		t.Fatalf("account %q is not in %s", md["account"], natsValuesFile)
	}
	users := map[string]map[string]any{}
	for _, u := range account["users"].([]any) {
		u := u.(map[string]any)
		users[u["user"].(string)] = u
	}
	if _, ok := users[cfg.NATS.User]; !ok {
		t.Errorf("the bridge's nats.user %q is not in account %s", cfg.NATS.User, md["account"])
	}
	wu, ok := users[natsURL.User.Username()]
	if !ok {
		t.Fatalf("the worker's user %q is not in account %s", natsURL.User.Username(), md["account"])
	}
	work := subjects.Filter(cfg.NATS.Prefix, subjects.KindWork, platform, conn)
	sub, _ := wu["permissions"].(map[string]any)["subscribe"].(map[string]any)["allow"].([]any)
	if !slices.Contains(sub, any(work)) {
		t.Errorf("the worker's user may not subscribe to %s (allowed: %v)", work, sub)
	}
}
