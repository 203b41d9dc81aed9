package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/platforms"
)

// TestHelpAndVersionFlags: the flag forms of help and version work from
// the top level, not only as commands.
func TestHelpAndVersionFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ arg, want string }{
		{"--help", "check-config"}, {"-h", "emulate PLATFORM"}, {"help", "demo"},
		{"--version", "bridge "}, {"version", "bridge "},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{tc.arg}, &out, &errOut); code != 0 {
			t.Errorf("%s: exit %d: %s", tc.arg, code, errOut.String())
		}
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("%s: output %q lacks %q", tc.arg, out.String(), tc.want)
		}
	}
}

// TestKubernetesManifest checks the shipped manifest offline: its embedded
// config passes check-config, its probes point at paths the bridge serves,
// and its pod runs as the image's numeric user under the restricted Pod
// Security Standard's required settings.
func TestKubernetesManifest(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../k8s/bridge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := string(b)

	var cfg strings.Builder
	in := false
	for line := range strings.SplitSeq(y, "\n") {
		switch {
		case strings.HasSuffix(strings.TrimSpace(line), "config.toml: |"):
			in = true
		case in && strings.HasPrefix(line, "    "):
			cfg.WriteString(strings.TrimPrefix(line, "    ") + "\n")
		case in:
			in = false
		}
	}
	c, err := config.Parse([]byte(cfg.String()), nil)
	if err != nil {
		t.Fatalf("embedded config: %v\n%s", err, cfg.String())
	}
	env := func(k string) (string, bool) { return "test-key", strings.Contains(y, "name: "+k) }
	if _, err := bridge.New(c, bridge.Options{Log: zerolog.Nop(), Registry: platforms.All(), LookupEnv: env}); err != nil {
		t.Fatalf("embedded config: %v", err)
	}

	served := map[string]bool{"/healthz": true, "/readyz": true, "/status": true, "/metrics": true}
	probes := regexp.MustCompile(`httpGet: \{path: (\S+), port: http\}`).FindAllStringSubmatch(y, -1)
	if len(probes) < 3 {
		t.Fatalf("want startup, readiness and liveness probes, found %d", len(probes))
	}
	for _, p := range probes {
		if !served[p[1]] {
			t.Errorf("probe path %s is not served", p[1])
		}
	}

	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	user := regexp.MustCompile(`(?m)^USER (\d+):(\d+)$`).FindStringSubmatch(string(df))
	if user == nil {
		t.Fatal("Dockerfile: USER is not numeric uid:gid (runAsNonRoot cannot verify a name)")
	}
	for _, want := range []string{
		"runAsNonRoot: true", "runAsUser: " + user[1], "seccompProfile: {type: RuntimeDefault}",
		"allowPrivilegeEscalation: false", "readOnlyRootFilesystem: true", `capabilities: {drop: ["ALL"]}`,
		"automountServiceAccountToken: false", "kind: PodDisruptionBudget",
	} {
		if !strings.Contains(y, want) {
			t.Errorf("k8s/bridge.yaml lacks %q", want)
		}
	}
}
