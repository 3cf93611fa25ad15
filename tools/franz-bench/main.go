// franz-bench: the franz-go side of krab's client benchmarks, one client per process, printing
// one JSON line in the format of krab-bench's produce report (tools/bench). Build and run from
// this directory:
//
//	GOTOOLCHAIN=local go build -o OUT .
//	OUT produce -bootstrap B -topic T -records N -size S -partitions P -compression none|lz4 \
//	    -acks 1|all -linger-ms 5 -batch-bytes 262144 -buffer-bytes 67108864
//	OUT consume -bootstrap B -topic T -records N -partitions P
//
// The topic must exist with at least P partitions. Exit status 1 (the reason on stderr) on bad
// flags, on any failed record, or when -timeout-s passes first.
//
// This file parses the command line; produce.go and consume.go run the workloads.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
	"time"
)

const usage = `usage:
  franz-bench produce -bootstrap B -topic T [-records N] [-size S] [-partitions P]
      [-compression none|lz4] [-acks 1|all] [-linger-ms L] [-batch-bytes B] [-buffer-bytes B]
      [-timeout-s S]
  franz-bench consume -bootstrap B -topic T [-records N] [-partitions P] [-timeout-s S] [-max-version 3.6.0]`

func main() {
	line, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "franz-bench:", err)
		os.Exit(1)
	}
	fmt.Println(line)
}

func run(args []string) (string, error) {
	if len(args) == 0 {
		return "", fmt.Errorf("no subcommand\n%s", usage)
	}
	fs := flag.NewFlagSet("franz-bench "+args[0], flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(os.Stderr, usage) }
	bootstrap := fs.String("bootstrap", "", "bootstrap servers, comma-separated")
	topic := fs.String("topic", "", "topic")
	records := fs.Uint64("records", 100_000, "records to produce or consume (measured)")
	partitions := fs.Int("partitions", 6, "partitions: record i goes to / is read from 0..P-1")
	timeout := fs.Float64("timeout-s", 300, "give up (exit 1) after this many seconds")
	switch args[0] {
	case "produce":
		a := ProduceArgs{}
		size := fs.Int("size", 100, "value bytes per record")
		fs.StringVar(&a.Compression, "compression", "none", "none or lz4")
		fs.StringVar(&a.Acks, "acks", "1", "1 (idempotence off) or all (idempotent)")
		lingerMs := fs.Int("linger-ms", 5, "ProducerLinger, in ms")
		fs.IntVar(&a.BatchBytes, "batch-bytes", 262144, "ProducerBatchMaxBytes")
		fs.IntVar(&a.BufferBytes, "buffer-bytes", 64<<20, "MaxBufferedBytes")
		if err := parse(fs, args[1:], bootstrap, topic, records, partitions, timeout); err != nil {
			return "", err
		}
		if *size <= 0 || *lingerMs < 0 || a.BatchBytes <= 0 || a.BatchBytes > math.MaxInt32 || a.BufferBytes <= 0 {
			return "", fmt.Errorf("-size, -batch-bytes (at most 2^31-1) and -buffer-bytes must be positive, -linger-ms not negative")
		}
		if a.Compression != "none" && a.Compression != "lz4" {
			return "", fmt.Errorf("-compression none|lz4, got %q", a.Compression)
		}
		if a.Acks != "1" && a.Acks != "all" {
			return "", fmt.Errorf("-acks 1|all, got %q", a.Acks)
		}
		a.Bootstrap, a.Topic, a.Records, a.Size, a.Partitions = *bootstrap, *topic, *records, *size, *partitions
		a.Linger = time.Duration(*lingerMs) * time.Millisecond
		a.Timeout = seconds(*timeout)
		return Produce(a)
	case "consume":
		maxVersion := fs.String("max-version", "", "cap request versions at this Kafka release, e.g. 3.6.0 (tansu)")
		if err := parse(fs, args[1:], bootstrap, topic, records, partitions, timeout); err != nil {
			return "", err
		}
		return Consume(ConsumeArgs{
			Bootstrap: *bootstrap, Topic: *topic, Records: *records, Partitions: *partitions, Timeout: seconds(*timeout),
			MaxVersion: *maxVersion,
		})
	default:
		return "", fmt.Errorf("unknown subcommand %q\n%s", args[0], usage)
	}
}

// parse parses the flags and checks the ones both subcommands share.
func parse(fs *flag.FlagSet, args []string, bootstrap, topic *string, records *uint64, partitions *int, timeout *float64) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if strings.TrimSpace(*bootstrap) == "" || *topic == "" {
		return fmt.Errorf("-bootstrap and -topic are required")
	}
	if *records == 0 || *partitions <= 0 || *partitions > 1<<20 || !(*timeout > 0) {
		return fmt.Errorf("-records, -partitions and -timeout-s must be positive")
	}
	return nil
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second))
}

// seeds splits a comma-separated bootstrap list.
func seeds(bootstrap string) []string {
	var out []string
	for _, s := range strings.Split(bootstrap, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
