// Command hooklatency measures what the sockreap OCI hooks add to a
// container's life: the latency of a runc run+delete cycle (`runc run
// --keep` of a busybox `true`, then `runc delete`) with and without the
// createRuntime and poststop hooks, interleaved in the same run, and prints
// median and p95 of each and the difference. Target: under 10 ms added at
// the median. Needs root, runc and busybox-static.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sockreap/sockreap/internal/oci"
	"github.com/sockreap/sockreap/internal/steptime"
	"github.com/sockreap/sockreap/test/bench/load"
	"golang.org/x/sys/unix"
)

func main() {
	load.Main()
	n := flag.Int("n", 100, "cycles per variant (at least 30)")
	warmup := flag.Int("warmup", 3, "unmeasured cycles per variant first")
	hook := flag.String("hook", "bin/sockreap-hook", "sockreap-hook binary (built with go build when missing)")
	runtime := flag.String("runtime", "runc", "OCI runtime")
	asJSON := flag.Bool("json", false, "print the result as JSON")
	stepTimes := flag.Bool("steps", false, "time each step inside the hook processes (SOCKREAP_STEPTIME in the hooks' environment, which costs a file append per run) and print their medians per stage")
	named := flag.Bool("named-netns", false, "the containers join a network namespace mount made once with ip netns add, as containerd's CRI pause containers do; the hooks are added as sockreap-shim adds them there (poststop alone: no pin needed)")
	bg := flag.Int("load", 0, "background processes to start first (ten threads each on average; package test/bench/load), removed afterwards")
	flag.Parse()
	l, err := load.Start(*bg, 10**bg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hooklatency: background load: %v\n", err)
		os.Exit(1)
	}
	err = run(*n, *warmup, *hook, *runtime, *asJSON, *stepTimes, *named, l.String())
	l.Stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "hooklatency: %v\n", err)
		os.Exit(1)
	}
}

type stats struct {
	Cycles   int     `json:"cycles"`
	MedianMS float64 `json:"median_ms"`
	P95MS    float64 `json:"p95_ms"`
	MinMS    float64 `json:"min_ms"`
}

type result struct {
	Runtime    string `json:"runtime"`
	Background string `json:"background"` // load on the host: idle, or N processes, T threads
	// Netns is where the containers' network namespace comes from: made
	// by the runtime (both hooks), or a mount config.json names (the
	// hooks as sockreap-shim adds them: poststop alone).
	Netns   string `json:"netns"`
	Without stats  `json:"without_hooks"`
	With    stats  `json:"with_hooks"`
	// WithMetrics: the hooks writing node_exporter's textfile too;
	// MetricsAddedMedianMS is its median less With's (target: under 1).
	WithMetrics          stats   `json:"with_hooks_and_metrics"`
	MetricsAddedMedianMS float64 `json:"metrics_added_median_ms"`
	MetricsAddedPairedMS float64 `json:"metrics_added_paired_median_ms"`
	// MetricsAddedSEMS is the standard error of that paired median
	// (about 0.93 × IQR / √n): on a shared machine it is often larger
	// than the metrics' own cost, which the per-process figure measures.
	MetricsAddedSEMS float64 `json:"metrics_added_paired_median_se_ms"`
	// MetricsTargetMet: a poststop process with metrics costs under 1 ms
	// more than one without (Steps), the steady measure of the target.
	MetricsTargetMet bool `json:"metrics_target_met"`
	// StageByMetricsMS: the hooks' own stage time (their log), by stage
	// and metrics "off" or "on".
	StageByMetricsMS map[string]float64 `json:"hook_stage_median_ms_by_metrics"`
	AddedMedianMS    float64            `json:"added_median_ms"`
	// AddedPairedMS is the median of the differences of cycles run one
	// after the other (with hooks less without): less moved by drift
	// of a shared machine than the difference of the two medians.
	AddedPairedMS float64 `json:"added_paired_median_ms"`
	AddedSEMS     float64 `json:"added_paired_median_se_ms"` // its standard error
	AddedP95MS    float64 `json:"added_p95_ms"`
	// WithNoop: the same hooks with /bin/true in their place;
	// NoopAddedPairedMS what they add (the runtime's own cost of running
	// hooks, the floor), OwnPairedMS what sockreap's add beyond it.
	WithNoop          stats   `json:"with_true_hooks"`
	NoopAddedPairedMS float64 `json:"true_hooks_added_paired_median_ms"`
	OwnPairedMS       float64 `json:"added_beyond_true_hooks_paired_median_ms"`
	CreateRuntimeMS   float64 `json:"hook_create_runtime_median_ms"` // as the hook logs it
	PoststopMS        float64 `json:"hook_poststop_median_ms"`
	TargetMedianMS    float64 `json:"target_added_median_ms"`
	TargetMet         bool    `json:"target_met"`
	PoststopDrained   int     `json:"poststop_drained"`
	PoststopFailures  int     `json:"poststop_failures"`
	// Steps are the medians of what every hook run pays before its
	// stage's own work: starting a process, starting sockreap-hook
	// (Go runtime, command table), and a stage that does nothing but read
	// the configuration and the state and write its log line.
	Steps map[string]float64 `json:"steps_median_ms"`
	// StageSteps are, with -steps, the medians of each step inside the
	// hook processes (package steptime), by stage, in the order run.
	StageSteps map[string][]stepMedian `json:"stage_steps_median_ms,omitempty"`
}

type stepMedian struct {
	Step     string  `json:"step"`
	MedianMS float64 `json:"median_ms"`
}

func run(n, warmup int, hook, runtime string, asJSON, stepTimes, named bool, background string) error {
	if n < 30 {
		return fmt.Errorf("-n %d: at least 30 cycles per variant", n)
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (runc, network namespaces): run 'sudo make bench'")
	}
	rt, err := exec.LookPath(runtime)
	if err != nil {
		return fmt.Errorf("needs %s (apt-get install %s)", runtime, runtime)
	}
	tmp, err := os.MkdirTemp("", "sockreap-hooklatency-")
	if err != nil {
		return err
	}
	stateDir := filepath.Join(tmp, "state")
	// The state directory on a tmpfs of its own, as the default
	// /run/sockreap is on a systemd host: on a disk, creating the pins'
	// lock and metadata files waits for the journal whenever other work
	// writes to that disk, which is not what a node pays.
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", stateDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return fmt.Errorf("tmpfs for the state directory: %w", err)
	}
	defer func() {
		// The hooks made the pins directory a mount point; undo it.
		_ = unix.Unmount(filepath.Join(stateDir, "pins"), unix.MNT_DETACH)
		_ = unix.Unmount(stateDir, unix.MNT_DETACH)
		os.RemoveAll(tmp)
	}()
	hook, err = hookBinary(hook, tmp)
	if err != nil {
		return err
	}
	plain, err := makeBundle(filepath.Join(tmp, "plain"))
	if err != nil {
		return err
	}
	hooked, err := makeBundle(filepath.Join(tmp, "hooked"))
	if err != nil {
		return err
	}
	metered, err := makeBundle(filepath.Join(tmp, "metered"))
	if err != nil {
		return err
	}
	// The same hooks with /bin/true in their place: what the runtime
	// itself spends on running hooks at those stages, which no hook can
	// go below.
	noop, err := makeBundle(filepath.Join(tmp, "noop"))
	if err != nil {
		return err
	}
	netnsKind := "made by the runtime"
	if named {
		name := fmt.Sprintf("srbench-%d", os.Getpid())
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			return fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
		}
		defer exec.Command("ip", "netns", "del", name).Run()
		netnsKind = "/var/run/netns/" + name + " named in config.json"
		for _, b := range []string{plain, hooked, metered, noop} {
			if err := setNetnsPath(b, "/var/run/netns/"+name); err != nil {
				return err
			}
		}
	}
	// The hooks with metrics off, and with the node_exporter textfile
	// on (a directory of their own, not the node's).
	logFile := filepath.Join(tmp, "hook.log")
	metricsDir := filepath.Join(tmp, "textfile")
	if err := os.Mkdir(metricsDir, 0o755); err != nil {
		return err
	}
	for _, v := range []struct{ bundle, metrics string }{{hooked, ""}, {metered, metricsDir}} {
		cfg := filepath.Join(v.bundle, "sockreap.toml")
		body := fmt.Sprintf("state_dir = %q\nlog_file = %q\nmetrics_dir = %q\n", stateDir, logFile, v.metrics)
		if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
			return err
		}
		if named {
			if err := addHooksAsShim(v.bundle, hook, cfg); err != nil {
				return err
			}
			continue
		}
		if out, err := exec.Command(hook, "configure", "runc", "--bundle", v.bundle, "--hook", hook,
			"--config", cfg).CombinedOutput(); err != nil {
			return fmt.Errorf("configure runc: %v: %s", err, out)
		}
	}
	if err := addNoopHooks(noop); err != nil {
		return err
	}
	stepsFile := filepath.Join(tmp, "steps.jsonl")
	if stepTimes {
		if err := hookEnv(hooked, hook, steptime.Env+"="+stepsFile); err != nil {
			return err
		}
	}

	var without, with, withMetrics, withNoop []time.Duration
	for i := 0; i < warmup+n; i++ {
		// Interleave, so that drift (CPU shared with other work) hits
		// every variant alike.
		a, err := cycle(rt, plain, fmt.Sprintf("srbench-p%d-%d", os.Getpid(), i))
		if err != nil {
			return err
		}
		b, err := cycle(rt, hooked, fmt.Sprintf("srbench-h%d-%d", os.Getpid(), i))
		if err != nil {
			return err
		}
		c, err := cycle(rt, metered, fmt.Sprintf("srbench-m%d-%d", os.Getpid(), i))
		if err != nil {
			return err
		}
		d, err := cycle(rt, noop, fmt.Sprintf("srbench-n%d-%d", os.Getpid(), i))
		if err != nil {
			return err
		}
		if i >= warmup {
			without, with, withMetrics, withNoop = append(without, a), append(with, b), append(withMetrics, c), append(withNoop, d)
		}
	}
	r := result{Runtime: runtime, Background: background, Netns: netnsKind, Without: summarize(without), With: summarize(with), WithMetrics: summarize(withMetrics), WithNoop: summarize(withNoop), TargetMedianMS: 10}
	r.AddedMedianMS = r.With.MedianMS - r.Without.MedianMS
	r.AddedPairedMS = pairedMedian(with, without)
	r.AddedSEMS = pairedSE(with, without)
	r.AddedP95MS = r.With.P95MS - r.Without.P95MS
	r.NoopAddedPairedMS = pairedMedian(withNoop, without)
	r.OwnPairedMS = pairedMedian(with, withNoop)
	r.MetricsAddedMedianMS = r.WithMetrics.MedianMS - r.With.MedianMS
	r.MetricsAddedPairedMS = pairedMedian(withMetrics, with)
	r.MetricsAddedSEMS = pairedSE(withMetrics, with)
	r.TargetMet = r.AddedMedianMS < r.TargetMedianMS
	if err := hookDurations(logFile, &r); err != nil {
		return err
	}
	if r.Steps, err = steps(hook, tmp, n); err != nil {
		return err
	}
	r.MetricsTargetMet = r.Steps["hook_poststop_metrics_on"]-r.Steps["hook_poststop_metrics_off"] < 1
	if stepTimes {
		if r.StageSteps, err = stageSteps(stepsFile, warmup); err != nil {
			return err
		}
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Printf("%s run+delete cycle latency, %d cycles each (interleaved, %d warm-up), host %s, network namespace %s\n", runtime, n, warmup, background, netnsKind)
	fmt.Printf("  %-16s median %7.2f ms   p95 %7.2f ms   min %7.2f ms\n", "without hooks", r.Without.MedianMS, r.Without.P95MS, r.Without.MinMS)
	fmt.Printf("  %-16s median %7.2f ms   p95 %7.2f ms   min %7.2f ms\n", "with hooks", r.With.MedianMS, r.With.P95MS, r.With.MinMS)
	fmt.Printf("  %-16s median %7.2f ms   p95 %7.2f ms   min %7.2f ms\n", "hooks+metrics", r.WithMetrics.MedianMS, r.WithMetrics.P95MS, r.WithMetrics.MinMS)
	fmt.Printf("  %-16s median %+7.2f ms   p95 %+7.2f ms   median of paired differences %+7.2f ms (± %.2f)\n", "added", r.AddedMedianMS, r.AddedP95MS, r.AddedPairedMS, r.AddedSEMS)
	fmt.Printf("  %-16s median %7.2f ms   p95 %7.2f ms   min %7.2f ms\n", "/bin/true hooks", r.WithNoop.MedianMS, r.WithNoop.P95MS, r.WithNoop.MinMS)
	fmt.Printf("  %-16s hooks that do nothing add %+.2f ms (paired median: the runtime's own cost of running them); sockreap's hooks add %+.2f ms more\n", "floor", r.NoopAddedPairedMS, r.OwnPairedMS)
	fmt.Printf("  %-16s median %+7.2f ms   median of paired differences %+7.2f ms (± %.2f; metrics on, less off: cycles vary by more than the metrics cost, see the poststop process below)\n", "metrics added", r.MetricsAddedMedianMS, r.MetricsAddedPairedMS, r.MetricsAddedSEMS)
	fmt.Printf("  hook's own time (its log): createRuntime median %.2f ms, poststop median %.2f ms; %d poststops drained, %d failed\n",
		r.CreateRuntimeMS, r.PoststopMS, r.PoststopDrained, r.PoststopFailures)
	fmt.Printf("  hook's own time, metrics off / on (medians): createRuntime %.2f / %.2f ms, poststop %.2f / %.2f ms\n",
		r.StageByMetricsMS["createRuntime off"], r.StageByMetricsMS["createRuntime on"], r.StageByMetricsMS["poststop off"], r.StageByMetricsMS["poststop on"])
	fmt.Printf("  per hook run (medians): exec of true %.2f ms, sockreap-hook version %.2f ms, a stage doing nothing but config, state and log %.2f ms\n",
		r.Steps["exec_true"], r.Steps["hook_version"], r.Steps["hook_noop_stage"])
	fmt.Printf("  a poststop process with metrics off / on (medians): %.2f / %.2f ms: metrics add %+.2f ms (the one metrics update per container; target under 1 ms: %s)\n",
		r.Steps["hook_poststop_metrics_off"], r.Steps["hook_poststop_metrics_on"], r.Steps["hook_poststop_metrics_on"]-r.Steps["hook_poststop_metrics_off"], metVerdict(r.MetricsTargetMet))
	for _, stage := range []string{"createRuntime", "poststop"} {
		if ss := r.StageSteps[stage]; len(ss) > 0 {
			fmt.Printf("  inside the %s process (medians, ms):", stage)
			for _, st := range ss {
				fmt.Printf(" %s %.2f", st.Step, st.MedianMS)
			}
			fmt.Println()
		}
	}
	fmt.Printf("  target: under %.0f ms added at the median: %s\n", r.TargetMedianMS, metVerdict(r.TargetMet))
	return nil
}

// steps times, interleaved, the fixed costs of a hook run.
func steps(hook, tmp string, n int) (map[string]float64, error) {
	truePath, err := exec.LookPath("true")
	if err != nil {
		return nil, err
	}
	state := `{"ociVersion":"1.0.2","id":"srbench-steps","status":"running","pid":1,"bundle":"` + tmp + `"}`
	log := filepath.Join(tmp, "steps.log")
	variants := []struct {
		name string
		args []string
	}{
		{"exec_true", []string{truePath}},
		{"hook_version", []string{hook, "version"}},
		{"hook_noop_stage", []string{hook, "startContainer", "--state-dir", filepath.Join(tmp, "steps"), "--log", log}},
		// A poststop that finds nothing to work on, without and with
		// the textfile metrics: what metrics add to a hook process.
		{"hook_poststop_metrics_off", []string{hook, "poststop", "--state-dir", filepath.Join(tmp, "steps"), "--log", log, "--metrics-dir", filepath.Join(tmp, "no-textfile")}},
		{"hook_poststop_metrics_on", []string{hook, "poststop", "--state-dir", filepath.Join(tmp, "steps"), "--log", log, "--metrics-dir", filepath.Join(tmp, "textfile")}},
	}
	ds := make([][]time.Duration, len(variants))
	for range n {
		for i, v := range variants {
			cmd := exec.Command(v.args[0], v.args[1:]...)
			cmd.Stdin = strings.NewReader(state)
			cmd.Env = oci.HookEnv // as a runtime starts sockreap's hooks
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("%s: %v: %s", strings.Join(v.args, " "), err, out)
			}
			ds[i] = append(ds[i], time.Since(start))
		}
	}
	m := map[string]float64{}
	for i, v := range variants {
		m[v.name] = summarize(ds[i]).MedianMS
	}
	return m, nil
}

// cycle runs one container to completion and deletes it.
func cycle(rt, bundle, id string) (time.Duration, error) {
	start := time.Now()
	if out, err := exec.Command(rt, "run", "--keep", "--bundle", bundle, id).CombinedOutput(); err != nil {
		_ = exec.Command(rt, "delete", "--force", id).Run()
		return 0, fmt.Errorf("%s run %s: %v: %s", rt, id, err, out)
	}
	if out, err := exec.Command(rt, "delete", id).CombinedOutput(); err != nil {
		_ = exec.Command(rt, "delete", "--force", id).Run()
		return 0, fmt.Errorf("%s delete %s: %v: %s", rt, id, err, out)
	}
	return time.Since(start), nil
}

func summarize(ds []time.Duration) stats {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return stats{Cycles: len(s), MedianMS: ms(percentile(s, 50)), P95MS: ms(percentile(s, 95)), MinMS: ms(s[0])}
}

// percentile of sorted values, nearest rank.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

func hookDurations(logFile string, r *result) error {
	f, err := os.Open(logFile)
	if err != nil {
		return fmt.Errorf("hook log: %w", err)
	}
	defer f.Close()
	var cr, ps []time.Duration
	byMetrics := map[string][]time.Duration{} // stage, metrics off or on
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Stage      string          `json:"stage"`
			Container  string          `json:"container"`
			DurationMS float64         `json:"duration_ms"`
			Error      string          `json:"error"`
			Report     json.RawMessage `json:"report"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		d := time.Duration(l.DurationMS * float64(time.Millisecond))
		switch {
		case strings.HasPrefix(l.Container, "srbench-h"):
			byMetrics[l.Stage+" off"] = append(byMetrics[l.Stage+" off"], d)
		case strings.HasPrefix(l.Container, "srbench-m"):
			byMetrics[l.Stage+" on"] = append(byMetrics[l.Stage+" on"], d)
		}
		switch l.Stage {
		case "createRuntime":
			cr = append(cr, d)
		case "poststop":
			ps = append(ps, d)
			if l.Error != "" {
				r.PoststopFailures++
			} else if len(l.Report) > 0 {
				r.PoststopDrained++
			}
		}
	}
	if len(cr) > 0 {
		r.CreateRuntimeMS = summarize(cr).MedianMS
	}
	r.StageByMetricsMS = map[string]float64{}
	for k, ds := range byMetrics {
		r.StageByMetricsMS[k] = summarize(ds).MedianMS
	}
	if len(ps) > 0 {
		r.PoststopMS = summarize(ps).MedianMS
	}
	return sc.Err()
}

// hookBinary returns an absolute path of sockreap-hook, building it into
// dir when path does not exist.
func hookBinary(path, dir string) (string, error) {
	if abs, err := filepath.Abs(path); err == nil {
		if fi, err := os.Stat(abs); err == nil && !fi.IsDir() {
			return abs, nil
		}
	}
	out := filepath.Join(dir, "sockreap-hook")
	if b, err := exec.Command("go", "build", "-o", out, "github.com/sockreap/sockreap/hook").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build sockreap-hook: %v: %s", err, b)
	}
	return out, nil
}

// makeBundle writes a bundle whose process is busybox `true`, in its own
// network namespace (runc spec's default).
func makeBundle(dir string) (string, error) {
	bb := "/bin/busybox"
	if p, err := exec.LookPath("busybox"); err == nil {
		bb, _ = filepath.EvalSymlinks(p)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return "", fmt.Errorf("needs a static busybox (apt-get install busybox-static): %w", err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		return "", err
	}
	if out, err := exec.Command("runc", "spec", "--bundle", dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("runc spec: %v: %s", err, out)
	}
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return "", err
	}
	proc := doc["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/busybox", "true"}
	if !strings.Contains(string(raw), `"network"`) {
		return "", errors.New("runc spec gave no network namespace")
	}
	out, _ := json.MarshalIndent(doc, "", "\t")
	return dir, os.WriteFile(path, out, 0o644)
}

// hookEnv sets env in the environment of the hooks of bundle that run
// hook (runtimes start hooks with only their own "env").
func hookEnv(bundle, hook string, env ...string) error {
	path := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return err
	}
	hooks, _ := doc["hooks"].(map[string]any)
	for _, list := range hooks {
		for _, h := range list.([]any) {
			if m := h.(map[string]any); m["path"] == hook {
				m["env"] = env
			}
		}
	}
	out, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// stageSteps reads the steps the hooks recorded (package steptime) and
// returns each step's median by stage, skipping the warm-up runs.
func stageSteps(file string, warmup int) (map[string][]stepMedian, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("step times: %w", err)
	}
	defer f.Close()
	type line struct {
		Label string
		Steps []struct {
			Step string
			MS   float64
		}
	}
	seen := map[string]int{}
	order := map[string][]string{}
	times := map[string]map[string][]time.Duration{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l line
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		if seen[l.Label]++; seen[l.Label] <= warmup {
			continue
		}
		if times[l.Label] == nil {
			times[l.Label] = map[string][]time.Duration{}
		}
		total := 0.0
		for _, st := range l.Steps {
			if _, ok := times[l.Label][st.Step]; !ok {
				order[l.Label] = append(order[l.Label], st.Step)
			}
			times[l.Label][st.Step] = append(times[l.Label][st.Step], time.Duration(st.MS*float64(time.Millisecond)))
			total += st.MS
		}
		times[l.Label][" total"] = append(times[l.Label][" total"], time.Duration(total*float64(time.Millisecond)))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out := map[string][]stepMedian{}
	for label, names := range order {
		for _, name := range append(names, " total") {
			out[label] = append(out[label], stepMedian{strings.TrimSpace(name), summarize(times[label][name]).MedianMS})
		}
	}
	return out, nil
}

// setNetnsPath makes the bundle's container join the namespace at path.
func setNetnsPath(bundle, path string) error {
	file := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return err
	}
	for _, ns := range doc["linux"].(map[string]any)["namespaces"].([]any) {
		if m := ns.(map[string]any); m["type"] == "network" {
			m["path"] = path
		}
	}
	out, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(file, out, 0o644)
}

// shimStages are the stages sockreap-shim adds hooks at for bundle: only
// those it needs (oci.PinNeeded); nil means both.
func shimStages(bundle string) ([]oci.Stage, error) {
	c, err := oci.ReadConfig(bundle)
	if err != nil {
		return nil, err
	}
	if needed, _ := oci.PinNeeded(c, oci.ClassifyNetnsPath(c.NetnsPath).Kind); !needed {
		return []oci.Stage{oci.StagePoststop}, nil
	}
	return nil, nil
}

// addHooksAsShim adds the hooks the way sockreap-shim does.
func addHooksAsShim(bundle, hook, cfgFile string) error {
	stages, err := shimStages(bundle)
	if err != nil {
		return err
	}
	_, err = oci.AddHooks(bundle, oci.HookOptions{Path: hook, Args: []string{"--config", cfgFile}, Timeout: oci.DefaultHookTimeout, Stages: stages})
	return err
}

// addNoopHooks gives bundle /bin/true hooks at the stages sockreap's run
// at: both where runc makes the namespace (as configure runc installs
// them), poststop alone where config.json names it.
func addNoopHooks(bundle string) error {
	truePath, err := exec.LookPath("true")
	if err != nil {
		return err
	}
	stages, err := shimStages(bundle)
	if err != nil {
		return err
	}
	_, err = oci.AddHooks(bundle, oci.HookOptions{Path: truePath, Timeout: oci.DefaultHookTimeout, Stages: stages})
	return err
}

func metVerdict(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}

// pairedSE is the standard error of pairedMedian(a, b), in milliseconds,
// from the differences' interquartile range: 1.2533 σ/√n with σ ≈
// IQR/1.349 for a normal spread.
func pairedSE(a, b []time.Duration) float64 {
	d := pairedDiffs(a, b)
	iqr := d[len(d)*3/4] - d[len(d)/4]
	return 0.93 * float64(iqr.Microseconds()) / 1000 / math.Sqrt(float64(len(d)))
}

// pairedDiffs are a[i]-b[i], sorted.
func pairedDiffs(a, b []time.Duration) []time.Duration {
	d := make([]time.Duration, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d
}

// pairedMedian is the median of a[i]-b[i], in milliseconds.
func pairedMedian(a, b []time.Duration) float64 {
	d := pairedDiffs(a, b)
	m := d[len(d)/2]
	if len(d)%2 == 0 {
		m = (d[len(d)/2-1] + d[len(d)/2]) / 2
	}
	return float64(m.Microseconds()) / 1000
}
