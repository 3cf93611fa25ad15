// The measured window and the one JSON line a franz-bench process prints, with the fields of
// krab-bench's produce report (tools/bench/src/produce.rs, `run`).

package main

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// Meter holds the wall clock and process CPU at the start of the measured window.
type Meter struct {
	t0   time.Time
	cpu0 float64
}

// Window is what the measured window cost.
type Window struct {
	Seconds float64
	CPU     float64
	Threads uint64
}

// StartMeter starts the measured window.
func StartMeter() (Meter, error) {
	cpu, err := cpuSeconds()
	return Meter{t0: time.Now(), cpu0: cpu}, err
}

// Stop ends the measured window.
func (m Meter) Stop() (Window, error) {
	seconds := time.Since(m.t0).Seconds()
	cpu, err := cpuSeconds()
	if err != nil {
		return Window{}, err
	}
	n, err := threads()
	return Window{Seconds: seconds, CPU: cpu - m.cpu0, Threads: n}, err
}

// Report is the printed line; the field order is krab-bench's.
type Report struct {
	Client         string  `json:"client"`
	Workload       string  `json:"workload"`
	Records        uint64  `json:"records"`
	RecordBytes    int     `json:"record_bytes"`
	Compression    string  `json:"compression"`
	Seconds        float64 `json:"seconds"`
	RecordsPerS    float64 `json:"records_per_s"`
	MBPerS         float64 `json:"mb_per_s"`
	CPUS           float64 `json:"cpu_s"`
	CPUUsPerRecord float64 `json:"cpu_us_per_record"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
	Threads        uint64  `json:"threads"`
	Note           string  `json:"note"`
}

// round rounds x to digits decimals, as krab-bench does.
func round(x float64, digits int) float64 {
	k := math.Pow(10, float64(digits))
	return math.Round(x*k) / k
}

// NewReport computes the rates of records records of recordBytes bytes over w.
func NewReport(workload string, records uint64, recordBytes int, compression string, w Window, note string) (Report, error) {
	if w.Seconds <= 0 || records == 0 {
		return Report{}, fmt.Errorf("empty window: %d records in %.6f s", records, w.Seconds)
	}
	rss, err := peakRSSMiB()
	if err != nil {
		return Report{}, err
	}
	bytes := float64(records) * float64(recordBytes)
	return Report{
		Client:         "franz-go",
		Workload:       workload,
		Records:        records,
		RecordBytes:    recordBytes,
		Compression:    compression,
		Seconds:        round(w.Seconds, 3),
		RecordsPerS:    round(float64(records)/w.Seconds, 1),
		MBPerS:         round(bytes/w.Seconds/1e6, 2),
		CPUS:           round(w.CPU, 2),
		CPUUsPerRecord: round(w.CPU*1e6/float64(records), 3),
		PeakRSSMB:      round(rss, 1),
		Threads:        w.Threads,
		Note:           note,
	}, nil
}

// JSON is the report as one line (no newline; "<", ">" and "&" left as they are).
func (r Report) JSON() (string, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}
