// Command cri measures what draining adds to stopping a Kubernetes pod:
// the time `crictl stopp` takes on containerd 2.x for an empty pod and for
// a pod whose app holds 1,000 sockets, with each way of draining
// (critest modes: the sockreap runtime handler, the NRI plugin as a warm
// daemon where the engine has NRI) against plain runc,
// interleaved in one run on warm daemons. It prints the median and p95 of
// each cell and the median's difference to plain runc.
//
// Run as root from the repository root after make build: make bench, or
//
//	CGO_ENABLED=0 go run ./test/bench/cri -n 20
//
// The app of the 1,000-socket pod is this program itself (static, put
// into an image made for the run) holding 500 loopback connections.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sockreap/sockreap/internal/critest"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == fillerArg {
		os.Exit(fillerMain(os.Args[2:]))
	}
	n := flag.Int("n", 20, "pods per cell")
	warmup := flag.Int("warmup", 2, "unmeasured pods per cell first")
	sockets := flag.Int("sockets", 1000, "sockets the app of the full pod holds (even)")
	hook := flag.String("hook", "bin/sockreap-hook", "sockreap-hook binary")
	shim := flag.String("shim", "bin/sockreap-shim", "sockreap-shim binary")
	nri := flag.String("nri", "bin/sockreap-nri", "sockreap-nri binary")
	engine := flag.String("engine", critest.Containerd22.Name, "containerd to run: "+critest.Containerd22.Name+" or "+critest.Containerd16.Name)
	asJSON := flag.Bool("json", false, "print the result as JSON")
	flag.Parse()
	if err := run(*n, *warmup, *sockets, *hook, *shim, *nri, *engine, *asJSON); err != nil {
		fmt.Fprintf(os.Stderr, "bench cri: %v\n", err)
		os.Exit(1)
	}
}

// modes are the columns: plain runc first, the baseline of the others.
func modes(e *critest.Engine, b critest.Bins) []*critest.Mode {
	ms := []*critest.Mode{critest.RuncMode(e), critest.HandlerMode(e, b)}
	if e.NRI {
		ms = append(ms, critest.NRIMode(e, b, critest.NRIDaemon))
	}
	return ms
}

// workload is a row: what runs in the pod before it is stopped.
type workload struct {
	name  string
	start func(t critest.T, p *critest.Pod)
}

type cell struct {
	Mode     string  `json:"mode"`
	Pod      string  `json:"pod"`
	Pods     int     `json:"pods"`
	MedianMS float64 `json:"median_ms"`
	P95MS    float64 `json:"p95_ms"`
	MinMS    float64 `json:"min_ms"`
	AddedMS  float64 `json:"added_median_ms"` // to plain runc's median
	// PluginMedianMS: for the NRI plugin, the median time its
	// StopPodSandbox handler took (its log's duration_ms), the part of
	// the stop it adds itself, without the run-to-run noise of the stop.
	PluginMedianMS float64 `json:"plugin_median_ms,omitempty"`
	stops          []time.Duration
	pods           []string
}

func run(n, warmup, sockets int, hook, shim, nri, engineName string, asJSON bool) error {
	if sockets <= 0 || sockets%2 != 0 {
		return fmt.Errorf("-sockets %d: a positive even number (loopback pairs)", sockets)
	}
	var e *critest.Engine
	for _, c := range []*critest.Engine{critest.Containerd22, critest.Containerd16} {
		if c.Name == engineName {
			e = c
		}
	}
	if e == nil {
		return fmt.Errorf("-engine %q: %s or %s", engineName, critest.Containerd22.Name, critest.Containerd16.Name)
	}
	bins := critest.Bins{Hook: hook, Shim: shim, NRI: nri}
	for _, p := range []*string{&bins.Hook, &bins.Shim, &bins.NRI} {
		abs, err := absExecutable(*p)
		if err != nil {
			return fmt.Errorf("%w (make build)", err)
		}
		*p = abs
	}
	ms := modes(e, bins)
	for _, m := range ms {
		if r := m.Skip(); r != "" {
			return fmt.Errorf("%s: %s", m.Name, r)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	filler, err := os.ReadFile(self)
	if err != nil {
		return fmt.Errorf("read %s to put it into the filler image: %w", self, err)
	}

	t := newRunner()
	defer t.cleanup()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "\nbench cri: %s: removing pods and daemons\n", s)
		t.cleanup()
		os.Exit(130)
	}()
	return t.do(func() {
		daemons := map[*critest.Mode]*critest.Daemon{}
		for _, m := range ms {
			d := critest.NewDaemon(t, m.Engine)
			if m.Prepare != nil {
				m.Prepare(t, d)
			}
			d.Start(t)
			d.ImportImage(t, fillerImage, map[string][]byte{"/filler": filler})
			daemons[m] = d
		}
		rows := []workload{
			{"empty", func(critest.T, *critest.Pod) {}},
			{fmt.Sprintf("%d sockets", sockets), func(t critest.T, p *critest.Pod) {
				startFiller(t, p, sockets/2)
			}},
		}
		cells := map[string]*cell{}
		for i := -warmup; i < n; i++ {
			for _, w := range rows {
				for _, m := range ms {
					d := daemons[m]
					stop, id := onePod(t, m, d, w)
					if i < 0 {
						continue
					}
					k := m.Name + "/" + w.name
					if cells[k] == nil {
						cells[k] = &cell{Mode: m.Name, Pod: w.name}
					}
					cells[k].stops = append(cells[k].stops, stop)
					cells[k].pods = append(cells[k].pods, id)
				}
			}
		}
		var out []*cell
		for _, w := range rows {
			base := summarize(cells[ms[0].Name+"/"+w.name])
			for _, m := range ms {
				c := summarize(cells[m.Name+"/"+w.name])
				c.AddedMS = c.MedianMS - base.MedianMS
				c.PluginMedianMS = pluginMedian(t, daemons[m], c.pods)
				out = append(out, c)
			}
		}
		if asJSON {
			b, _ := json.MarshalIndent(map[string]any{"engine": e.Name, "cells": out}, "", "  ")
			fmt.Println(string(b))
			return
		}
		printTable(e, ms, rows, out, n)
	})
}

// onePod runs a pod of mode m with workload w, stops it with crictl stopp
// (timed), removes it and returns the stop time and the pod's id.
func onePod(t critest.T, m *critest.Mode, d *critest.Daemon, w workload) (time.Duration, string) {
	p := d.RunPod(t, critest.PodSpec{Handler: m.Handler, PID: critest.NamespaceContainer})
	w.start(t, p)
	took := p.Stop(t)
	p.Remove(t)
	return took, p.ID
}

// pluginMedian is the median time d's NRI plugin spent on StopPodSandbox
// of the given pods, 0 when d runs no NRI plugin.
func pluginMedian(t critest.T, d *critest.Daemon, pods []string) float64 {
	took := map[string]float64{}
	for _, r := range d.NRIRecords(t) {
		if _, seen := took[r.Sandbox]; r.Event == "StopPodSandbox" && !seen {
			took[r.Sandbox] = r.DurationMS
		}
	}
	var ds []float64
	for _, id := range pods {
		if v, ok := took[id]; ok {
			ds = append(ds, v)
		}
	}
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func summarize(c *cell) *cell {
	s := slices.Clone(c.stops)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	c.Pods = len(s)
	c.MedianMS = ms(s[len(s)/2])
	c.P95MS = ms(s[(len(s)*95+99)/100-1])
	c.MinMS = ms(s[0])
	return c
}

func printTable(e *critest.Engine, ms []*critest.Mode, rows []workload, cells []*cell, n int) {
	fmt.Printf("crictl stopp on %s, %d pods per cell, interleaved: median / p95 ms (median added to plain runc)\n", e.Name, n)
	fmt.Printf("%-14s", "pod")
	for _, m := range ms {
		fmt.Printf("  %-28s", m.Name)
	}
	fmt.Println()
	for i, w := range rows {
		fmt.Printf("%-14s", w.name)
		for j := range ms {
			c := cells[i*len(ms)+j]
			v := fmt.Sprintf("%.1f / %.1f", c.MedianMS, c.P95MS)
			if j > 0 {
				v += fmt.Sprintf(" (%+.1f)", c.AddedMS)
			}
			fmt.Printf("  %-28s", v)
		}
		fmt.Println()
	}
	for _, c := range cells {
		if c.PluginMedianMS > 0 {
			fmt.Printf("%s, %s pod: StopPodSandbox took the plugin %.2f ms (median)\n", c.Mode, c.Pod, c.PluginMedianMS)
		}
	}
}

func absExecutable(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		p = wd + "/" + p
	}
	st, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s is not executable", p)
	}
	return p, nil
}

// runner is the critest.T of the bench: a failure ends the run (after the
// cleanups) with its message.
type runner struct {
	mu       sync.Mutex // a signal's cleanup against the run's
	cleanups []func()
	failed   bool
	err      error
}

type fatal struct{ msg string }

func newRunner() *runner { return &runner{} }

func (r *runner) Helper()                         {}
func (r *runner) Logf(format string, args ...any) {}
func (r *runner) Failed() bool                    { return r.failed }
func (r *runner) Cleanup(f func()) {
	r.mu.Lock()
	r.cleanups = append(r.cleanups, f)
	r.mu.Unlock()
}
func (r *runner) Errorf(format string, args ...any) { r.fail(fmt.Sprintf(format, args...)) }
func (r *runner) Fatalf(format string, args ...any) {
	r.fail(fmt.Sprintf(format, args...))
	panic(fatal{fmt.Sprintf(format, args...)})
}

func (r *runner) fail(msg string) {
	r.failed = true
	if r.err == nil {
		r.err = errors.New(msg)
	}
}

// do runs f, turning a Fatalf into the returned error.
func (r *runner) do(f func()) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(fatal); !ok {
				panic(p)
			}
		}
		err = r.err
	}()
	f()
	return nil
}

func (r *runner) cleanup() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.cleanups) > 0 {
		f := r.cleanups[len(r.cleanups)-1]
		r.cleanups = r.cleanups[:len(r.cleanups)-1]
		f()
	}
}
