package metrics

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Metric names.
const (
	NameDrains        = "sockreap_drains_total"
	NameHookRuns      = "sockreap_hook_runs_total"
	NameHookFailures  = "sockreap_hook_failures_total"
	NameSockets       = "sockreap_sockets_total"
	NameDrainDuration = "sockreap_drain_duration_seconds"
	NameStageDuration = "sockreap_stage_duration_seconds"
	NameGCReleases    = "sockreap_gc_releases_total"
	NameGCLastRun     = "sockreap_gc_last_run_timestamp_seconds"
	NamePins          = "sockreap_pins"
	NamePinsStale     = "sockreap_pins_stale"
	NameDyingNetns    = "sockreap_dying_netns"
	NameKernelInfo    = "sockreap_kernel_info"
)

// Help texts, shared with the endpoint.
var Help = map[string]string{
	NameDrains:        "Drain decisions by front end (hook, nri, gc, cli) and outcome.",
	NameHookRuns:      "OCI hook runs by stage and outcome.",
	NameHookFailures:  "OCI hook runs that failed (logged an error, or were killed), by stage.",
	NameSockets:       "Sockets found, destroyed, spared (orphans on a kernel without the tcp_abort fix) and remaining after drains, by protocol, state class and owner kind.",
	NameDrainDuration: "Time a drain took, by front end.",
	NameStageDuration: "Time an OCI hook stage took, start to log line.",
	NameGCReleases:    "Pins released by gc.",
	NameGCLastRun:     "When gc last ran (Unix time).",
	NamePins:          "Network namespace pins held.",
	NamePinsStale:     "Pins whose container is gone, still held after gc's last run.",
	NameDyingNetns:    "Network namespaces that exist but no process, mount or open file holds (bound=lower|upper; equal when exact).",
	NameKernelInfo:    "What SOCK_DESTROY can do on this kernel (sockreap-hook doctor's probe), as labels.",
}

// Initial series: every drain outcome of the hooks and the hook stages'
// failures exist from the first write, so that rate() and increase() see
// the first event of each.
var initialStages = []string{"createRuntime", "poststop"}

// WriteText writes the recorder in Prometheus's text exposition format
// (version 0.0.4), families sorted by name and series by labels.
func (r *Recorder) WriteText(w io.Writer) error {
	r.init()
	bw := bufio.NewWriter(w)
	drains := copyMap(r.Drains)
	for _, o := range Outcomes {
		if _, ok := drains[key(FrontendHook, o)]; !ok {
			drains[key(FrontendHook, o)] = 0
		}
	}
	fails := copyMap(r.HookFailures)
	for _, s := range initialStages {
		if _, ok := fails[s]; !ok {
			fails[s] = 0
		}
	}
	// Families in name order.
	writeHistograms(bw, NameDrainDuration, "frontend", r.DrainDuration)
	writeCounters(bw, NameDrains, []string{"frontend", "outcome"}, drains)
	if r.DyingNetnsLower != nil {
		head(bw, NameDyingNetns, "gauge")
		fmt.Fprintf(bw, "%s{bound=\"lower\"} %d\n", NameDyingNetns, *r.DyingNetnsLower)
		upper := *r.DyingNetnsLower
		if r.DyingNetnsUpper != nil {
			upper = *r.DyingNetnsUpper
		}
		fmt.Fprintf(bw, "%s{bound=\"upper\"} %d\n", NameDyingNetns, upper)
	}
	if r.GCLastRun > 0 {
		writeGauge(bw, NameGCLastRun, "", float64(r.GCLastRun))
	}
	writeCounters(bw, NameGCReleases, nil, map[string]uint64{"": r.GCReleases})
	writeCounters(bw, NameHookFailures, []string{"stage"}, fails)
	writeCounters(bw, NameHookRuns, []string{"stage", "outcome"}, r.HookRuns)
	if k := r.Kernel; k != nil {
		head(bw, NameKernelInfo, "gauge")
		fmt.Fprintf(bw, "%s{destroy=%s,kernel=%s,listen=%s,orphans_freed=%s,tcp=%s,time_wait=%s,udp=%s} 1\n", NameKernelInfo,
			quote(yes(k.Destroy)), quote(k.Kernel), quote(yes(k.Listen)), quote(yes(k.OrphanSafe)), quote(yes(k.TCP)), quote(yes(k.TimeWait)), quote(yes(k.UDP)))
	}
	if r.Pins != nil {
		writeGauge(bw, NamePins, "", float64(*r.Pins))
	}
	if r.PinsStale != nil {
		writeGauge(bw, NamePinsStale, "", float64(*r.PinsStale))
	}
	writeCounters(bw, NameSockets, []string{"action", "protocol", "state", "owner"}, r.Sockets)
	writeHistograms(bw, NameStageDuration, "stage", r.StageDuration)
	return bw.Flush()
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func copyMap(m map[string]uint64) map[string]uint64 {
	c := make(map[string]uint64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func head(w io.Writer, name, typ string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, Help[name], name, typ)
}

// quote quotes a label value as the text format wants: backslash, double
// quote and newline escaped.
func quote(s string) string { return `"` + escaper.Replace(s) + `"` }

var escaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func labels(names []string, k string, extra ...string) string {
	var parts []string
	if len(names) > 0 {
		vals := strings.Split(k, "|")
		for i, n := range names {
			v := ""
			if i < len(vals) {
				v = vals[i]
			}
			parts = append(parts, n+"="+quote(v))
		}
	}
	for i := 0; i+1 < len(extra); i += 2 {
		parts = append(parts, extra[i]+"="+quote(extra[i+1]))
	}
	if len(parts) == 0 {
		return ""
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func writeCounters(w io.Writer, name string, names []string, m map[string]uint64) {
	if len(m) == 0 {
		return
	}
	head(w, name, "counter")
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(w, "%s%s %d\n", name, labels(names, k), m[k])
	}
}

func writeGauge(w io.Writer, name, lbls string, v float64) {
	head(w, name, "gauge")
	fmt.Fprintf(w, "%s%s %s\n", name, lbls, formatFloat(v))
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func writeHistograms(w io.Writer, name, label string, m map[string]*Histogram) {
	if len(m) == 0 {
		return
	}
	head(w, name, "histogram")
	for _, k := range slices.Sorted(maps.Keys(m)) {
		h := m[k]
		var cum uint64
		for i, b := range Buckets {
			if i < len(h.Counts) {
				cum += h.Counts[i]
			}
			fmt.Fprintf(w, "%s_bucket%s %d\n", name, labels([]string{label}, k, "le", formatFloat(b)), cum)
		}
		fmt.Fprintf(w, "%s_bucket%s %d\n", name, labels([]string{label}, k, "le", "+Inf"), h.Count)
		fmt.Fprintf(w, "%s_sum%s %s\n", name, labels([]string{label}, k), formatFloat(h.Sum))
		fmt.Fprintf(w, "%s_count%s %d\n", name, labels([]string{label}, k), h.Count)
	}
}
