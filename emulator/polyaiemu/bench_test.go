package polyaiemu

import (
	"runtime"
	"testing"
)

// BenchmarkIdleSessions measures what an idle session (token, session,
// SESSION_START, no socket) costs: no goroutine and a few hundred bytes.
func BenchmarkIdleSessions(b *testing.B) {
	s := New(Options{})
	defer s.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g := runtime.NumGoroutine()
	for b.Loop() {
		if _, err := s.CreateSession(SessionOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "heap-B/session")
	if extra := runtime.NumGoroutine() - g; extra > 0 {
		b.Fatalf("%d goroutines for idle sessions", extra)
	}
}
