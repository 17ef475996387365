// Command guest runs the kernel scenario suite (test/kernels/suite). In a
// qemu guest it is /init: it mounts the pseudo filesystems, loads the
// modules the initramfs carries, runs the suite, writes the JSON result to
// the second serial port and powers the VM off. On the host (-host) it only
// runs the suite and prints the JSON result on stdout.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sockreap/sockreap/test/kernels/suite"
)

func main() {
	if os.Getpid() == 1 {
		initMain()
		return
	}
	hook := flag.String("hook", "bin/sockreap-hook", "sockreap-hook binary")
	only := flag.String("only", "", "comma-separated scenarios to run (default all)")
	flag.Parse()
	cfg := suite.Config{Hook: *hook}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	r := suite.Run(cfg)
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// initMain is PID 1 of the VM. Whatever happens it ends by rebooting,
// which qemu -no-reboot turns into an exit.
func initMain() {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "guest init panic: %v\n", r)
		}
		unix.Sync()
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	}()
	setup := boot()
	cfg := suite.Config{Hook: "/bin/sockreap-hook", InVM: true, Setup: setup}
	if only := cmdlineValue("sockreap.only"); only != "" {
		cfg.Only = strings.Split(only, ",")
	}
	r := suite.Run(cfg)
	b, _ := json.Marshal(r)
	out, err := os.OpenFile("/dev/ttyS1", os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "open result port /dev/ttyS1: %v; writing to the console\n", err)
		out = os.Stdout
	}
	// Raw mode: no newline translation or echo on the result port.
	if t, err := unix.IoctlGetTermios(int(out.Fd()), unix.TCGETS); err == nil {
		t.Oflag &^= unix.OPOST
		_ = unix.IoctlSetTermios(int(out.Fd()), unix.TCSETS, t)
	}
	fmt.Fprintf(out, "\n%s\n%s\n%s\n", suite.BeginMarker, b, suite.EndMarker)
	_ = unix.IoctlSetInt(int(out.Fd()), unix.TCSBRK, 1) // tcdrain
	out.Close()
}

// boot prepares the minimal system the suite needs and reports what it did.
func boot() []string {
	var log []string
	note := func(format string, a ...any) {
		s := fmt.Sprintf(format, a...)
		log = append(log, s)
		fmt.Fprintln(os.Stderr, "init: "+s)
	}
	for _, m := range []struct{ src, dst, typ string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := unix.Mount(m.src, m.dst, m.typ, 0, ""); err != nil && err != unix.EBUSY {
			note("mount %s on %s: %v", m.typ, m.dst, err)
		}
	}
	os.Setenv("PATH", "/bin:/sbin")
	loadModules(note)
	return log
}

// loadModules inserts the modules listed in /modules/order (dependencies
// first, uncompressed by the host), except those the suite loads itself
// when a scenario needs them (rds_tcp would add a kernel listener to every
// namespace of every other scenario).
func loadModules(note func(string, ...any)) {
	order, err := os.ReadFile("/modules/order")
	if err != nil {
		note("no module list: %v", err)
		return
	}
	var loaded []string
	for _, p := range strings.Fields(string(order)) {
		if suite.OnDemandModule(p) {
			continue
		}
		data, err := os.ReadFile("/" + p)
		if err != nil {
			note("read %s: %v", p, err)
			continue
		}
		if err := unix.InitModule(data, ""); err != nil && err != unix.EEXIST {
			note("load %s: %v", p, err)
			continue
		}
		loaded = append(loaded, strings.TrimSuffix(p[strings.LastIndexByte(p, '/')+1:], ".ko"))
	}
	note("modules loaded: %s", strings.Join(loaded, " "))
}

func cmdlineValue(key string) string {
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}
