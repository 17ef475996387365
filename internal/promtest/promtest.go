// Package promtest reads Prometheus's text exposition in tests, strictly
// (the parser Prometheus's own client tooling uses, with the classic
// metric-name rules), and drives real prometheus and node_exporter
// processes for scrape tests.
package promtest

import (
	"fmt"
	"io"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are parsed metric families by name.
type Families map[string]*dto.MetricFamily

// Parse parses a text exposition; any deviation from the format (a bad
// name, a duplicate series, a malformed value) is an error.
func Parse(r io.Reader) (Families, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(r)
	return Families(fams), err
}

// Value returns the value of the series of family name whose labels are
// exactly want: a counter's or gauge's value, a histogram's sample count.
func (f Families) Value(name string, want map[string]string) (float64, bool) {
	fam := f[name]
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.Metric {
		if !labelsMatch(m, want, true) {
			continue
		}
		return value(m), true
	}
	return 0, false
}

// Sum adds the values of the series of family name whose labels include
// match.
func (f Families) Sum(name string, match map[string]string) float64 {
	fam := f[name]
	if fam == nil {
		return 0
	}
	var s float64
	for _, m := range fam.Metric {
		if labelsMatch(m, match, false) {
			s += value(m)
		}
	}
	return s
}

// Series lists the series of family name as name{labels} value lines,
// sorted, for failure messages.
func (f Families) Series(name string) string {
	fam := f[name]
	if fam == nil {
		return "(no " + name + ")"
	}
	var lines []string
	for _, m := range fam.Metric {
		var ls []string
		for _, l := range m.Label {
			ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
		}
		lines = append(lines, fmt.Sprintf("%s{%s} %g", name, strings.Join(ls, ","), value(m)))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func labelsMatch(m *dto.Metric, want map[string]string, exact bool) bool {
	if exact && len(m.Label) != len(want) {
		return false
	}
	n := 0
	for _, l := range m.Label {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}
