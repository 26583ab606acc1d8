package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// ---- requests --------------------------------------------------------------------------------

// template is a sample body split around the value of its top-level "id".
type template struct {
	name           string
	prefix, suffix []byte
}

func loadTemplates(patterns string) ([]template, error) {
	var files []string
	for _, p := range strings.Split(patterns, ",") {
		m, err := filepath.Glob(strings.TrimSpace(p))
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("no sample matches %q", patterns)
	}
	var out []template
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var top struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &top); err != nil || top.ID == "" {
			return nil, fmt.Errorf("%s: not a JSON object with a string \"id\"", f)
		}
		quoted, _ := json.Marshal(top.ID)
		// The top-level "id" is the one whose value is top.ID (nested actions have other ids).
		re := regexp.MustCompile(`"id"\s*:\s*` + regexp.QuoteMeta(string(quoted)))
		locs := re.FindAllIndex(body, -1)
		if len(locs) != 1 {
			return nil, fmt.Errorf("%s: the top-level id occurs %d times, expected once", f, len(locs))
		}
		valueStart := locs[0][1] - len(quoted) + 1 // just after the opening quote
		valueEnd := locs[0][1] - 1                 // the closing quote
		out = append(out, template{name: filepath.Base(f), prefix: body[:valueStart], suffix: body[valueEnd:]})
	}
	return out, nil
}

// requestMaker builds distinct, correctly signed deliveries: each has its own process id and its
// own X-AUTHVIA-VALUE, and is signed with the current time when it is built (at send time).
type requestMaker struct {
	templates []template
	secret    []byte
	host      string
	path      string
	nonce     [6]byte
	counter   atomic.Uint64
}

func (m *requestMaker) build(buf []byte) []byte {
	n := m.counter.Add(1)
	t := &m.templates[int(n%uint64(len(m.templates)))]
	// A UUID-shaped id: 6 random bytes of this run, then the sequence number.
	var raw [16]byte
	copy(raw[:6], m.nonce[:])
	binary.BigEndian.PutUint64(raw[8:], n)
	raw[6] = 0x40 | (raw[6] & 0x0f)
	raw[8] = 0x80 | (raw[8] & 0x3f)
	h := hex.EncodeToString(raw[:])
	id := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	value, ts, sig := m.signAs(n)

	bodyLen := len(t.prefix) + len(id) + len(t.suffix)
	buf = buf[:0]
	buf = append(buf, "POST "...)
	buf = append(buf, m.path...)
	buf = append(buf, " HTTP/1.1\r\nHost: "...)
	buf = append(buf, m.host...)
	buf = append(buf, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	buf = strconv.AppendInt(buf, int64(bodyLen), 10)
	buf = append(buf, "\r\nX-AUTHVIA-SIGNATURE: "...)
	buf = append(buf, sig...)
	buf = append(buf, "\r\nX-AUTHVIA-VALUE: "...)
	buf = append(buf, value...)
	buf = append(buf, "\r\nX-AUTHVIA-TIMESTAMP: "...)
	buf = append(buf, ts...)
	buf = append(buf, "\r\nX-AUTHVIA-ALGORITHM: SHA-256\r\n\r\n"...)
	buf = append(buf, t.prefix...)
	buf = append(buf, id...)
	buf = append(buf, t.suffix...)
	return buf
}

// sign returns the X-AUTHVIA-VALUE, -TIMESTAMP and -SIGNATURE of a fresh request.
func (m *requestMaker) sign() (value, ts, sig string) {
	return m.signAs(m.counter.Add(1))
}

// signAs signs the n-th request of this maker with the current time.
func (m *requestMaker) signAs(n uint64) (value, ts, sig string) {
	value = "v" + hex.EncodeToString(m.nonce[:]) + strconv.FormatUint(n, 36)
	ts = strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, m.secret)
	mac.Write([]byte(value + "." + strconv.Itoa(len(value)) + "." + ts))
	return value, ts, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ---- connections -----------------------------------------------------------------------------

// conn is one keep-alive HTTP/1.1 connection; one request at a time (no pipelining).
type conn struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte
}

func dial(addr string, timeout time.Duration) (*conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, r: bufio.NewReaderSize(c, 4096), buf: make([]byte, 0, 4096)}, nil
}

type answer struct {
	Topic            string `json:"topic"`
	Partition        *int32 `json:"partition"`
	Offset           *int64 `json:"offset"`
	DeadLetterReason string `json:"deadLetterReason"`
}

// do sends one request and reads its answer. keep=false means the connection is unusable now.
func (c *conn) do(m *requestMaker, timeout time.Duration) (status int, body []byte, keep bool, err error) {
	c.buf = m.build(c.buf)
	c.c.SetDeadline(time.Now().Add(timeout))
	if _, err = c.c.Write(c.buf); err != nil {
		return 0, nil, false, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, nil, false, err
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return 0, nil, false, err
	}
	return resp.StatusCode, body, !resp.Close, nil
}

// ---- results ---------------------------------------------------------------------------------

// tally collects the outcomes of every request of a run (shared, behind its mutex).
type tally struct {
	mu         sync.Mutex
	hist       *hdrhistogram.Histogram // 2xx latency of the measured phase, microseconds
	all        *hdrhistogram.Histogram // every measured arrival: 2xx at its latency, failures at the timeout
	failAt     int64                   // the latency a failure counts as (the request timeout), microseconds
	status     map[string]int64        // measured phase
	okMeasured int64
	failed     int64 // measured non-2xx answers and transport errors (drops are counted apart)
	lastDone   time.Time
	// Over the whole run (warm-up included), for the Kafka check:
	okAll      int64
	deadLetter int64
	missingPos int64
	acked      map[string]map[int32][]int64
	firstErr   string
}

func newTally(timeout time.Duration) *tally {
	return &tally{
		hist:   hdrhistogram.New(1, 60_000_000, 3),
		all:    hdrhistogram.New(1, 60_000_000, 3),
		failAt: max(1, timeout.Microseconds()),
		status: map[string]int64{},
		acked:  map[string]map[int32][]int64{},
	}
}

func (t *tally) record(measured bool, status int, body []byte, err error, latency time.Duration, done time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if status >= 200 && status < 300 {
		t.okAll++
		var a answer
		if json.Unmarshal(body, &a) != nil || a.Partition == nil || a.Offset == nil || a.Topic == "" {
			t.missingPos++
		} else {
			if a.DeadLetterReason != "" {
				t.deadLetter++
			}
			ps := t.acked[a.Topic]
			if ps == nil {
				ps = map[int32][]int64{}
				t.acked[a.Topic] = ps
			}
			ps[*a.Partition] = append(ps[*a.Partition], *a.Offset)
		}
	}
	if !measured {
		return
	}
	key := strconv.Itoa(status)
	if err != nil {
		key = "transport_error"
		if t.firstErr == "" {
			t.firstErr = err.Error()
		}
	} else if status < 200 || status >= 300 {
		if t.firstErr == "" {
			t.firstErr = fmt.Sprintf("HTTP %d: %.200s", status, body)
		}
	}
	t.status[key]++
	if err == nil && status >= 200 && status < 300 {
		t.okMeasured++
		t.hist.RecordValue(max(1, latency.Microseconds()))
		t.all.RecordValue(max(1, latency.Microseconds()))
	} else {
		// A failed request counts as if it had waited the whole timeout: a system cannot improve
		// its percentiles by refusing work.
		t.failed++
		t.all.RecordValue(t.failAt)
	}
	if done.After(t.lastDone) {
		t.lastDone = done
	}
}

// drop counts a measured arrival the open loop did not send (over --max-outstanding): a failure
// at the timeout in the percentiles of every request.
func (t *tally) drop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.all.RecordValue(t.failAt)
}

// Result is the JSON line of one run.
type Result struct {
	System         string             `json:"system"`
	Label          string             `json:"label,omitempty"`
	Mode           string             `json:"mode"`
	Connections    int                `json:"connections,omitempty"`
	OfferedRate    float64            `json:"offered_rate,omitempty"`
	MaxOutstanding int                `json:"max_outstanding,omitempty"`
	DurationS      float64            `json:"duration_s"`
	WarmupS        float64            `json:"warmup_s"`
	ElapsedS       float64            `json:"elapsed_s"`
	Sent           int64              `json:"sent"`
	OK             int64              `json:"ok"`
	DeliveriesPerS float64            `json:"deliveries_per_s"`
	Status         map[string]int64   `json:"status"`
	Drops          int64              `json:"drops"`
	Failed         int64              `json:"failed"`
	DeadLettered   int64              `json:"dead_lettered"`
	FirstError     string             `json:"first_error,omitempty"`
	LatencyMS      map[string]float64 `json:"latency_ms"`
	LatencyMS2xx   map[string]float64 `json:"latency_ms_2xx"`
	FailedAtMS     float64            `json:"failed_at_ms"`
	CPUS           *float64           `json:"cpu_s,omitempty"`
	CPUSPer10k     *float64           `json:"cpu_s_per_10k,omitempty"`
	Procs          int                `json:"procs,omitempty"`
	RSSKBStart     uint64             `json:"rss_kb_start,omitempty"`
	RSSKBEnd       uint64             `json:"rss_kb_end,omitempty"`
	HWMKB          uint64             `json:"hwm_kb,omitempty"`
	BrokerCPUS     *float64           `json:"broker_cpu_s,omitempty"`
	LoadgenCPUS    float64            `json:"loadgen_cpu_s"`
	Check          Check              `json:"check"`
	StartedAt      string             `json:"started_at"`
}

func latencies(h *hdrhistogram.Histogram) map[string]float64 {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	if h.TotalCount() == 0 {
		return map[string]float64{}
	}
	return map[string]float64{
		"p50":  ms(h.ValueAtQuantile(50)),
		"p90":  ms(h.ValueAtQuantile(90)),
		"p99":  ms(h.ValueAtQuantile(99)),
		"p999": ms(h.ValueAtQuantile(99.9)),
		"max":  ms(h.Max()),
		"mean": h.Mean() / 1000,
	}
}

// ---- run -------------------------------------------------------------------------------------

type runConfig struct {
	url, secret, samples, mode, system, label, brokers, checkTopics, out string
	connections, maxOutstanding, pid, brokerPid                          int
	rate                                                                 float64
	duration, warmup, timeout                                            time.Duration
	noCheck                                                              bool
}

func cmdRun(args []string) error {
	var rc runConfig
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	fs.StringVar(&rc.url, "url", "http://127.0.0.1:8080/webhooks/business-processes", "webhook URL (http://127.0.0.1:...)")
	fs.StringVar(&rc.secret, "secret", "", "signing secret (or env LOADGEN_SECRET)")
	fs.StringVar(&rc.samples, "samples", "docs/examples/bp-*.json", "sample bodies, comma-separated globs")
	fs.StringVar(&rc.mode, "mode", "closed", "closed (C connections, sequential) or open (fixed arrival rate)")
	fs.IntVar(&rc.connections, "connections", 64, "closed loop: connections")
	fs.Float64Var(&rc.rate, "rate", 1000, "open loop: arrivals per second")
	fs.IntVar(&rc.maxOutstanding, "max-outstanding", 4096, "open loop: requests in flight at most; arrivals beyond are dropped and counted")
	fs.DurationVar(&rc.duration, "duration", 20*time.Second, "measured phase")
	fs.DurationVar(&rc.warmup, "warmup", 2*time.Second, "unmeasured phase before it (same load)")
	fs.DurationVar(&rc.timeout, "timeout", 10*time.Second, "per request; also the wait for stragglers")
	fs.StringVar(&rc.system, "system", "relay", "system name for the result")
	fs.StringVar(&rc.label, "label", "", "free-form run label")
	fs.StringVar(&rc.brokers, "brokers", "", "Kafka bootstrap servers for the check")
	fs.StringVar(&rc.checkTopics, "check-topics", "", "topics the answers may name, comma-separated")
	fs.BoolVar(&rc.noCheck, "no-check", false, "skip the Kafka check (a system that writes nothing)")
	fs.IntVar(&rc.pid, "pid", 0, "root pid of the system under test, for CPU and memory")
	fs.IntVar(&rc.brokerPid, "broker-pid", 0, "pid of the Kafka broker, for its CPU time")
	fs.StringVar(&rc.out, "out", "", "also append the JSON line to this file")
	fs.Parse(args)
	if rc.secret == "" {
		rc.secret = os.Getenv("LOADGEN_SECRET")
	}
	if rc.secret == "" {
		return errors.New("--secret (or LOADGEN_SECRET) is required")
	}
	u, err := url.Parse(rc.url)
	if err != nil || u.Scheme != "http" {
		return fmt.Errorf("--url must be http://host:port/path, got %q", rc.url)
	}
	if rc.mode != "closed" && rc.mode != "open" {
		return fmt.Errorf("--mode must be closed or open")
	}
	if rc.mode == "open" && rc.rate <= 0 {
		return fmt.Errorf("--rate must be positive")
	}
	if rc.mode == "closed" && rc.connections <= 0 {
		return fmt.Errorf("--connections must be positive")
	}
	templates, err := loadTemplates(rc.samples)
	if err != nil {
		return err
	}
	m := &requestMaker{templates: templates, secret: []byte(rc.secret), host: u.Host, path: u.RequestURI()}
	rand.Read(m.nonce[:])

	topics := []string{}
	for _, t := range strings.Split(rc.checkTopics, ",") {
		if t = strings.TrimSpace(t); t != "" {
			topics = append(topics, t)
		}
	}
	check := !rc.noCheck && rc.brokers != "" && len(topics) > 0
	var hwStart map[string]map[int32]int64
	if check {
		adm, closeFn, err := adminClient(rc.brokers)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		hwStart, err = endOffsets(ctx, adm, topics)
		cancel()
		closeFn()
		if err != nil {
			return fmt.Errorf("high watermarks before the run: %w", err)
		}
	}

	res := Result{System: rc.system, Label: rc.label, Mode: rc.mode, DurationS: rc.duration.Seconds(),
		WarmupS: rc.warmup.Seconds(), StartedAt: time.Now().UTC().Format(time.RFC3339)}
	var procStart, procEnd TreeStats
	var brokerStart, brokerEnd TreeStats
	var loadStart float64
	// Called once at the end of the warm-up, i.e. the start of the measured window.
	markStart := func() {
		if rc.pid > 0 {
			procStart, _ = treeStats(rc.pid)
		}
		if rc.brokerPid > 0 {
			brokerStart, _ = treeStats(rc.brokerPid)
		}
		loadStart = selfCPU()
	}

	if rc.pid > 0 {
		resetPeak(rc.pid) // the peak RSS reported with this run is this run's own
	}
	var tl *tally
	var sent, drops int64
	var measureStart time.Time
	switch rc.mode {
	case "closed":
		res.Connections = rc.connections
		tl, sent, measureStart = closedLoop(m, u.Host, rc, markStart)
	case "open":
		res.OfferedRate = rc.rate
		res.MaxOutstanding = rc.maxOutstanding
		tl, sent, drops, measureStart = openLoop(m, u.Host, rc, markStart)
	}
	// The measured window ends when its last answer arrived (or at its deadline if none did).
	end := tl.lastDone
	if end.Before(measureStart.Add(rc.duration)) {
		end = measureStart.Add(rc.duration)
	}
	if rc.pid > 0 {
		procEnd, err = treeStats(rc.pid)
		if err != nil {
			fmt.Fprintf(os.Stderr, "loadgen run: system under test: %v\n", err)
		}
	}
	if rc.brokerPid > 0 {
		brokerEnd, _ = treeStats(rc.brokerPid)
	}
	res.LoadgenCPUS = selfCPU() - loadStart

	res.ElapsedS = end.Sub(measureStart).Seconds()
	res.Sent = sent
	res.OK = tl.okMeasured
	res.DeliveriesPerS = float64(tl.okMeasured) / res.ElapsedS
	res.Status = tl.status
	res.Drops = drops
	res.DeadLettered = tl.deadLetter
	res.FirstError = tl.firstErr
	// latency_ms: every measured arrival, each failure (non-2xx, transport error, drop) at the
	// timeout; latency_ms_2xx: the 2xx answers alone.
	res.Failed = tl.failed
	res.LatencyMS = latencies(tl.all)
	res.LatencyMS2xx = latencies(tl.hist)
	res.FailedAtMS = float64(tl.failAt) / 1000
	if rc.pid > 0 && procEnd.Procs > 0 {
		cpu := procEnd.CPUS - procStart.CPUS
		res.CPUS = &cpu
		if tl.okMeasured > 0 {
			per := cpu / float64(tl.okMeasured) * 10000
			res.CPUSPer10k = &per
		}
		res.Procs = procEnd.Procs
		res.RSSKBStart = procStart.RSSKB
		res.RSSKBEnd = procEnd.RSSKB
		res.HWMKB = procEnd.HWMKB
	}
	if rc.brokerPid > 0 && brokerEnd.Procs > 0 {
		b := brokerEnd.CPUS - brokerStart.CPUS
		res.BrokerCPUS = &b
	}

	if check {
		adm, closeFn, err := adminClient(rc.brokers)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		hwEnd, err := endOffsets(ctx, adm, topics)
		cancel()
		closeFn()
		if err != nil {
			res.Check = Check{Done: true, Problems: []string{"high watermarks after the run: " + err.Error()}}
		} else {
			res.Check = verify(tl.acked, tl.okAll, tl.missingPos, hwStart, hwEnd, topics)
		}
	} else {
		res.Check = Check{SkippedReason: "no check requested (--no-check, or no --brokers/--check-topics)"}
		if tl.missingPos > 0 {
			res.Check.Problems = []string{fmt.Sprintf("%d 2xx answers named no topic/partition/offset", tl.missingPos)}
		}
	}
	if err := printJSON(res); err != nil {
		return err
	}
	if rc.out != "" {
		f, err := os.OpenFile(rc.out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		line, _ := json.Marshal(res)
		f.Write(append(line, '\n'))
	}
	return nil
}

// closedLoop: C workers, each on its own keep-alive connection, send one request after another
// until the deadline. Requests sent during the warm-up are not measured (but are checked).
func closedLoop(m *requestMaker, addr string, rc runConfig, markStart func()) (*tally, int64, time.Time) {
	begin := time.Now()
	measureStart := begin.Add(rc.warmup)
	stop := measureStart.Add(rc.duration)
	marker := time.AfterFunc(rc.warmup, markStart)
	defer marker.Stop()
	var sent atomic.Int64
	tl := newTally(rc.timeout)
	var wg sync.WaitGroup
	for range rc.connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *conn
			for {
				now := time.Now()
				if !now.Before(stop) {
					break
				}
				measured := !now.Before(measureStart)
				if c == nil {
					var err error
					if c, err = dial(addr, rc.timeout); err != nil {
						tl.record(measured, 0, nil, err, 0, time.Now())
						time.Sleep(10 * time.Millisecond) // a refused dial returns at once
						continue
					}
				}
				if measured {
					sent.Add(1)
				}
				status, body, keep, err := c.do(m, rc.timeout)
				done := time.Now()
				tl.record(measured, status, body, err, done.Sub(now), done)
				if !keep {
					c.c.Close()
					c = nil
				}
			}
			if c != nil {
				c.c.Close()
			}
		}()
	}
	wg.Wait()
	if time.Now().Before(measureStart) { // a run shorter than its warm-up: measure nothing
		markStart()
	}
	return tl, sent.Load(), measureStart
}

// openLoop: arrival i is due at begin + i/rate and is sent then, whether or not earlier requests
// have been answered; its latency counts from that scheduled time (no coordinated omission). At
// most maxOutstanding requests are in flight; an arrival beyond that is dropped and counted.
func openLoop(m *requestMaker, addr string, rc runConfig, markStart func()) (*tally, int64, int64, time.Time) {
	tl := newTally(rc.timeout)
	begin := time.Now()
	measureStart := begin.Add(rc.warmup)
	stop := measureStart.Add(rc.duration)
	marker := time.AfterFunc(rc.warmup, markStart)
	defer marker.Stop()
	interval := time.Duration(float64(time.Second) / rc.rate)
	idle := make(chan *conn, rc.maxOutstanding)
	var outstanding atomic.Int64
	var sent, drops int64
	var wg sync.WaitGroup

	send := func(due time.Time, measured bool) {
		defer wg.Done()
		defer outstanding.Add(-1)
		var c *conn
		reused := false
		select {
		case c = <-idle:
			reused = true
		default:
			var err error
			if c, err = dial(addr, rc.timeout); err != nil {
				tl.record(measured, 0, nil, err, 0, time.Now())
				return
			}
		}
		status, body, keep, err := c.do(m, rc.timeout)
		var netErr net.Error
		if err != nil && reused && !(errors.As(err, &netErr) && netErr.Timeout()) {
			// An idle kept-alive connection the server closed meanwhile: one retry on a fresh one.
			c.c.Close()
			if c, err = dial(addr, rc.timeout); err == nil {
				status, body, keep, err = c.do(m, rc.timeout)
			}
		}
		done := time.Now()
		tl.record(measured, status, body, err, done.Sub(due), done)
		if c != nil {
			if keep && err == nil {
				idle <- c // never blocks: at most maxOutstanding connections exist
			} else {
				c.c.Close()
			}
		}
	}

	for i := int64(0); ; i++ {
		due := begin.Add(time.Duration(i) * interval)
		if !due.Before(stop) {
			break
		}
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		measured := !due.Before(measureStart)
		if outstanding.Load() >= int64(rc.maxOutstanding) {
			if measured {
				drops++
				tl.drop()
			}
			continue
		}
		if measured {
			sent++
		}
		outstanding.Add(1)
		wg.Add(1)
		go send(due, measured)
	}
	wg.Wait()
	close(idle)
	for c := range idle {
		c.c.Close()
	}
	if time.Now().Before(measureStart) {
		markStart()
	}
	return tl, sent, drops, measureStart
}
