package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sockreap/sockreap/test/kernels/suite"
)

// Run is one kernel's outcome.
type Run struct {
	Kernel   string        `json:"kernel"`  // host or the matrix name
	Package  string        `json:"package"` // Debian package and version ("" for host)
	Result   *suite.Result `json:"result,omitempty"`
	Error    string        `json:"error,omitempty"` // the run itself failed (no result)
	Duration float64       `json:"duration_s"`
}

// Report is the whole matrix.
type Report struct {
	Started      time.Time `json:"started"`
	FetchSeconds float64   `json:"fetch_s"`
	Runs         []Run     `json:"runs"`
}

func (r *Report) add(kernel, pkg string, res *suite.Result, err error, d time.Duration) {
	run := Run{Kernel: kernel, Package: pkg, Result: res, Duration: d.Seconds()}
	if err != nil {
		run.Error = err.Error()
		logf("%s: %v", kernel, err)
	}
	r.Runs = append(r.Runs, run)
}

func (r *Report) failed() bool {
	for _, run := range r.Runs {
		if run.Error != "" || run.Result == nil || run.Result.DoctorErr != "" {
			return true
		}
		for _, s := range run.Result.Scenarios {
			if s.Status == suite.Fail {
				return true
			}
		}
	}
	return false
}

func (r *Report) save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// print writes the kernel × scenario table, the doctor output per kernel
// and the reasons behind every cell that is not a plain pass.
func (r *Report) print(w io.Writer) {
	names := suite.Names()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "kernel\t%s\ttime\n", strings.Join(names, "\t"))
	for _, run := range r.Runs {
		cells := make([]string, len(names))
		for i, n := range names {
			cells[i] = "-"
			if run.Result == nil {
				cells[i] = "ERROR"
				continue
			}
			for _, s := range run.Result.Scenarios {
				if s.Name == n {
					cells[i] = s.Status
				}
			}
		}
		label := run.Kernel
		if run.Result != nil && run.Result.Kernel != "" {
			label += " (" + run.Result.Kernel + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0fs\n", label, strings.Join(cells, "\t"), run.Duration)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nkernel download/extract: %.1fs\n", r.FetchSeconds)
	for _, run := range r.Runs {
		fmt.Fprintf(w, "\n== %s %s\n", run.Kernel, run.Package)
		if run.Error != "" {
			fmt.Fprintf(w, "  run failed: %s\n", run.Error)
			continue
		}
		if run.Result.DoctorErr != "" {
			fmt.Fprintf(w, "  doctor: FAILED: %s\n", run.Result.DoctorErr)
		} else {
			fmt.Fprintf(w, "  doctor: %s\n", run.Result.Doctor)
		}
		for _, s := range run.Result.Scenarios {
			if s.Reason != "" {
				fmt.Fprintf(w, "  %-11s %s: %s\n", s.Name, s.Status, oneLine(s.Reason))
			}
		}
	}
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 600 {
		s = s[:600] + "..."
	}
	return s
}
