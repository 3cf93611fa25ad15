// The payload bytes, identical to krab-bench's (tools/bench/src/produce.rs, `Pool`): one pool of
// pseudo-random word-like text from a xorshift64* generator, record i's value a slice of it.
// Every client of the produce benchmark therefore sends the same bytes, compressible about 2x by
// lz4.

package main

import "strconv"

// poolWords is krab-bench's word list, in its order.
var poolWords = []string{
	"kafka", "record", "batch", "partition", "offset", "broker", "leader", "replica",
	"topic", "producer", "consumer", "group", "commit", "fetch", "linger", "acks",
	"lz4", "zstd", "snappy", "gzip", "krab", "tokio", "future", "buffer",
	"memory", "latency", "throughput", "value", "key", "header", "timestamp", "sequence",
}

// Pool holds the payload text and the record size.
type Pool struct {
	data []byte
	size int
}

// NewPool builds the pool for records of size bytes: max(512 KiB, 64 * size) bytes of text.
func NewPool(size int) *Pool {
	n := max(512<<10, size*64)
	data := make([]byte, 0, n+16)
	x := uint64(0x9e3779b97f4a7c15)
	for len(data) < n {
		// xorshift64*: deterministic, the same bytes for every client.
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		r := x * 0x2545f4914f6cdd1d
		if r%5 == 0 {
			data = strconv.AppendUint(data, r%100_000, 10)
		} else {
			data = append(data, poolWords[int((r>>32)%uint64(len(poolWords)))]...)
		}
		data = append(data, ' ')
	}
	return &Pool{data: data[:n], size: size}
}

// offset is where record i starts: size + 3 bytes after record i - 1, wrapping.
func (p *Pool) offset(i uint64) int {
	return int((i * uint64(p.size+3)) % uint64(len(p.data)-p.size))
}

// Value is record i's value, a sub-slice of the pool (not copied; never modified).
func (p *Pool) Value(i uint64) []byte {
	o := p.offset(i)
	return p.data[o : o+p.size : o+p.size]
}
