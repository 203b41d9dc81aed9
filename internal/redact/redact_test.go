package redact

import "testing"

func TestURL(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"wss://app.band.ai/api/v1/socket/websocket?api_key=K&agent_id=A&vsn=2.0.0": "wss://app.band.ai/api/v1/socket/websocket?agent_id=REDACTED&api_key=REDACTED&vsn=REDACTED",
		"ws://user:pw@host/socket#frag":                                            "ws://REDACTED@host/socket",
		"nats://s3cr3t-token@host:4222":                                            "nats://REDACTED@host:4222",
		"ws://host/socket":                                                         "ws://host/socket",
		"::not a url":                                                              "<redacted url>",
		"user:pw@host:4222":                                                        "<redacted url>",
	}
	for in, want := range cases {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := URLs("nats://a:4222, tls://tok@b:4222"); got != "nats://a:4222,tls://REDACTED@b:4222" {
		t.Errorf("URLs: %q", got)
	}
}
