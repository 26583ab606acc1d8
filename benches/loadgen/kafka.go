package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func adminClient(brokers string) (*kadm.Client, func(), error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.RequestTimeoutOverhead(5*time.Second))
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl.Close, nil
}

// cmdTopics creates fresh topics (an existing one is an error unless --exist-ok) and waits until
// every partition of each has a leader, so the first produce does not race the creation.
func cmdTopics(args []string) error {
	fs := flag.NewFlagSet("topics", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:19092", "bootstrap servers")
	partitions := fs.Int("partitions", 6, "partitions per topic")
	replication := fs.Int("replication-factor", 1, "replication factor")
	existOK := fs.Bool("exist-ok", false, "accept topics that already exist")
	timeout := fs.Duration("timeout", 60*time.Second, "overall deadline")
	fs.Parse(args)
	topics := fs.Args()
	if len(topics) == 0 {
		return errors.New("name at least one topic")
	}
	adm, closeFn, err := adminClient(*brokers)
	if err != nil {
		return err
	}
	defer closeFn()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	resp, err := adm.CreateTopics(ctx, int32(*partitions), int16(*replication), nil, topics...)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for _, r := range resp {
		if r.Err != nil && !(*existOK && errors.Is(r.Err, kerr.TopicAlreadyExists)) {
			return fmt.Errorf("create topic %s: %v %s", r.Topic, r.Err, r.ErrMessage)
		}
	}
	for {
		md, err := adm.Metadata(ctx, topics...)
		if err == nil && allLed(md.Topics, topics, *partitions) {
			fmt.Fprintf(os.Stderr, "loadgen topics: %s ready (%d partitions each)\n", strings.Join(topics, ", "), *partitions)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topics %v have no leader for every partition after %s (last error: %v)", topics, *timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func allLed(details kadm.TopicDetails, topics []string, partitions int) bool {
	for _, t := range topics {
		d, ok := details[t]
		if !ok || d.Err != nil || len(d.Partitions) != partitions {
			return false
		}
		for _, p := range d.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false
			}
		}
	}
	return true
}

// endOffsets lists the high watermark of every partition of the topics. A topic created a moment
// ago may still answer "not leader": it asks again every 200 ms until ctx ends.
func endOffsets(ctx context.Context, adm *kadm.Client, topics []string) (map[string]map[int32]int64, error) {
	for {
		out, err := endOffsetsOnce(ctx, adm, topics)
		if err == nil {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func endOffsetsOnce(ctx context.Context, adm *kadm.Client, topics []string) (map[string]map[int32]int64, error) {
	listed, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	out := map[string]map[int32]int64{}
	for _, t := range topics {
		ps, ok := listed[t]
		if !ok || len(ps) == 0 {
			return nil, fmt.Errorf("topic %s: no partitions listed", t)
		}
		out[t] = map[int32]int64{}
		for p, o := range ps {
			if o.Err != nil {
				return nil, fmt.Errorf("topic %s partition %d: %w", t, p, o.Err)
			}
			out[t][p] = o.Offset
		}
	}
	return out, nil
}

// Check is the "every 2xx is in Kafka" verdict of one run.
type Check struct {
	Done          bool     `json:"done"`
	OK            bool     `json:"ok"`
	Acked         int64    `json:"acked_2xx"`          // every 2xx answer of the run, warm-up included
	Distinct      int64    `json:"distinct_positions"` // distinct (topic, partition, offset) named by them
	RecordsAdded  int64    `json:"records_added"`      // sum of high-watermark growth over the run
	BelowHW       bool     `json:"all_below_high_watermark"`
	Topics        []string `json:"topics"`
	Problems      []string `json:"problems,omitempty"`
	SkippedReason string   `json:"skipped_reason,omitempty"`
}

// verify compares the acknowledged positions of a run with the topics' high watermarks before
// (start) and after (end) the run: every position must lie in [start, end) of its partition, the
// positions must be distinct (one per 2xx), and the topics must have grown by at least the 2xx
// count.
func verify(acked map[string]map[int32][]int64, okCount, missingPos int64, start, end map[string]map[int32]int64, topics []string) Check {
	c := Check{Done: true, Acked: okCount, BelowHW: true, Topics: topics}
	problem := func(format string, args ...any) {
		if len(c.Problems) < 20 {
			c.Problems = append(c.Problems, fmt.Sprintf(format, args...))
		}
	}
	if missingPos > 0 {
		problem("%d 2xx answers named no topic/partition/offset", missingPos)
	}
	for t, parts := range acked {
		if _, ok := end[t]; !ok {
			problem("%d answers name topic %q, which is not a checked topic", countAll(parts), t)
			continue
		}
		for p, offs := range parts {
			hwEnd, ok := end[t][p]
			if !ok {
				problem("answers name partition %s/%d, which does not exist", t, p)
				continue
			}
			hwStart := start[t][p]
			slices.Sort(offs)
			offs = slices.Compact(offs)
			c.Distinct += int64(len(offs))
			if offs[0] < hwStart {
				problem("%s/%d: acknowledged offset %d is below the high watermark %d before the run", t, p, offs[0], hwStart)
			}
			if last := offs[len(offs)-1]; last >= hwEnd {
				c.BelowHW = false
				problem("%s/%d: acknowledged offset %d is not below the high watermark %d", t, p, last, hwEnd)
			}
		}
	}
	for _, t := range topics {
		for p, hw := range end[t] {
			c.RecordsAdded += hw - start[t][p]
		}
	}
	if c.Distinct != okCount {
		problem("%d 2xx answers but %d distinct (partition, offset) positions", okCount, c.Distinct)
	}
	if c.RecordsAdded < okCount {
		problem("%d 2xx answers but the topics grew by only %d records", okCount, c.RecordsAdded)
	}
	c.OK = len(c.Problems) == 0
	return c
}

func countAll(parts map[int32][]int64) int {
	n := 0
	for _, o := range parts {
		n += len(o)
	}
	return n
}

// cmdWarmBroker produces 1 KiB records with the relays' settings (acks=all, idempotent, lz4,
// linger 5 ms) as fast as 256 in flight allow, for --duration: the broker's JIT then has compiled
// its produce path before the first system is measured, so the order of the systems matters less.
func cmdWarmBroker(args []string) error {
	fs := flag.NewFlagSet("warm-broker", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:19092", "bootstrap servers")
	topic := fs.String("topic", "", "topic to write to (it must exist)")
	duration := fs.Duration("duration", 10*time.Second, "how long")
	fs.Parse(args)
	if *topic == "" {
		return errors.New("--topic is required")
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(*brokers, ",")...),
		kgo.DefaultProduceTopic(*topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.RecordDeliveryTimeout(10*time.Second),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	value := make([]byte, 1024)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	sem := make(chan struct{}, 256)
	var produced, failed atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(*duration)
	for i := 0; time.Now().Before(stop); i++ {
		sem <- struct{}{}
		rec := &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: value}
		cl.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			} else {
				produced.Add(1)
			}
			<-sem
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "loadgen warm-broker: %d records in %s (%d failed)\n", produced.Load(), *duration, failed.Load())
	if produced.Load() == 0 {
		return fmt.Errorf("no record was acknowledged: %v", firstErr.Load())
	}
	return nil
}
