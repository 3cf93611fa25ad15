// What this process used: CPU from getrusage(RUSAGE_SELF) (all threads, microsecond resolution),
// peak RSS and thread count from /proc/self/status (Linux only).

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// cpuSeconds is the user + system CPU time the whole process has used so far.
func cpuSeconds() (float64, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime), nil
}

// statusField is the number in the `Key:   value [kB]` line of /proc/self/status.
func statusField(key string) (uint64, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("reading /proc/self/status: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, key+":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, fmt.Errorf("empty %s in /proc/self/status", key)
		}
		v, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s in /proc/self/status: %w", key, err)
		}
		return v, nil
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", key)
}

// peakRSSMiB is the peak resident set size (VmHWM), in MiB.
func peakRSSMiB() (float64, error) {
	kb, err := statusField("VmHWM")
	return float64(kb) / 1024, err
}

// threads is the number of threads of this process right now.
func threads() (uint64, error) {
	return statusField("Threads")
}
