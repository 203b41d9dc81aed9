package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Machine describes where a report was measured.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Kernel    string `json:"kernel,omitempty"`
	MemTotal  string `json:"mem_total,omitempty"`
	LoadAvg   string `json:"loadavg_at_start,omitempty"`
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if v, ok := procStatusField("/proc/meminfo", "MemTotal"); ok {
		m.MemTotal = fmt.Sprintf("%.1f GiB", float64(v)/(1<<20))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// procStatusField reads a "Key: <n> kB" line of a /proc file, in KiB.
func procStatusField(path, key string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0, false
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		return n, err == nil
	}
	return 0, false
}

// MemSnapshot is a process's memory after a full GC with freed memory
// returned to the OS.
type MemSnapshot struct {
	RSSKiB     int64 `json:"rss_kib"`
	HeapKiB    int64 `json:"heap_inuse_kib"`
	StackKiB   int64 `json:"stack_inuse_kib"`
	LiveKiB    int64 `json:"heap_alloc_kib"` // bytes in live objects (HeapInuse less the free room of its spans)
	Goroutines int   `json:"goroutines"`
	FDs        int   `json:"fds"`
}

// steadyGCs is how many collections run before a snapshot: each may halve
// the stack of a goroutine using under a quarter of it, so stacks grown
// during start-up are back to an idle size, as in a process that has run
// for a few minutes (the runtime collects at least every two).
const steadyGCs = 4

func memSnapshot() MemSnapshot {
	for range steadyGCs - 1 {
		runtime.GC()
	}
	debug.FreeOSMemory() // runs a GC first
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, _ := procStatusField("/proc/self/status", "VmRSS")
	fds := 0
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(ents)
	}
	return MemSnapshot{RSSKiB: rss, HeapKiB: int64(ms.HeapInuse >> 10), StackKiB: int64(ms.StackInuse >> 10), LiveKiB: int64(ms.HeapAlloc >> 10),
		Goroutines: runtime.NumGoroutine(), FDs: fds}
}

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit (the scale
// scenario holds two descriptors per connection in each process).
func raiseFileLimit() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return fmt.Errorf("setrlimit: %w", err)
		}
	}
	return nil
}

// fileLimit returns the soft RLIMIT_NOFILE.
func fileLimit() uint64 {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	return l.Cur
}

// cpuTime returns the CPU time (user + system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadMeter measures how much CPU other processes used over an interval,
// from /proc/stat (all CPUs busy time) minus this process and its waited-for
// children: the noise a shared machine adds to a measurement.
type loadMeter struct {
	wall  time.Time
	busy  time.Duration
	ours  time.Duration
	valid bool
}

func startLoadMeter() loadMeter {
	busy, ok := machineBusy()
	return loadMeter{wall: time.Now(), busy: busy, ours: ownCPU(), valid: ok}
}

// others returns the CPU cores other processes kept busy on average since
// the meter started, or -1 when /proc/stat is unreadable.
func (m loadMeter) others() float64 {
	busy, ok := machineBusy()
	if !ok || !m.valid {
		return -1
	}
	wall := time.Since(m.wall)
	if wall <= 0 {
		return -1
	}
	other := (busy - m.busy) - (ownCPU() - m.ours)
	return max(0, other.Seconds()/wall.Seconds())
}

// ownCPU is the CPU time of this process and its finished children.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) != nil {
		return cpuTime()
	}
	return cpuTime() + time.Duration(ru.Utime.Nano()+ru.Stime.Nano())
}

// machineBusy is the non-idle CPU time of all CPUs since boot.
func machineBusy() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, false
	}
	var total, idle int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		if i >= 7 { // steal, guest, guest_nice: steal is busy elsewhere; guest is counted in user
			if i == 7 {
				total += n
			}
			continue
		}
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	const userHZ = 100 // USER_HZ on Linux
	return time.Duration(total-idle) * time.Second / userHZ, true
}
