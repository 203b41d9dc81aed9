package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of [Run].
type Report struct {
	Machine   Machine   `json:"machine"`
	Command   string    `json:"command"`
	Mode      string    `json:"mode"`
	Runs      int       `json:"runs"`
	Scenarios []string  `json:"scenarios"`
	Started   time.Time `json:"started"`
	Elapsed   float64   `json:"elapsed_seconds"`
	Figures   []Figure  `json:"figures"`
	Targets   []Target  `json:"targets"`
	Notes     []string  `json:"notes,omitempty"`
	Errors    []string  `json:"errors,omitempty"`
}

// Target is one goal of issue #6 checked against a figure's median.
type Target struct {
	Goal   string  `json:"goal"`
	Figure string  `json:"figure"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	// Status is "met", "not met" or "not measured".
	Status string `json:"status"`
	// OtherCPU is the median CPU (cores) other processes used while the
	// figure's scenario ran; above noisyCores the verdict is unreliable.
	OtherCPU float64 `json:"other_cpu_cores"`
}

// noisyCores is the other-process CPU above which a verdict is flagged.
const noisyCores = 0.5

const otherCPUPrefix = "CPU used by other processes (incl. steal) during "

// targets checks the goals against the figures measured.
func targets(figs []Figure) []Target {
	type goal struct {
		text, group, prefix, suffix string
		atLeast                     bool
		limit                       float64
	}
	goals := []goal{
		{"inbound ≥ 0.9 × baseline 1", "inbound", "bridge ÷ baseline 1", "", true, 0.9},
		{"added p99 ≤ 0.5 ms at 2,000/s", "latency", "added p99", "", false, 0.5},
		{"≤ 40 KiB per idle Band agent connection (RSS)", "scale", "", ": RSS per connection", false, 40},
		{"≤ 3 goroutines per idle Band agent connection", "scale", "", ": goroutines per connection", false, 3},
		{"≤ 40 KiB per idle PolyAI session (RSS)", "scale_polyai", "", ": RSS per session", false, 40},
		{"commands ≥ 0.8 × baseline 2", "commands", figCommandsRatio, "", true, 0.8},
		{"managed-dispatch p99 ≤ 2 ms at 1,000/s", "dispatch", figDispatchP99, "", false, 2},
		{"managed-dispatch CPU per message ≤ 1.3 × the straight-line dispatch baseline", "dispatch", figDispatchCPURatio, "", false, 1.3},
		{"chatapi streamed fragments/s ≥ 0.9 × the straight-line SSE baseline", "chatapi", figChatAPIRatio, "", true, 0.9},
	}
	noise := map[string]float64{}
	for _, f := range figs {
		if f.Group == "machine" && strings.HasPrefix(f.Name, otherCPUPrefix) && len(f.Runs) > 0 {
			noise[strings.TrimPrefix(f.Name, otherCPUPrefix)] = f.Median
		}
	}
	var out []Target
	for _, g := range goals {
		found := false
		for _, f := range figs {
			if f.Group != g.group || !strings.HasPrefix(f.Name, g.prefix) || !strings.HasSuffix(f.Name, g.suffix) {
				continue
			}
			found = true
			t := Target{Goal: g.text, Figure: f.Name, Unit: f.Unit, Value: f.Median, Status: "not measured", OtherCPU: noise[g.group]}
			if len(f.Runs) > 0 {
				met := f.Median <= g.limit
				if g.atLeast {
					met = f.Median >= g.limit
				}
				t.Status = map[bool]string{true: "met", false: "not met"}[met]
			} else {
				t.Value = 0
			}
			out = append(out, t)
		}
		if !found {
			out = append(out, Target{Goal: g.text, Status: "not measured"})
		}
	}
	return out
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report as aligned text.
func (r *Report) WriteTable(w io.Writer) error {
	m := r.Machine
	fmt.Fprintf(w, "machine:  %d CPUs, %s, %s, %s, kernel %s, %s RAM, load at start %s\n",
		m.CPUs, m.CPUModel, m.GoVersion, m.OS, m.Kernel, m.MemTotal, m.LoadAvg)
	fmt.Fprintf(w, "command:  %s\n", r.Command)
	fmt.Fprintf(w, "mode:     %s, %d run(s) per figure (median, min, max), %.0f s elapsed\n\n", r.Mode, r.Runs, r.Elapsed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "group\tfigure\tmedian\tmin\tmax\tunit\truns\t")
	for _, f := range r.Figures {
		if len(f.Runs) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t—\t—\t—\t%s\t0\t\n", f.Group, f.Name, f.Unit)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", f.Group, f.Name, num(f.Median), num(f.Min), num(f.Max), f.Unit, len(f.Runs))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\ntargets:")
	for _, t := range r.Targets {
		fmt.Fprintf(w, "  %-48s %-13s %s   [%s]\n", t.Goal, t.Status, targetValue(t), t.Figure)
	}
	writeList(w, "notes", r.Notes)
	writeList(w, "errors", r.Errors)
	for _, f := range r.Figures {
		if f.Note != "" {
			fmt.Fprintf(w, "  [%s] %s: %s\n", f.Group, f.Name, f.Note)
		}
	}
	return nil
}

// WriteMarkdown writes the report as Markdown, for docs/PERFORMANCE.md.
func (r *Report) WriteMarkdown(w io.Writer) error {
	m := r.Machine
	fmt.Fprintf(w, "- Machine: %d CPUs, %s, %s RAM, kernel %s\n- Go: %s %s\n- Command: `%s`\n- Mode: %s, %d run(s) per figure; %.0f s elapsed; load average at start %s\n\n",
		m.CPUs, m.CPUModel, m.MemTotal, m.Kernel, m.GoVersion, m.OS, r.Command, r.Mode, r.Runs, r.Elapsed, m.LoadAvg)
	fmt.Fprintln(w, "| group | figure | median | min | max | unit | runs |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | --- | ---: |")
	for _, f := range r.Figures {
		if len(f.Runs) == 0 {
			fmt.Fprintf(w, "| %s | %s | — | — | — | %s | 0 |\n", f.Group, f.Name, f.Unit)
			continue
		}
		fmt.Fprintf(w, "| %s | %s | **%s** | %s | %s | %s | %d |\n", f.Group, f.Name, num(f.Median), num(f.Min), num(f.Max), f.Unit, len(f.Runs))
	}
	fmt.Fprintln(w, "\n| target | figure | median | status |\n| --- | --- | ---: | --- |")
	for _, t := range r.Targets {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.Goal, t.Figure, targetValue(t), t.Status)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "\n- %s", n)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\n- error: %s", e)
	}
	fmt.Fprintln(w)
	return nil
}

func writeList(w io.Writer, title string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	for _, it := range items {
		fmt.Fprintf(w, "  - %s\n", it)
	}
}

func targetValue(t Target) string {
	if t.Status == "not measured" {
		return "—"
	}
	v := num(t.Value) + " " + t.Unit
	if t.OtherCPU > noisyCores {
		v += fmt.Sprintf(" (noisy: other processes used %.1f cores)", t.OtherCPU)
	}
	return v
}

// num formats a figure: thousands separators from 1,000 up, three
// significant digits below.
func num(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	case math.Abs(v) >= 1000:
		s := strconv.FormatInt(int64(math.Round(math.Abs(v))), 10)
		var b strings.Builder
		if v < 0 {
			b.WriteByte('-')
		}
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		return b.String()
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}
