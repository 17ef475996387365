package metrics

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Stats prints the figures of the textfile in dir for a person: the same
// counters and gauges node_exporter serves from it.
func Stats(dir string, w io.Writer) error {
	r, err := Load(dir)
	if err != nil {
		return err
	}
	return r.WriteSummary(w)
}

// WriteSummary prints the recorder as a few tables.
func (r *Recorder) WriteSummary(w io.Writer) error {
	r.init()
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "drains\tfrontend\toutcome\tcount")
	for _, k := range slices.Sorted(maps.Keys(r.Drains)) {
		if n := r.Drains[k]; n > 0 {
			fe, oc, _ := strings.Cut(k, "|")
			fmt.Fprintf(tw, "\t%s\t%s\t%d\n", fe, oc, n)
		}
	}
	fmt.Fprintln(tw, "hook runs\tstage\toutcome\tcount")
	for _, k := range slices.Sorted(maps.Keys(r.HookRuns)) {
		st, oc, _ := strings.Cut(k, "|")
		fmt.Fprintf(tw, "\t%s\t%s\t%d\n", st, oc, r.HookRuns[k])
	}
	for _, k := range slices.Sorted(maps.Keys(r.HookFailures)) {
		fmt.Fprintf(tw, "hook failures\t%s\t\t%d\n", k, r.HookFailures[k])
	}
	fmt.Fprintln(tw, "sockets\taction\tprotocol/state/owner\tcount")
	for _, k := range slices.Sorted(maps.Keys(r.Sockets)) {
		p := strings.SplitN(k, "|", 2)
		fmt.Fprintf(tw, "\t%s\t%s\t%d\n", p[0], strings.ReplaceAll(p[1], "|", "/"), r.Sockets[k])
	}
	for _, k := range slices.Sorted(maps.Keys(r.DrainDuration)) {
		h := r.DrainDuration[k]
		fmt.Fprintf(tw, "drain time\t%s\t%d drains\tmean %s\n", k, h.Count, mean(h))
	}
	for _, k := range slices.Sorted(maps.Keys(r.StageDuration)) {
		h := r.StageDuration[k]
		fmt.Fprintf(tw, "stage time\t%s\t%d runs\tmean %s\n", k, h.Count, mean(h))
	}
	fmt.Fprintf(tw, "gc releases\t\t\t%d\n", r.GCReleases)
	if r.GCLastRun > 0 {
		fmt.Fprintf(tw, "gc last run\t\t\t%s\n", time.Unix(r.GCLastRun, 0).UTC().Format(time.RFC3339))
	}
	gauge := func(name string, v *int) {
		if v != nil {
			fmt.Fprintf(tw, "%s\t\t\t%d\n", name, *v)
		}
	}
	gauge("pins", r.Pins)
	gauge("pins stale", r.PinsStale)
	if r.DyingNetnsLower != nil {
		if r.DyingNetnsUpper != nil && *r.DyingNetnsUpper != *r.DyingNetnsLower {
			fmt.Fprintf(tw, "dying netns\t\t\t%d to %d\n", *r.DyingNetnsLower, *r.DyingNetnsUpper)
		} else {
			gauge("dying netns", r.DyingNetnsLower)
		}
	}
	if k := r.Kernel; k != nil {
		fmt.Fprintf(tw, "kernel\t%s\t\tdestroy %s, tcp %s, listen %s, time_wait %s, udp %s, orphans freed %s\n",
			k.Kernel, yes(k.Destroy), yes(k.TCP), yes(k.Listen), yes(k.TimeWait), yes(k.UDP), yes(k.OrphanSafe))
	}
	return tw.Flush()
}

func mean(h *Histogram) string {
	if h.Count == 0 {
		return "-"
	}
	return (time.Duration(h.Sum / float64(h.Count) * float64(time.Second))).Round(time.Microsecond).String()
}
