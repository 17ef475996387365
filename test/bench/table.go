package main

import (
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Targets from issue 2.
const (
	targetSpeedup  = 2.0      // sockreap at least 2x faster than ss -K at 90k
	targetKernelX  = 1.3      // wall within 1.3x of sys CPU / cores
	targetRSS      = 32 << 20 // peak RSS under 32 MiB
	targetSpeedupN = 90000
)

// summary is the median of one method's runs at one N.
type summary struct {
	method          string
	n, runs         int
	wall, user, sys time.Duration
	rss             int64
	left            int
	leftStates      stateCount // of the median run by left count
	hookDur         time.Duration
	passes          int
	hookLeft        string // what sockreap itself reports as remaining, median run
}

func summarize(rs []*result) *summary {
	s := &summary{method: rs[0].Method, n: rs[0].N, runs: len(rs)}
	s.wall = medianDur(rs, func(r *result) time.Duration { return r.Wall })
	s.user = medianDur(rs, func(r *result) time.Duration { return r.User })
	s.sys = medianDur(rs, func(r *result) time.Duration { return r.Sys })
	s.rss = int64(medianDur(rs, func(r *result) time.Duration { return time.Duration(r.MaxRSS) }))
	byLeft := append([]*result(nil), rs...)
	sort.Slice(byLeft, func(i, j int) bool { return byLeft[i].Left.total() < byLeft[j].Left.total() })
	mid := byLeft[len(byLeft)/2]
	s.left, s.leftStates = mid.Left.total(), mid.Left
	if rs[0].Report != nil {
		s.hookDur = medianDur(rs, func(r *result) time.Duration { return time.Duration(r.Report.DurationUS) * time.Microsecond })
		s.passes = int(medianDur(rs, func(r *result) time.Duration { return time.Duration(r.Report.Passes) }))
		if rep := mid.Report; rep != nil && rep.Remaining > 0 {
			var parts []string
			for _, g := range rep.Left {
				parts = append(parts, fmt.Sprintf("%s %s %s %d", g.Protocol, g.State, g.Owner, g.Count))
			}
			s.hookLeft = fmt.Sprintf("%d (%s)", rep.Remaining, strings.Join(parts, ", "))
		}
	}
	return s
}

func medianDur(rs []*result, f func(*result) time.Duration) time.Duration {
	v := make([]time.Duration, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func printTable(w io.Writer, c *config, results []*result) {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	cores := runtime.NumCPU()
	fmt.Fprintf(w, "\nsockreap bench — kernel %s, %d cores, medians of %d runs per row\n", unix.ByteSliceToString(uts.Release[:]), cores, c.reps)
	fmt.Fprintf(w, "N: TCP sockets in the namespace before (N/2 loopback connections, IPv4 and IPv6, plus listeners)\n")
	fmt.Fprintf(w, "CPU: the drainer process's wait4 rusage; peak RSS: its own max RSS (GNU time); left: what `ss -tanH` lists afterwards\n\n")
	fmt.Fprintf(w, "%7s  %-13s %10s %10s %10s %8s %10s %7s\n", "N", "method", "wall ms", "user ms", "sys ms", "cpu/wall", "peak RSS", "left")
	fmt.Fprintln(w, strings.Repeat("-", 84))

	byN := map[int]map[string]*summary{}
	var nOrder []int
	groups := map[[2]any][]*result{}
	var keys [][2]any
	for _, r := range results {
		k := [2]any{r.N, r.Method}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], r)
	}
	for _, k := range keys {
		s := summarize(groups[k])
		if byN[s.n] == nil {
			byN[s.n] = map[string]*summary{}
			nOrder = append(nOrder, s.n)
		}
		byN[s.n][s.method] = s
	}
	for _, n := range nOrder {
		for _, m := range methods {
			s := byN[n][m.Name]
			if s == nil {
				continue
			}
			rss := "-"
			if s.method != "exit" && timeBin != "" {
				rss = fmt.Sprintf("%6.1f MiB", mib(s.rss))
			}
			fmt.Fprintf(w, "%7d  %-13s %10.1f %10.1f %10.1f %8.2f %10s %7d\n",
				s.n, s.method, ms(s.wall), ms(s.user), ms(s.sys), float64(s.user+s.sys)/float64(s.wall), rss, s.left)
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintln(w, "Ratios (same run, medians):")
	for _, n := range nOrder {
		printRatios(w, c, n, byN[n], cores)
	}
	if c.noHook != "" {
		fmt.Fprintf(w, "\nsockreap was not measured: %s\n", c.noHook)
	}
	fmt.Fprintln(w, "\nMethods:")
	for _, m := range c.methods {
		fmt.Fprintf(w, "  %-13s %s\n", m.Name, m.Desc)
	}
}

func printRatios(w io.Writer, c *config, n int, s map[string]*summary, cores int) {
	sr, ss := s["sockreap"], s["ss-K"]
	fmt.Fprintf(w, "  N=%d\n", n)
	if sr != nil && ss != nil {
		speed := float64(ss.wall) / float64(sr.wall)
		verdict := ""
		if n >= targetSpeedupN {
			verdict = "  " + passFail(speed >= targetSpeedup, fmt.Sprintf("target >= %.0fx", targetSpeedup))
		}
		rss := ""
		if timeBin != "" {
			rss = fmt.Sprintf(", %.2fx the peak RSS", float64(sr.rss)/float64(ss.rss))
		}
		fmt.Fprintf(w, "    sockreap vs ss -K: %.2fx faster (wall), %.2fx less CPU (user+sys)%s%s\n",
			speed, float64(ss.user+ss.sys)/float64(sr.user+sr.sys), rss, verdict)
	}
	if sr != nil {
		share := sr.sys / time.Duration(cores)
		x := float64(sr.wall) / float64(share)
		fmt.Fprintf(w, "    sockreap wall %.1f ms vs kernel share (sys/%d cores) %.1f ms: %.2fx  %s\n",
			ms(sr.wall), cores, ms(share), x, passFail(x <= targetKernelX, fmt.Sprintf("target <= %.1fx", targetKernelX)))
		if timeBin != "" {
			fmt.Fprintf(w, "    sockreap peak RSS %.1f MiB  %s\n", mib(sr.rss), passFail(sr.rss < targetRSS, "target < 32 MiB"))
		}
		if sr.hookDur > 0 {
			fmt.Fprintf(w, "    sockreap's own duration_us %.1f ms in %d passes; the other %.1f ms of wall are process start, probe and checks\n",
				ms(sr.hookDur), sr.passes, ms(sr.wall-sr.hookDur))
		}
		if sr.left > 0 {
			fmt.Fprintf(w, "    sockreap left %d sockets: %s\n", sr.left, sr.leftStates)
		}
		if sr.hookLeft != "" {
			fmt.Fprintf(w, "    sockreap itself reports remaining %s (ss -tanH lists %d)\n", sr.hookLeft, sr.left)
		}
	}
	if ss != nil && ss.left > 0 {
		fmt.Fprintf(w, "    ss -K left %d sockets: %s\n", ss.left, ss.leftStates)
	}
	if e := s["exit"]; e != nil {
		fmt.Fprintf(w, "    exit (no drainer): the owners' exit took %.1f ms wall, %.1f ms sys, and left %d sockets (%s)\n",
			ms(e.wall), ms(e.sys), e.left, e.leftStates)
	}
	if d := s["ss-dump"]; d != nil && ss != nil {
		fmt.Fprintf(w, "    ss dump alone is %.0f%% of ss -K's wall time\n", 100*float64(d.wall)/float64(ss.wall))
	}
	if d := s["sockreap-dry"]; d != nil && sr != nil {
		fmt.Fprintf(w, "    sockreap --dry-run (dump only) is %.0f%% of sockreap's wall time\n", 100*float64(d.wall)/float64(sr.wall))
	}
}

func passFail(ok bool, what string) string {
	if ok {
		return "[PASS " + what + "]"
	}
	return "[MISS " + what + "]"
}
