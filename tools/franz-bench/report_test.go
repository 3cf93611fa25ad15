// Tests of the report line: krab-bench's produce fields, in its order, with its rounding.

package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestReportFieldsAndRates(t *testing.T) {
	r, err := NewReport("produce", 100_000, 100, "none", Window{Seconds: 2, CPU: 0.5, Threads: 7}, "a<b & c")
	if err != nil {
		t.Fatal(err)
	}
	line, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(line, "\n") {
		t.Fatalf("not one line: %q", line)
	}
	// The field order of krab-bench's produce report (tools/bench/src/produce.rs).
	want := []string{"client", "workload", "records", "record_bytes", "compression", "seconds", "records_per_s",
		"mb_per_s", "cpu_s", "cpu_us_per_record", "peak_rss_mb", "threads", "note"}
	dec := json.NewDecoder(strings.NewReader(line))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for i := 0; dec.More(); i++ {
		key, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(want) || key != want[i] {
			t.Fatalf("field %d is %v, want %v", i, key, want)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{
		"client": "franz-go", "records_per_s": 50000.0, "mb_per_s": 5.0, "cpu_s": 0.5,
		"cpu_us_per_record": 5.0, "threads": 7.0, "note": "a<b & c",
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if !strings.Contains(line, `"a<b & c"`) {
		t.Errorf("note escaped: %s", line)
	}
}

func TestReportRejectsAnEmptyWindow(t *testing.T) {
	if _, err := NewReport("produce", 10, 100, "none", Window{Seconds: 0}, ""); err == nil {
		t.Fatal("a zero-length window gave a report")
	}
}

func TestRoundLikeKrabBench(t *testing.T) {
	for _, c := range []struct {
		x      float64
		digits int
		want   float64
	}{{1.23456, 3, 1.235}, {84967.54, 1, 84967.5}, {0.005, 2, 0.01}, {2.5, 0, 3}} {
		if got := round(c.x, c.digits); got != c.want {
			t.Errorf("round(%v, %d) = %v, want %v", c.x, c.digits, got, c.want)
		}
	}
}
