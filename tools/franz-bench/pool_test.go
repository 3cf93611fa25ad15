// Tests of the payload pool against krab-bench's: the digests below are of the pool bytes
// krab-bench's Rust `Pool::new` (tools/bench/src/produce.rs) builds for each record size.

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func TestPoolBytesMatchKrabBench(t *testing.T) {
	for _, c := range []struct {
		size   int
		len    int
		sha256 string
	}{
		// Pools up to 8 KiB records are 512 KiB, so the same bytes.
		{100, 512 << 10, "5205708066e24578f1321db752b32e74ef665c3d32f1c2f3ed26eeabce5fd9b9"},
		{1000, 512 << 10, "5205708066e24578f1321db752b32e74ef665c3d32f1c2f3ed26eeabce5fd9b9"},
		// 64 records' worth beyond that.
		{20000, 1_280_000, "de7f6e325762ddf93d1554b4ef1c46acfb3f8e7f3be946763ba25fa24af50ca0"},
	} {
		p := NewPool(c.size)
		if len(p.data) != c.len {
			t.Errorf("size %d: pool of %d bytes, want %d", c.size, len(p.data), c.len)
		}
		sum := sha256.Sum256(p.data)
		if got := hex.EncodeToString(sum[:]); got != c.sha256 {
			t.Errorf("size %d: pool sha256 %s, want krab-bench's %s", c.size, got, c.sha256)
		}
	}
}

func TestValueIsThePoolSliceAtKrabBenchOffset(t *testing.T) {
	const size = 100
	p := NewPool(size)
	span := uint64(len(p.data) - size)
	// The first record whose offset wraps around.
	wrap := span/(size+3) + 1
	for _, i := range []uint64{0, 1, 2, wrap - 1, wrap, 1 << 40} {
		o := (i * (size + 3)) % span
		v := p.Value(i)
		if !bytes.Equal(v, p.data[o:o+size]) {
			t.Errorf("record %d: value is not pool[%d:%d]", i, o, o+size)
		}
		if cap(v) != size {
			t.Errorf("record %d: value capacity %d, want %d (appending must not write into the pool)", i, cap(v), size)
		}
	}
	if bytes.Equal(p.Value(wrap), p.Value(wrap-1)) {
		t.Errorf("records %d and %d have the same value", wrap-1, wrap)
	}
}
