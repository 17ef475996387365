package critest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/sockreap/sockreap/internal/nettest"
)

// Engine is a containerd build the rig can start.
type Engine struct {
	Name string
	// Containerd is the daemon binary; its containerd-shim-runc-v2 sits in
	// the same directory and comes first on the daemon's PATH.
	Containerd string
	// ConfigVersion is the config.toml schema it reads natively.
	ConfigVersion int
	// NRI: the engine runs NRI (containerd 1.7+), enabled by the rig with
	// its socket and plugin directories in the daemon's directory.
	NRI bool
}

// The engines: Debian's containerd, and containerd 2.x built by
// scripts/containerd2.sh.
var (
	Containerd16 = &Engine{Name: "containerd1.6", Containerd: "/usr/bin/containerd", ConfigVersion: 2}
	Containerd22 = &Engine{Name: "containerd2.2", Containerd: filepath.Join(CacheDir(), "containerd-2.2.0", "containerd"), ConfigVersion: 3, NRI: true}
)

// Missing says why the engine cannot run here, or "".
func (e *Engine) Missing() string {
	for _, p := range []string{e.Containerd, filepath.Join(filepath.Dir(e.Containerd), "containerd-shim-runc-v2")} {
		if !isExecutable(p) {
			return fmt.Sprintf("%s: %s missing (make deps installs it)", e.Name, p)
		}
	}
	return ""
}

// CNIBinDir holds the CNI plugins (Debian's containernetworking-plugins).
const CNIBinDir = "/usr/lib/cni"

// Images the rig imports into every daemon (k8s.io namespace).
const (
	PauseImage = "docker.io/sockreap-test/pause:1"
	AppImage   = "docker.io/sockreap-test/app:1"
)

// Daemon is a containerd of the caller's own. Everything it writes lives
// in Dir, except what containerd keeps in fixed host places: pod netns
// mounts in /var/run/netns (removed with each pod) and shim sockets in
// /run/containerd/s.
type Daemon struct {
	Engine *Engine
	Dir    string
	Config string // config.toml: the operator's file, then the rig's overlay
	Sock   string // gRPC and CRI socket
	Log    string // containerd's output
	// CNI: a bridge in the host namespace with no address, pods on Subnet
	// from host-local; test peers plug into the bridge.
	Bridge, Network string
	Subnet          netip.Prefix
	// Where the sockreap hooks injected by sockreap-shim keep pins and log:
	// ShimConfig names them and reaches the shim through containerd's
	// environment (SOCKREAP_SHIM_CONFIG).
	HookState, HookLog, ShimConfig string
	// NRI (Engine.NRI): socket, pre-registered plugin directory and plugin
	// config directory.
	NRISocket, NRIPluginDir, NRIConfDir string
	// Env is added to containerd's environment (and so its shims').
	Env []string
	// AfterStart run, in order, each time containerd has started and its
	// CRI answers (a mode's plugin waits there until it is connected).
	AfterStart []func(t T)

	cmd      *exec.Cmd
	exited   chan struct{}
	imported bool
	peers    int // peers plugged in so far
}

// podSubnets are the candidates for the pods' subnet, documentation and
// benchmarking ranges first. The host's own network may use one (this
// machine's is 192.0.2.0/24): the first that none of the host's addresses
// or routes overlaps is taken, else the bridge would answer ARP for the
// host's addresses and pods would talk to the host.
var podSubnets = []string{"198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/24", "10.254.183.0/24"}

// pickSubnet returns the first of podSubnets the host does not use.
func pickSubnet() (netip.Prefix, error) {
	var used []netip.Prefix
	for _, args := range [][]string{{"-4", "-o", "addr", "show"}, {"-4", "route", "show", "table", "all"}} {
		out, err := run("ip", args...)
		if err != nil {
			return netip.Prefix{}, err
		}
		for _, f := range strings.Fields(out) {
			if p, err := netip.ParsePrefix(f); err == nil {
				used = append(used, p)
			} else if a, err := netip.ParseAddr(f); err == nil && a.Is4() {
				used = append(used, netip.PrefixFrom(a, 32))
			}
		}
	}
next:
	for _, c := range podSubnets {
		cand := netip.MustParsePrefix(c)
		for _, u := range used {
			if u.Bits() > 0 && u.Overlaps(cand) {
				continue next
			}
		}
		return cand, nil
	}
	return netip.Prefix{}, fmt.Errorf("the host uses every candidate pod subnet %v", podSubnets)
}

// addr returns the i-th address of the daemon's subnet.
func (d *Daemon) addr(i int) netip.Addr {
	a := d.Subnet.Addr().As4()
	a[3] += byte(i)
	return netip.AddrFrom4(a)
}

// NewDaemon prepares a daemon of engine e in a fresh directory, with no
// config file yet (the operator's file is the caller's: write one or run
// configure on the path). Start starts it; everything is removed at
// cleanup.
func NewDaemon(t T, e *Engine) *Daemon {
	t.Helper()
	// Short: the sockets' paths must fit in sun_path.
	dir, err := os.MkdirTemp("", "srcri")
	if err != nil {
		t.Fatalf("%v", err)
	}
	d := &Daemon{Engine: e, Dir: dir, Config: filepath.Join(dir, "config.toml"), Sock: filepath.Join(dir, "c.sock"),
		Log: filepath.Join(dir, "containerd.log"), Bridge: nettest.Unique("srcri"), Network: nettest.Unique("sockreap-cri"),
		HookState: filepath.Join(dir, "hookstate"), HookLog: filepath.Join(dir, "hook.log"), ShimConfig: filepath.Join(dir, "shim.toml"),
		NRISocket: filepath.Join(dir, "nri.sock"), NRIPluginDir: filepath.Join(dir, "nri", "plugins"), NRIConfDir: filepath.Join(dir, "nri", "conf.d")}
	removeNewEmptyDirs(t, "/run/containerd", "/run/containerd/s", "/run/containerd/runc")
	t.Cleanup(func() { d.cleanup(t) })
	for _, sub := range []string{"cni", "logs", d.NRIPluginDir, d.NRIConfDir} {
		if !filepath.IsAbs(sub) {
			sub = filepath.Join(dir, sub)
		}
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatalf("%v", err)
		}
	}
	// A metrics directory that does not exist: metrics off, the host's
	// node_exporter directory untouched.
	conf := fmt.Sprintf("hook_args = [%q, %q, %q, %q, %q, %q]\n", "--state-dir", d.HookState, "--log", d.HookLog, "--metrics-dir", filepath.Join(dir, "no-metrics"))
	if err := os.WriteFile(d.ShimConfig, []byte(conf), 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	if d.Subnet, err = pickSubnet(); err != nil {
		t.Fatalf("%v", err)
	}
	d.writeCNI(t)
	return d
}

// Start overlays the rig's settings on the config file (see Overlay),
// starts containerd and waits until its CRI answers; on the first start it
// imports the pause and app images.
func (d *Daemon) Start(t T) {
	t.Helper()
	if err := d.Overlay(); err != nil {
		t.Fatalf("%v", err)
	}
	d.StartAsIs(t)
}

// StartAsIs starts containerd on the config file as it is.
func (d *Daemon) StartAsIs(t T) {
	t.Helper()
	if d.cmd != nil {
		t.Fatalf("%s already started", d.Engine.Name)
	}
	log, err := os.OpenFile(d.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer log.Close()
	cmd := exec.Command(d.Engine.Containerd, "--config", d.Config)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(d.Engine.Containerd)+":"+os.Getenv("PATH"), "SOCKREAP_SHIM_CONFIG="+d.ShimConfig)
	cmd.Env = append(cmd.Env, d.Env...)
	// Die with the caller; the shims and pods outlive the daemon as they
	// would with systemctl restart.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", d.Engine.Containerd, err)
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(cmd, d.exited)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := d.crictl("info"); err == nil {
			break
		}
		select {
		case <-d.exited:
			d.cmd = nil
			t.Fatalf("%s exited at start:\n%s", d.Engine.Name, d.LogTail(30))
		default:
		}
		// The daemon runs on without a CRI that failed to load.
		if b, _ := os.ReadFile(d.Log); bytes.Contains(b, []byte("failed to load plugin io.containerd.grpc.v1.cri")) {
			t.Fatalf("%s did not load its CRI plugin:\n%s", d.Engine.Name, d.LogTail(30))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's CRI did not answer within 60s:\n%s", d.Engine.Name, d.LogTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !d.imported {
		d.importImages(t)
		d.imported = true
	}
	for _, f := range d.AfterStart {
		f(t)
	}
}

// Stop stops containerd (SIGTERM; pods keep running, as with systemctl
// restart).
func (d *Daemon) Stop(t T) {
	t.Helper()
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	d.cmd = nil
}

// Restart stops and starts containerd.
func (d *Daemon) Restart(t T) {
	t.Helper()
	d.Stop(t)
	d.StartAsIs(t)
}

// LogTail returns the last n lines of containerd's output.
func (d *Daemon) LogTail(n int) string {
	b, _ := os.ReadFile(d.Log)
	return tail(b, n)
}

// crictl runs crictl against the daemon and returns its output (stdout;
// stderr too on error).
func (d *Daemon) crictl(args ...string) (string, error) {
	ep := "unix://" + d.Sock
	cmd := exec.Command(Crictl(), append([]string{"--config", os.DevNull, "--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("crictl %s: %v: %s%s", strings.Join(args, " "), err, s, strings.TrimSpace(stderr.String()))
	}
	return s, nil
}

// Crictl runs crictl against the daemon, failing t on error.
func (d *Daemon) Crictl(t T, args ...string) string {
	t.Helper()
	out, err := d.crictl(args...)
	if err != nil {
		t.Fatalf("%v\ncontainerd log (tail):\n%s", err, d.LogTail(15))
	}
	return out
}

// Overlay sets what this machine and the rig need in the config file, and
// nothing of what `sockreap-hook configure` writes: the daemon's own root,
// state, sockets and opt directory; the CRI's pause image, CNI directories
// and restrict_oom_score_adj (this machine cannot raise oom_score_adj); NRI's
// socket and directories. The file's "version" (none: the engine's) picks
// the schema.
func (d *Daemon) Overlay() error {
	cfg := map[string]any{}
	b, err := os.ReadFile(d.Config)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := toml.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("%s: %w", d.Config, err)
	}
	version, _ := cfg["version"].(int64)
	if version == 0 {
		version = int64(d.Engine.ConfigVersion)
		cfg["version"] = version
	}
	set := func(v any, path ...string) {
		m := cfg
		for _, k := range path[:len(path)-1] {
			sub, ok := m[k].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[k] = sub
			}
			m = sub
		}
		m[path[len(path)-1]] = v
	}
	set(filepath.Join(d.Dir, "root"), "root")
	set(filepath.Join(d.Dir, "state"), "state")
	set(int64(0), "oom_score")
	set(d.Sock, "grpc", "address")
	set(d.Sock+".ttrpc", "ttrpc", "address")
	set(filepath.Join(d.Dir, "opt"), "plugins", "io.containerd.internal.v1.opt", "path")
	set("0", "plugins", "io.containerd.grpc.v1.cri", "stream_server_port")
	cniConf := filepath.Join(d.Dir, "cni")
	switch version {
	case 2:
		cri := []string{"plugins", "io.containerd.grpc.v1.cri"}
		set(PauseImage, append(cri, "sandbox_image")...)
		set(true, append(cri, "restrict_oom_score_adj")...)
		set(CNIBinDir, append(cri, "cni", "bin_dir")...)
		set(cniConf, append(cri, "cni", "conf_dir")...)
	case 3:
		rt := []string{"plugins", "io.containerd.cri.v1.runtime"}
		set(PauseImage, "plugins", "io.containerd.cri.v1.images", "pinned_images", "sandbox")
		set(true, append(rt, "restrict_oom_score_adj")...)
		set([]any{CNIBinDir}, append(rt, "cni", "bin_dirs")...)
		set(cniConf, append(rt, "cni", "conf_dir")...)
	default:
		return fmt.Errorf("%s: config version %d", d.Config, version)
	}
	if d.Engine.NRI {
		nri := []string{"plugins", "io.containerd.nri.v1.nri"}
		set(false, append(nri, "disable")...)
		set(d.NRISocket, append(nri, "socket_path")...)
		set(d.NRIPluginDir, append(nri, "plugin_path")...)
		set(d.NRIConfDir, append(nri, "plugin_config_path")...)
	}
	out, err := toml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(d.Config, out, 0o644)
}

// writeCNI writes the pod network: the bridge plugin on d.Bridge, which
// the rig creates itself so peers can plug in before the first pod, with
// no address in the host namespace (no gateway, no masquerading), and
// host-local addresses from .16-.254 of d.Subnet kept in d.Dir.
func (d *Daemon) writeCNI(t T) {
	t.Helper()
	must(t, "ip", "link", "add", d.Bridge, "type", "bridge")
	must(t, "ip", "link", "set", d.Bridge, "up")
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": false,
    "ipMasq": false,
    "ipam": {
      "type": "host-local",
      "dataDir": %q,
      "ranges": [[{"subnet": %q, "rangeStart": %q, "rangeEnd": %q}]]
    }
  }]
}
`, d.Network, d.Bridge, filepath.Join(d.Dir, "cni-ipam"), d.Subnet, d.addr(16), d.addr(254))
	if err := os.WriteFile(filepath.Join(d.Dir, "cni", "10-sockreap-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatalf("%v", err)
	}
}

func (d *Daemon) cleanup(t T) {
	if d.cmd != nil {
		// Pods first: their shims, netns mounts and CNI state go with
		// them.
		if out, err := d.crictl("rmp", "--all", "--force"); err != nil {
			t.Logf("remove pods: %v: %s", err, out)
		}
		d.Stop(t)
	}
	d.killShims(t)
	_, _ = run("ip", "link", "del", d.Bridge)
	nettest.UnmountUnder(d.Dir)
	if os.Getenv("SOCKREAP_KEEP") == "" {
		_ = os.RemoveAll(d.Dir)
	}
}

// killShims kills the shims of this daemon that outlive it: containerd
// 2.2 leaves a pod's shim running when the pause process was killed before
// the pod was stopped (with plain runc too).
func (d *Daemon) killShims(t T) {
	dirs, _ := os.ReadDir("/proc")
	for _, e := range dirs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == d.Sock {
				t.Logf("%s left its shim %d (%s) running: killed", d.Engine.Name, pid, strings.Join(args, " "))
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// removeNewEmptyDirs removes at cleanup the empty directories dirs
// (deepest first) that containerd creates in fixed host places, provided
// the first did not exist before.
func removeNewEmptyDirs(t T, dirs ...string) {
	if _, err := os.Stat(dirs[0]); err == nil {
		return
	}
	t.Cleanup(func() {
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
	})
}
