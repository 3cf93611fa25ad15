// The produce workload, with krab-bench's semantics (tools/bench/src/produce.rs): N records of S
// bytes from the shared payload pool, record i to partition i % P (franz-go's ManualPartitioner),
// no key, one Produce call per record from one goroutine, then Flush. A warm-up of 1% of N
// (at least 1, at most 10 000 records) is sent and flushed before the clock starts; the clock
// covers sending every measured record and the final flush, so records/s counts records
// acknowledged. Every record must be acknowledged: any failed record fails the run.

package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// maxBufferedRecords lifts franz-go's record-count bound on buffering (default 50 000) so that
// only MaxBufferedBytes binds, as krab's buffer.memory does.
const maxBufferedRecords = 10_000_000

// ProduceArgs is what one produce process does.
type ProduceArgs struct {
	Bootstrap   string
	Topic       string
	Records     uint64
	Size        int
	Partitions  int
	Compression string
	Acks        string
	Linger      time.Duration
	BatchBytes  int
	BufferBytes int
	Timeout     time.Duration
}

// outcomes counts the records franz-go has finished, from its promises.
type outcomes struct {
	acked  atomic.Uint64
	failed atomic.Uint64
	once   sync.Once
	first  error
}

func (o *outcomes) promise(_ *kgo.Record, err error) {
	if err == nil {
		o.acked.Add(1)
		return
	}
	o.failed.Add(1)
	o.once.Do(func() { o.first = err })
}

func (o *outcomes) check(sent uint64) error {
	acked, failed := o.acked.Load(), o.failed.Load()
	if failed > 0 {
		// The promise that failed first has stored its error before counting.
		return fmt.Errorf("%d of %d records failed, the first with: %v", failed, sent, o.first)
	}
	if acked != sent {
		return fmt.Errorf("%d acknowledged of %d sent", acked, sent)
	}
	return nil
}

// Produce runs the produce workload and returns its report line.
func Produce(a ProduceArgs) (string, error) {
	pool := NewPool(a.Size)
	codec := kgo.NoCompression()
	if a.Compression == "lz4" {
		codec = kgo.Lz4Compression()
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(seeds(a.Bootstrap)...),
		kgo.ClientID("franz-bench"),
		kgo.DefaultProduceTopic(a.Topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(a.Linger),
		kgo.ProducerBatchMaxBytes(int32(a.BatchBytes)),
		kgo.MaxBufferedBytes(a.BufferBytes),
		kgo.MaxBufferedRecords(maxBufferedRecords),
		kgo.ProducerBatchCompression(codec),
	}
	// franz-go's default in-flight bound: 5 Produce requests per broker when idempotent, 1 when not.
	idempotence := "idempotent (franz-go's default; 5 Produce requests in flight per broker)"
	if a.Acks == "1" {
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
		idempotence = "DisableIdempotentWrite (franz-go's default of 1 Produce request in flight per broker)"
	} else {
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return "", fmt.Errorf("creating the client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), a.Timeout)
	defer cancel()

	var out outcomes
	p := uint64(a.Partitions)
	send := func(from, to uint64) error {
		for i := from; i < to; i++ {
			cl.Produce(ctx, &kgo.Record{Value: pool.Value(i), Partition: int32(i % p)}, out.promise)
		}
		if err := cl.Flush(ctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("not all records acknowledged within -timeout-s %v", a.Timeout)
			}
			return fmt.Errorf("flush: %w", err)
		}
		return nil
	}
	warmup := min(max(a.Records/100, 1), 10_000)
	if err := send(0, warmup); err != nil {
		return "", fmt.Errorf("warm-up: %w", err)
	}
	if err := out.check(warmup); err != nil {
		return "", fmt.Errorf("warm-up: %w", err)
	}

	meter, err := StartMeter()
	if err != nil {
		return "", err
	}
	if err := send(0, a.Records); err != nil {
		return "", err
	}
	window, err := meter.Stop()
	if err != nil {
		return "", err
	}
	total := warmup + a.Records
	if err := out.check(total); err != nil {
		return "", err
	}
	note := fmt.Sprintf(
		"franz-go v1.22.3: Client.Produce(record, promise) per record from one goroutine, then Flush(); "+
			"ManualPartitioner (record i to partition i %% %d); acks=%s, %s; ProducerLinger %v, "+
			"ProducerBatchMaxBytes %d, MaxBufferedBytes %d, MaxBufferedRecords %d, %s compression; "+
			"other settings franz-go's defaults; warm-up of %d records flushed first; all %d records acked",
		a.Partitions, a.Acks, idempotence, a.Linger, a.BatchBytes, a.BufferBytes, maxBufferedRecords,
		a.Compression, warmup, total)
	r, err := NewReport("produce", a.Records, a.Size, a.Compression, window, note)
	if err != nil {
		return "", err
	}
	return r.JSON()
}
