// Command nri measures what sockreap's NRI plugin adds to stopping a pod,
// without the noise of a whole `crictl stopp`: it plays the runtime's side
// of NRI with the library containerd embeds (containerd/nri's adaptation),
// connects bin/sockreap-nri to it as a warm daemon, and times the
// StopPodSandbox call the runtime makes on every pod stop, for pods whose
// network namespace is empty (lo only), against the same call with no
// plugin connected. Interleaved; median and p95.
//
// Run as root from the repository root after make build:
//
//	go run ./test/bench/nri -n 200
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	nri "github.com/containerd/nri/pkg/adaptation"
	nrilog "github.com/containerd/nri/pkg/log"
)

// quiet drops the NRI library's own log lines.
type quiet struct{}

func (quiet) Debugf(context.Context, string, ...any) {}
func (quiet) Infof(context.Context, string, ...any)  {}
func (quiet) Warnf(context.Context, string, ...any)  {}
func (quiet) Errorf(ctx context.Context, f string, a ...any) {
	fmt.Fprintf(os.Stderr, "nri: "+f+"\n", a...)
}

func main() {
	n := flag.Int("n", 200, "StopPodSandbox calls per column")
	plugin := flag.String("nri", "bin/sockreap-nri", "sockreap-nri binary")
	flag.Parse()
	if err := run(*n, *plugin); err != nil {
		fmt.Fprintf(os.Stderr, "bench nri: %v\n", err)
		os.Exit(1)
	}
}

func run(n int, plugin string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces)")
	}
	plugin, err := filepath.Abs(plugin)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "srnri")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, d := range []string{"plugins", "conf.d", "state"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	nrilog.Set(quiet{})
	sock := filepath.Join(dir, "nri.sock")
	sync := func(ctx context.Context, cb nri.SyncCB) error { _, err := cb(ctx, nil, nil); return err }
	update := func(context.Context, []*nri.ContainerUpdate) ([]*nri.ContainerUpdate, error) { return nil, nil }
	r, err := nri.New("sockreap-bench", "0", sync, update, nri.WithSocketPath(sock),
		nri.WithPluginPath(filepath.Join(dir, "plugins")), nri.WithPluginConfigPath(filepath.Join(dir, "conf.d")))
	if err != nil {
		return err
	}
	if err := r.Start(); err != nil {
		return err
	}
	defer r.Stop()

	// One empty namespace per measured call: a stopped pod's.
	names := make([]string, 0, 2*n)
	defer func() {
		for _, name := range names {
			_ = exec.Command("ip", "netns", "del", name).Run()
		}
	}()
	for i := 0; i < 2*n; i++ {
		name := fmt.Sprintf("srnri%d-%d", os.Getpid(), i)
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			return fmt.Errorf("ip netns add: %v: %s", err, out)
		}
		names = append(names, name)
	}
	stop := func(i int) time.Duration {
		pod := &nri.PodSandbox{Id: fmt.Sprintf("pod%d", i), Name: "bench", Namespace: "bench", Uid: fmt.Sprint(i),
			Linux: &nri.LinuxPodSandbox{Namespaces: []*nri.LinuxNamespace{{Type: "network", Path: "/var/run/netns/" + names[i]}}}}
		start := time.Now()
		if err := r.StopPodSandbox(context.Background(), &nri.StateChangeEvent{Pod: pod}); err != nil {
			fmt.Fprintf(os.Stderr, "bench nri: StopPodSandbox: %v\n", err)
		}
		return time.Since(start)
	}

	// Column 1: no plugin. Column 2: sockreap-nri, warm.
	var without, with []time.Duration
	for i := 0; i < n/10; i++ { // warm the runtime side
		stop(i)
	}
	for i := 0; i < n; i++ {
		without = append(without, stop(i))
	}
	log := filepath.Join(dir, "nri.log")
	cmd := exec.Command(plugin, "--socket", sock, "--log-file", log, "--state-dir", filepath.Join(dir, "state"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	if !waitFor(10*time.Second, func() bool { return contains(log, `"registered with NRI"`) }) {
		return fmt.Errorf("sockreap-nri did not register; its log: %s", readFile(log))
	}
	for i := n; i < n+n/10; i++ { // warm the plugin
		stop(i)
	}
	for i := n; i < 2*n; i++ {
		with = append(with, stop(i))
	}
	if c := countLines(log, `"event":"StopPodSandbox"`); c < n {
		return fmt.Errorf("the plugin logged %d StopPodSandbox, want %d", c, n+n/10)
	}
	mw, pw := stats(without)
	m, p := stats(with)
	fmt.Printf("NRI StopPodSandbox on the runtime's side, %d empty pods per column: median / p95 ms\n", n)
	fmt.Printf("%-28s %.3f / %.3f\n", "no plugin", mw, pw)
	fmt.Printf("%-28s %.3f / %.3f\n", "sockreap-nri (warm daemon)", m, p)
	fmt.Printf("added by sockreap-nri at the median: %.3f ms\n", m-mw)
	return nil
}

func stats(d []time.Duration) (median, p95 float64) {
	s := slices.Clone(d)
	slices.Sort(s)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	return ms(s[len(s)/2]), ms(s[(len(s)*95+99)/100-1])
}

func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

func readFile(p string) string { b, _ := os.ReadFile(p); return string(b) }

func contains(p, s string) bool { return strings.Contains(readFile(p), s) }

func countLines(p, s string) int {
	f, err := os.Open(p)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			n++
		}
	}
	return n
}
