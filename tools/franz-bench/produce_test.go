// Tests of the produce workload's accounting of record outcomes (no broker).

package main

import (
	"errors"
	"strings"
	"testing"
)

func TestOutcomesAllAcked(t *testing.T) {
	var o outcomes
	for range 3 {
		o.promise(nil, nil)
	}
	if err := o.check(3); err != nil {
		t.Fatalf("3 of 3 acked: %v", err)
	}
	if err := o.check(4); err == nil || !strings.Contains(err.Error(), "3 acknowledged of 4 sent") {
		t.Fatalf("3 of 4 acked: got %v", err)
	}
}

func TestOutcomesAnyFailureFails(t *testing.T) {
	var o outcomes
	o.promise(nil, nil)
	o.promise(nil, errors.New("first failure"))
	o.promise(nil, errors.New("second failure"))
	err := o.check(3)
	if err == nil {
		t.Fatal("2 failed records passed the check")
	}
	if !strings.Contains(err.Error(), "2 of 3 records failed") || !strings.Contains(err.Error(), "first failure") {
		t.Fatalf("unexpected message: %v", err)
	}
}
