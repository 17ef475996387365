package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockreap/sockreap/test/kernels/suite"
)

// kvmUsable reports whether qemu can use KVM here (the device exists and
// we may open it); otherwise qemu emulates (TCG), slower but equivalent.
func kvmUsable() bool {
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

var accel []string

// accelArgs picks KVM when it actually runs a guest here and TCG
// otherwise, once per run. A usable /dev/kvm is not enough: under nested
// virtualisation qemu may abort on MSRs or the guest may hang silently, so
// a kernel is booted without initramfs and must print its banner.
func accelArgs(ctx context.Context, k *Kernel) []string {
	if accel != nil {
		return accel
	}
	accel = []string{"-accel", "tcg", "-cpu", "max"}
	if !kvmUsable() {
		logf("qemu: /dev/kvm not usable, emulating (TCG)")
		return accel
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "qemu-system-x86_64", "-m", "256", "-enable-kvm", "-cpu", "host",
		"-kernel", k.Vmlinuz, "-append", "console=ttyS0 panic=-1", "-nographic", "-no-reboot", "-nic", "none").CombinedOutput()
	if bytes.Contains(out, []byte("Linux version")) {
		accel = []string{"-enable-kvm", "-cpu", "host"}
		logf("qemu: using KVM")
	} else {
		logf("qemu: KVM does not boot a guest here (%s); emulating (TCG)", strings.TrimSpace(tail(string(out), 200)))
	}
	return accel
}

// boot runs one VM: kernel + initramfs, the suite as init, no network
// device. The console (ttyS0) goes to console.log, the result to the
// second serial port (ttyS1) in result.log, both in dir.
func boot(ctx context.Context, k *Kernel, initrd, dir string, timeout time.Duration, only string) (*suite.Result, error) {
	consoleLog := filepath.Join(dir, "console.log")
	resultLog := filepath.Join(dir, "result.log")
	_ = os.Remove(consoleLog)
	_ = os.Remove(resultLog)
	appendLine := "console=ttyS0 panic=-1 loglevel=4 net.ifnames=0"
	if only != "" {
		appendLine += " sockreap.only=" + only
	}
	args := []string{
		"-m", "1024", "-smp", "2",
		"-kernel", k.Vmlinuz, "-initrd", initrd, "-append", appendLine,
		"-nographic", "-no-reboot", "-nic", "none", "-monitor", "none",
		"-serial", "file:" + consoleLog, "-serial", "file:" + resultLog,
	}
	args = append(args, accelArgs(ctx, k)...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return nil, fmt.Errorf("VM did not power off within %s (console: %s)", timeout, consoleLog)
	}
	if err != nil {
		return nil, fmt.Errorf("qemu: %w: %s (console: %s)", err, tail(stderr.String(), 1000), consoleLog)
	}
	raw, err := os.ReadFile(resultLog)
	if err != nil {
		return nil, fmt.Errorf("no result from the VM: %w (console: %s)", err, consoleLog)
	}
	return parseResult(raw, consoleLog)
}

// parseResult finds the JSON between the markers the guest writes.
func parseResult(raw []byte, consoleLog string) (*suite.Result, error) {
	s := string(raw)
	i := strings.Index(s, suite.BeginMarker)
	j := strings.Index(s, suite.EndMarker)
	if i < 0 || j < i {
		con, _ := os.ReadFile(consoleLog)
		return nil, fmt.Errorf("the VM wrote no result; console tail:\n%s", tail(string(con), 3000))
	}
	var r suite.Result
	if err := json.Unmarshal([]byte(strings.TrimSpace(s[i+len(suite.BeginMarker):j])), &r); err != nil {
		return nil, fmt.Errorf("VM result is not JSON: %w", err)
	}
	return &r, nil
}

// runHost runs the suite on the host kernel with the same guest binary.
func runHost(ctx context.Context, guest, hook, only string, timeout time.Duration) (*suite.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := []string{"-hook", hook}
	if only != "" {
		args = append(args, "-only", only)
	}
	cmd := exec.CommandContext(ctx, guest, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("host suite: %w", err)
	}
	var r suite.Result
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("host suite result: %w", err)
	}
	return &r, nil
}
