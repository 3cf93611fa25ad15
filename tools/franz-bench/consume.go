// The consume workload: one client reads partitions 0..P-1 of the topic from their start
// (ConsumePartitions, no group, nothing committed) until N records are read. The clock starts
// before the client is created, so it covers the metadata and offset look-ups and every fetch;
// CPU is the whole process. Records beyond the N-th are not counted.

package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"
)

// ConsumeArgs is what one consume process does.
type ConsumeArgs struct {
	Bootstrap  string
	Topic      string
	Records    uint64
	Partitions int
	Timeout    time.Duration
	// MaxVersion caps the request versions at a Kafka release ("3.6.0"; empty: franz-go's
	// newest), for brokers that close the connection on versions they do not know (tansu).
	MaxVersion string
}

// Consume runs the consume workload and returns its report line.
func Consume(a ConsumeArgs) (string, error) {
	offsets := make(map[int32]kgo.Offset, a.Partitions)
	for p := 0; p < a.Partitions; p++ {
		offsets[int32(p)] = kgo.NewOffset().AtStart()
	}
	meter, err := StartMeter()
	if err != nil {
		return "", err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(seeds(a.Bootstrap)...),
		kgo.ClientID("franz-bench"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{a.Topic: offsets}),
	}
	if a.MaxVersion != "" {
		v := kversion.FromString(a.MaxVersion)
		if v == nil {
			return "", fmt.Errorf("-max-version %q is not a Kafka release franz-go knows", a.MaxVersion)
		}
		opts = append(opts, kgo.MaxVersions(v))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return "", fmt.Errorf("creating the client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), a.Timeout)
	defer cancel()

	var read, valueBytes uint64
	for read < a.Records {
		fetches := cl.PollFetches(ctx)
		for _, e := range fetches.Errors() {
			if errors.Is(e.Err, context.DeadlineExceeded) {
				return "", fmt.Errorf("read %d of %d records within -timeout-s %v", read, a.Records, a.Timeout)
			}
			return "", fmt.Errorf("fetching %s partition %d: %w", e.Topic, e.Partition, e.Err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if read < a.Records {
				read++
				valueBytes += uint64(len(r.Value))
			}
		})
	}
	window, err := meter.Stop()
	if err != nil {
		return "", err
	}
	note := fmt.Sprintf(
		"franz-go v1.22.3: ConsumePartitions of partitions 0..%d from the start (no group), PollFetches until "+
			"%d records; clock from client creation; versions capped at %q (empty: none); other settings franz-go's defaults; record_bytes is the "+
			"mean value size; %d value bytes in all",
		a.Partitions-1, a.Records, a.MaxVersion, valueBytes)
	r, err := NewReport("consume", a.Records, int(valueBytes/a.Records), "as stored", window, note)
	if err != nil {
		return "", err
	}
	return r.JSON()
}
