package config

import "testing"

func TestByteSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]ByteSize{"0": 0, "1048576": 1 << 20, "512MiB": 512 << 20, "10GiB": 10 << 30, "1GB": 1e9, "2 KB": 2000, "7B": 7} {
		var s ByteSize
		if err := s.UnmarshalText([]byte(in)); err != nil || s != want {
			t.Errorf("%q: %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1GiB", "1.5GiB", "9999999999TiB", "GiB"} {
		var s ByteSize
		if err := s.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted as %d", in, s)
		}
	}
	c, err := Parse([]byte("[nats.embedded]\nmax_store = \"10GiB\"\n"), []string{})
	if err != nil || c.NATS.Embedded.MaxStore != 10<<30 {
		t.Fatalf("max_store: %d, %v", c.NATS.Embedded.MaxStore, err)
	}
	c, err = Parse(nil, []string{"BRIDGE_NATS_EMBEDDED_MAX_STORE=64MiB"})
	if err != nil || c.NATS.Embedded.MaxStore != 64<<20 {
		t.Fatalf("max_store from env: %d, %v", c.NATS.Embedded.MaxStore, err)
	}
}
