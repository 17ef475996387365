// Command kernels is `make test-kernels`: it fetches Debian's cloud-amd64
// kernels 5.10 (bullseye), 6.1 (bookworm) and 6.12 (trixie) into a private
// apt cache, boots each under qemu with an initramfs holding the scenario
// suite (test/kernels/guest) as init, runs the same suite on the host
// kernel, prints a kernel × scenario table and exits non-zero on a failure.
//
// Environment: SOCKREAP_KERNEL_CACHE (default /var/cache/sockreap-kernels)
// keeps downloads between runs; SOCKREAP_KERNELS (e.g. "6.1,host") and
// SOCKREAP_SCENARIOS (e.g. "udp,orphan") narrow the run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	cache := flag.String("cache", envOr("SOCKREAP_KERNEL_CACHE", "/var/cache/sockreap-kernels"), "directory for downloaded kernels and apt state (kept between runs)")
	kernels := flag.String("kernels", envOr("SOCKREAP_KERNELS", "host,5.10,6.1,6.12"), "comma-separated kernels to run: host and/or matrix names")
	only := flag.String("scenarios", os.Getenv("SOCKREAP_SCENARIOS"), "comma-separated scenarios (default all)")
	fetchOnly := flag.Bool("fetch-only", false, "only download and extract the kernels")
	vmTimeout := flag.Duration("vm-timeout", 10*time.Minute, "hard limit for one VM")
	hook := flag.String("hook", "bin/sockreap-hook", "sockreap-hook binary (static; `make build`)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "test-kernels: needs root (network namespaces, /dev/kvm, module-free host run); run: sudo make test-kernels")
		os.Exit(2)
	}
	want := strings.Split(*kernels, ",")
	ctx := context.Background()
	rep := &Report{Started: time.Now()}

	var ks []*Kernel
	fetchStart := time.Now()
	mirror := debianMirror()
	for _, k := range matrix() {
		if !contains(want, k.Name) {
			continue
		}
		if err := fetch(*cache, mirror, k); err != nil {
			fatalf("fetch kernel %s from %s (%s): %v", k.Name, mirror, k.Suite, err)
		}
		logf("%s: %s %s (%s)", k.Name, k.Package, k.Version, k.Release)
		ks = append(ks, k)
	}
	rep.FetchSeconds = time.Since(fetchStart).Seconds()
	if *fetchOnly {
		return
	}

	work, err := os.MkdirTemp("", "sockreap-kernels-")
	if err != nil {
		fatalf("%v", err)
	}
	defer os.RemoveAll(work)
	tools, err := buildTools(work, *hook)
	if err != nil {
		fatalf("%v", err)
	}

	if contains(want, "host") {
		start := time.Now()
		logf("host: running the suite on the host kernel")
		res, err := runHost(ctx, tools.Guest, tools.Hook, *only, 15*time.Minute)
		rep.add("host", "", res, err, time.Since(start))
	}
	logs := filepath.Join(*cache, "logs")
	_ = os.MkdirAll(logs, 0o755)
	for _, k := range ks {
		start := time.Now()
		initrd := filepath.Join(work, "initrd-"+k.Name+".gz")
		if err := buildInitramfs(k, tools, initrd); err != nil {
			rep.add(k.Name, k.Package+" "+k.Version, nil, fmt.Errorf("initramfs: %w", err), time.Since(start))
			continue
		}
		dir := filepath.Join(logs, k.Name)
		_ = os.MkdirAll(dir, 0o755)
		logf("%s: booting %s (%s) under qemu, console in %s", k.Name, k.Package, k.Version, filepath.Join(dir, "console.log"))
		res, err := boot(ctx, k, initrd, dir, *vmTimeout, *only)
		rep.add(k.Name, k.Package+" "+k.Version, res, err, time.Since(start))
		logf("%s: done in %s", k.Name, time.Since(start).Round(time.Second))
	}
	rep.print(os.Stdout)
	path := filepath.Join(*cache, "report.json")
	if err := rep.save(path); err != nil {
		logf("save report: %v", err)
	} else {
		logf("report: %s", path)
	}
	if rep.failed() {
		os.Exit(1)
	}
}

// buildTools builds the static scenario runner and checks sockreap-hook.
func buildTools(work, hook string) (Tools, error) {
	t := Tools{Guest: filepath.Join(work, "guest"), Busybox: "/bin/busybox"}
	cmd := exec.Command("go", "build", "-trimpath", "-o", t.Guest, "./test/kernels/guest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return t, fmt.Errorf("build the guest suite: %w\n%s", err, out)
	}
	abs, err := filepath.Abs(hook)
	if err != nil {
		return t, err
	}
	if _, err := os.Stat(abs); err != nil {
		return t, fmt.Errorf("%s missing: run make build first: %w", hook, err)
	}
	t.Hook = abs
	if out, err := exec.Command("ldd", abs).CombinedOutput(); err == nil && !strings.Contains(string(out), "not a dynamic") {
		return t, fmt.Errorf("%s is dynamically linked; the VMs need it static (CGO_ENABLED=0, make build)", hook)
	}
	if _, err := os.Stat(t.Busybox); err != nil {
		return t, fmt.Errorf("busybox missing (apt-get install busybox-static): %w", err)
	}
	return t, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func fatalf(format string, a ...any) {
	logf("FATAL: "+format, a...)
	os.Exit(1)
}
