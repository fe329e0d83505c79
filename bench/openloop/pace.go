package main

import (
	"sync"
	"sync/atomic"
	"time"
)

// schedule is the open loop's timetable: request i is due at start +
// i/rate, computed from i rather than summed, so rounding never drifts.
type schedule struct {
	start time.Time
	rate  float64 // requests per second, > 0
}

// at returns when request i is due.
func (s schedule) at(i int64) time.Time {
	return s.start.Add(time.Duration(float64(i) * float64(time.Second) / s.rate))
}

// pacer sends requests on schedule, whether or not earlier ones have been
// answered: a request finds an idle worker, or a new worker is started for
// it, up to maxWorkers. Only past that does a send wait, and then the wait
// counts in its latency, because latency is measured from the time the
// request was due, not from when it went out (no coordinated omission).
//
// One exception keeps the client's own timer out of the figures: Go's
// timers wake an idle process up to about a millisecond late, and a request
// due while the dispatcher overslept is measured from the wake-up, not from
// its due time. Only the dispatcher's sleeps are forgiven; time it spent
// waiting for a worker is not (see intended).
type pacer struct {
	sched      schedule
	warmup     int64 // requests before the measured window: sent, not recorded
	measured   int64 // requests in the measured window
	workers    int   // started up front
	maxWorkers int   // started at most

	// newWorker returns a new worker's send function, called once in each
	// worker: do sends request i and returns whether it was answered 200
	// (err is a transport error). Each worker calls only its own do, so do
	// may keep a connection of its own.
	newWorker func() (do func(i int64) (ok bool, err error))
	// windowStart and windowEnd are called by the dispatcher when the
	// first measured request is due and when the window is over (before the
	// last answers arrive): the CPU snapshots go there. Either may be nil.
	windowStart, windowEnd func()
}

// result is what a pacer run measured, over the measured window only.
type result struct {
	Latency   histogram // from the request's due time to its answer
	Service   histogram // from the worker's send to the answer
	Scheduled int64     // requests due in the window
	OK        int64     // answered 200
	Non200    int64     // answered with another status
	Errors    int64     // transport errors (refused, reset, timeout)
	// InWindow counts answers (of any request) that arrived during the
	// window: the throughput the target delivered while measured.
	InWindow int64
	// Blocked counts measured sends that waited for a worker (maxWorkers
	// were all busy): those waits are in Latency.
	Blocked    int64
	Workers    int           // workers started
	Window     time.Duration // measured window, as it really went
	FirstError string        // the first transport error, to read a bad run
}

// job is one request handed to a worker.
type job struct {
	i        int64
	intended time.Time // latency is measured from here
}

// run sends every request of the schedule and returns once all are
// answered. The schedule's start should be a little ahead of now.
func (p *pacer) run() *result {
	r := &result{Scheduled: p.measured}
	jobs := make(chan job)
	var wg sync.WaitGroup
	var windowFrom, windowTo atomic.Int64 // unix ns; 0 until known
	var errOnce sync.Once
	worker := func() {
		defer wg.Done()
		do := p.newWorker()
		for j := range jobs {
			sent := time.Now()
			ok, err := do(j.i)
			done := time.Now()
			if from, to := windowFrom.Load(), windowTo.Load(); from != 0 && done.UnixNano() >= from && (to == 0 || done.UnixNano() < to) {
				atomicInc(&r.InWindow)
			}
			if j.i < p.warmup {
				continue
			}
			switch {
			case err != nil:
				atomicInc(&r.Errors)
				errOnce.Do(func() { r.FirstError = err.Error() })
				continue
			case ok:
				atomicInc(&r.OK)
			default:
				atomicInc(&r.Non200)
			}
			r.Latency.Record(done.Sub(j.intended))
			r.Service.Record(done.Sub(sent))
		}
	}
	start := func() {
		r.Workers++
		wg.Add(1)
		go worker()
	}
	for range p.workers {
		start()
	}

	var woke time.Time // when the dispatcher last came back from a sleep
	for i := int64(0); i < p.warmup+p.measured; i++ {
		due := p.sched.at(i)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
			woke = time.Now()
		}
		if i == p.warmup {
			windowFrom.Store(time.Now().UnixNano())
			if p.windowStart != nil {
				p.windowStart()
			}
		}
		j := job{i: i, intended: intended(due, woke)}
		select {
		case jobs <- j:
			continue
		default:
		}
		if r.Workers < p.maxWorkers {
			start()
		} else if i >= p.warmup {
			r.Blocked++
		}
		jobs <- j
	}
	if d := time.Until(p.sched.at(p.warmup + p.measured)); d > 0 {
		time.Sleep(d) // the last request's share of the window
	}
	now := time.Now()
	windowTo.Store(now.UnixNano())
	if p.windowEnd != nil {
		p.windowEnd()
	}
	r.Window = now.Sub(time.Unix(0, windowFrom.Load()))
	close(jobs)
	wg.Wait()
	return r
}

// intended is the time a request's latency is measured from: when it was
// due, or, if the dispatcher overslept past that, when it woke up. A
// dispatcher that is late because it waited for a worker did not sleep,
// so its lateness stays in the latency.
func intended(due, woke time.Time) time.Time {
	if woke.After(due) {
		return woke
	}
	return due
}

func atomicInc(p *int64) { atomic.AddInt64(p, 1) }
