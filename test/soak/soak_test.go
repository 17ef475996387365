// Package soak_test starts and stops many containers in parallel waves
// through sockreap-shim and real runc while SIGKILLing poststop hooks at
// random points of their drain, then runs gc, and checks that nothing is
// left behind: no pin, no mount, no namespace of the containers still
// reachable, no descriptor leaked, and every container operation that no
// kill touched succeeded.
//
//	go test ./test/soak                       # 40 containers, waves of 10
//	go test ./test/soak -soak.n=500 -v        # the full soak, with figures
package soak_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/ocitest"
	"github.com/sockreap/sockreap/internal/testbin"
	"golang.org/x/sys/unix"
)

var (
	total    = flag.Int("soak.n", 40, "containers to start and stop")
	waveSize = flag.Int("soak.wave", 10, "containers per parallel wave")
	killRate = flag.Float64("soak.kill", 0.3, "share of poststop hooks SIGKILLed at a random point")
)

func TestMain(m *testing.M) { testbin.Main(m, "sockreap-hook", "sockreap-shim") }

// world is one soak's runtime root, hook state and shared rootfs.
type world struct {
	root, stateDir, logFile, shimConfig, rootfs, spec string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	nettest.RequireRoot(t)
	for _, p := range []string{"runc", "busybox"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("needs %s (scripts/deps.sh installs it)", p)
		}
	}
	dir := t.TempDir()
	w := &world{root: filepath.Join(dir, "runc"), stateDir: filepath.Join(dir, "state"),
		logFile: filepath.Join(dir, "hook.log"), shimConfig: filepath.Join(dir, "shim.toml"), rootfs: filepath.Join(dir, "rootfs")}
	t.Cleanup(func() {
		// Whatever a failure left: containers, then pins.
		out, _ := exec.Command("runc", "--root", w.root, "list", "-q").Output()
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command("runc", "--root", w.root, "delete", "--force", id).Run()
		}
		ents, _ := os.ReadDir(filepath.Join(w.stateDir, "pins"))
		for _, e := range ents {
			_ = unix.Unmount(filepath.Join(w.stateDir, "pins", e.Name()), unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		}
		_ = unix.Unmount(filepath.Join(w.stateDir, "pins"), unix.MNT_DETACH)
	})
	// A metrics directory that does not exist: metrics off, the host's
	// node_exporter directory untouched.
	conf := fmt.Sprintf("hook_args = [%q, %q, %q, %q, %q, %q]\n", "--state-dir", w.stateDir, "--log", w.logFile, "--metrics-dir", filepath.Join(w.stateDir, "no-metrics"))
	if err := os.WriteFile(w.shimConfig, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// One read-only rootfs serves every container.
	ocitest.Rootfs(t, w.rootfs)
	specDir := t.TempDir()
	if out, err := exec.Command("runc", "spec", "--bundle", specDir).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v: %s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(specDir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["root"] = map[string]any{"path": w.rootfs, "readonly": true}
	proc := doc["process"].(map[string]any)
	proc["terminal"] = false
	// Sockets for the drain to find: listeners and a connection on lo.
	proc["args"] = []string{"/bin/busybox", "sh", "-c",
		"/bin/busybox ip link set lo up; for p in 1 2 3 4 5 6; do /bin/busybox nc -l -p 900$p </dev/null >/dev/null & done; " +
			"/bin/busybox sleep 0.05; /bin/busybox nc 127.0.0.1 9001 </dev/zero >/dev/null & exec /bin/busybox sleep 600"}
	b, _ := json.Marshal(doc)
	w.spec = string(b)
	return w
}

// shim runs sockreap-shim (which runs runc) with args.
func (w *world) shim(args ...string) (string, error) {
	cmd := exec.Command(testbin.Path("sockreap-shim"), append([]string{"--root", w.root}, args...)...)
	cmd.Env = append(os.Environ(), "SOCKREAP_SHIM_CONFIG="+w.shimConfig)
	// A file, not a pipe: a created container keeps create's stdio.
	f, err := os.CreateTemp("", "soak-out")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out, _ := os.ReadFile(f.Name())
	return string(out), err
}

// result is one container's life.
type result struct {
	id     string
	ns     netns.ID
	cookie uint64 // the namespace's cookie: inodes are reused, cookies never
	err    error  // a failed operation no kill explains
	killed bool   // its delete failed because its poststop hook was killed
}

func (w *world) life(t *testing.T, id string) result {
	r := result{id: id}
	bundle := filepath.Join(filepath.Dir(w.root), "bundles", id)
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		r.err = err
		return r
	}
	defer os.RemoveAll(bundle)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(w.spec), 0o644); err != nil {
		r.err = err
		return r
	}
	// The bundle after the id, as engines may write it.
	if out, err := w.shim("create", id, "--bundle", bundle); err != nil {
		r.err = fmt.Errorf("create: %v: %s", err, out)
		return r
	}
	out, err := exec.Command("runc", "--root", w.root, "state", id).Output()
	var st struct {
		Pid int `json:"pid"`
	}
	if err != nil || json.Unmarshal(out, &st) != nil {
		r.err = fmt.Errorf("state: %v", err)
		return r
	}
	if r.ns, err = netns.IDOf("/proc/" + strconv.Itoa(st.Pid) + "/ns/net"); err != nil {
		r.err = err
		return r
	}
	if r.cookie, err = cookieOf("/proc/" + strconv.Itoa(st.Pid) + "/ns/net"); err != nil {
		r.err = err
		return r
	}
	for _, op := range [][]string{{"start", id}, {"kill", id, "KILL"}} {
		if out, err := w.shim(op...); err != nil {
			r.err = fmt.Errorf("%s: %v: %s", op[0], err, out)
			return r
		}
	}
	if nettest.WaitUntil(20*time.Second, func() bool {
		out, _ := exec.Command("runc", "--root", w.root, "state", id).Output()
		return bytes.Contains(out, []byte(`"stopped"`))
	}) < 0 {
		r.err = fmt.Errorf("not stopped 20s after kill")
		return r
	}
	if out, err := w.shim("delete", id); err != nil {
		// runc removes the container before it runs poststop: a hook
		// killed mid-drain fails the delete, the container is gone.
		_, serr := exec.Command("runc", "--root", w.root, "state", id).CombinedOutput()
		if serr != nil && strings.Contains(out, "poststop") && strings.Contains(out, "killed") {
			r.killed = true
			return r
		}
		r.err = fmt.Errorf("delete: %v: %s", err, out)
	}
	return r
}

// killer SIGKILLs a share of the poststop hooks of this soak (told apart
// from other hooks on the machine by its state directory) after a random
// delay of up to 5 ms, holding each by a pidfd so that a reused pid gets
// nothing.
type killer struct {
	marker   string
	rate     float64
	seen     map[int]bool
	sent     atomic.Int64
	looked   atomic.Int64
	stop     chan struct{}
	finished sync.WaitGroup
}

func (k *killer) run() {
	defer k.finished.Done()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for {
		select {
		case <-k.stop:
			return
		default:
		}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || k.seen[pid] {
				continue
			}
			cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err != nil || !bytes.Contains(cmdline, []byte("\x00poststop\x00")) || !bytes.Contains(cmdline, []byte(k.marker)) {
				continue
			}
			k.seen[pid] = true
			k.looked.Add(1)
			if rng.Float64() >= k.rate {
				continue
			}
			fd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				continue
			}
			delay := time.Duration(rng.Int63n(int64(5 * time.Millisecond)))
			k.finished.Add(1)
			go func() {
				defer k.finished.Done()
				defer unix.Close(fd)
				time.Sleep(delay)
				if unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) == nil {
					k.sent.Add(1)
				}
			}()
		}
		time.Sleep(500 * time.Microsecond)
	}
}

func TestSoak(t *testing.T) {
	w := newWorld(t)
	fdsBefore := countFds(t, os.Getpid())
	k := &killer{marker: w.stateDir, rate: *killRate, seen: map[int]bool{}, stop: make(chan struct{})}
	k.finished.Add(1)
	go k.run()

	start := time.Now()
	var results []result
	for done := 0; done < *total; done += *waveSize {
		n := min(*waveSize, *total-done)
		wave := make([]result, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				wave[i] = w.life(t, nettest.Unique("soak"))
			}(i)
		}
		wg.Wait()
		results = append(results, wave...)
	}
	close(k.stop)
	k.finished.Wait()
	lifetime := time.Since(start)

	var failed, killed int
	for _, r := range results {
		if r.err != nil {
			failed++
			if failed <= 5 {
				t.Errorf("container %s: %v", r.id, r.err)
			}
		}
		if r.killed {
			killed++
		}
	}
	pinsBefore := entries(t, filepath.Join(w.stateDir, "pins"))

	gcStart := time.Now()
	cmd := exec.Command(testbin.Path("sockreap-hook"), "gc", "--state-dir", w.stateDir, "--log", w.logFile, "--min-age", "0", "--metrics-dir", filepath.Join(w.stateDir, "no-metrics"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("gc: %v\n%s", err, out)
	}
	gcTime := time.Since(gcStart)

	// Nothing left: pins, metadata, mounts, namespaces, descriptors.
	if left := entries(t, filepath.Join(w.stateDir, "pins")); len(left) > 0 {
		t.Errorf("pins left after gc: %v", left)
	}
	if left := entries(t, filepath.Join(w.stateDir, "meta")); len(left) > 0 {
		t.Errorf("pin metadata left after gc: %v", left)
	}
	mounts := mountsUnder(t, filepath.Join(w.stateDir, "pins")+"/")
	if len(mounts) > 0 {
		t.Errorf("mounts left under the pins directory: %v", mounts)
	}
	ours := map[string]uint64{}
	for _, r := range results {
		if !r.ns.Zero() {
			ours[r.ns.String()] = r.cookie
		}
	}
	if held := holders(t, ours); len(held) > 0 {
		t.Errorf("container namespaces still reachable after gc: %v", held)
	}
	if after := countFds(t, os.Getpid()); after > fdsBefore {
		t.Errorf("test process: %d descriptors before, %d after", fdsBefore, after)
	}
	if out, _ := exec.Command("runc", "--root", w.root, "list", "-q").Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("runc still lists containers: %s", out)
	}

	drained, poststops := 0, 0
	if b, err := os.ReadFile(w.logFile); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, `"stage":"poststop"`) {
				poststops++
				if strings.Contains(l, `"action":"drained"`) {
					drained++
				}
			}
		}
	}
	t.Logf("soak: %d containers in waves of %d through sockreap-shim+runc in %s (%.1f/s); %d failed operations",
		len(results), *waveSize, lifetime.Round(time.Millisecond), float64(len(results))/lifetime.Seconds(), failed)
	t.Logf("soak: %d poststop hooks seen, %d SIGKILLed (%d deletes reported the killed hook, container gone); %d poststop log lines, %d drained",
		k.looked.Load(), k.sent.Load(), killed, poststops, drained)
	t.Logf("soak: %d pins left for gc, gc took %s: %s", len(pinsBefore), gcTime.Round(time.Millisecond), summarize(string(out)))
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// mountsUnder lists mount points below prefix.
func mountsUnder(t *testing.T, prefix string) []string {
	t.Helper()
	if r, err := filepath.EvalSymlinks(filepath.Dir(prefix)); err == nil {
		prefix = r + "/"
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], prefix) {
			out = append(out, f[4])
		}
	}
	return out
}

// holders finds what still reaches one of the namespaces (net:[inode] to
// cookie): an nsfs mount anywhere, a thread inside, an open descriptor.
// The kernel reuses a freed namespace's inode for the next one (other
// tests on the machine make namespaces too), so a match by inode counts
// only when the namespace's cookie is the same.
func holders(t *testing.T, ns map[string]uint64) []string {
	t.Helper()
	var held []string
	ours := func(what, path, link string) {
		want, ok := ns[link]
		if !ok {
			return
		}
		if c, err := cookieOf(path); err == nil && c == want {
			held = append(held, what+" "+path+" "+link)
		}
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 {
			ours("mount", f[4], f[3])
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		tasks, _ := os.ReadDir("/proc/" + p.Name() + "/task")
		for _, task := range tasks {
			path := "/proc/" + p.Name() + "/task/" + task.Name() + "/ns/net"
			if l, err := os.Readlink(path); err == nil {
				ours("thread", path, l)
			}
		}
		fds, _ := os.ReadDir("/proc/" + p.Name() + "/fd")
		for _, fd := range fds {
			path := "/proc/" + p.Name() + "/fd/" + fd.Name()
			if l, err := os.Readlink(path); err == nil && strings.HasPrefix(l, "net:[") {
				ours("fd", path, l)
			}
		}
	}
	return held
}

// soNetnsCookie is SO_NETNS_COOKIE (Linux 5.14+), the same on every
// architecture; golang.org/x/sys does not name it yet.
const soNetnsCookie = 71

// cookieOf returns the cookie of the network namespace at path, a number
// the kernel never hands out twice.
func cookieOf(path string) (uint64, error) {
	ns, err := netns.Open(path)
	if err != nil {
		return 0, err
	}
	defer ns.Close()
	var cookie uint64
	err = ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, soNetnsCookie)
		return err
	})
	return cookie, err
}

func countFds(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// summarize counts gc's output lines by action.
func summarize(out string) string {
	counts := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			counts[f[0]]++
		}
	}
	return fmt.Sprint(counts)
}
