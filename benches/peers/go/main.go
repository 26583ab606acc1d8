// A hand-written Authvia webhook relay in Go, the peer bp-relay is benchmarked against:
// net/http + franz-go, acks=all, idempotent, lz4, linger 5 ms, murmur2 (Java-compatible) keys.
// It answers 200 {"topic","partition","offset"} only after the broker acknowledged the record.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "HTTP listen address")
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka bootstrap servers, comma-separated")
	topic := flag.String("topic", "authvia.business-processes", "business-process topic")
	flag.Parse()
	secret := []byte(os.Getenv("SIGNING_SECRET"))
	if len(secret) == 0 {
		log.Fatal("SIGNING_SECRET is not set")
	}

	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(*brokers, ",")...),
		kgo.DefaultProduceTopic(*topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent writes are franz-go's default with acks=all
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // murmur2 of the key, like Java
		kgo.RecordDeliveryTimeout(4*time.Second),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	http.HandleFunc("POST /webhooks/business-processes", func(w http.ResponseWriter, r *http.Request) {
		if !verify(r.Header, secret, time.Now()) {
			http.Error(w, `{"code":"signature_mismatch"}`, http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, `{"code":"bad_body"}`, http.StatusBadRequest)
			return
		}
		var doc struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(body, &doc) != nil || doc.ID == "" {
			http.Error(w, `{"code":"invalid_body"}`, http.StatusBadRequest)
			return
		}
		record, err := client.ProduceSync(r.Context(), &kgo.Record{Key: []byte(doc.ID), Value: body}).First()
		if err != nil {
			log.Printf("produce failed: %v", err)
			w.Header().Set("Retry-After", "5")
			http.Error(w, `{"code":"kafka_unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"topic": record.Topic, "partition": record.Partition, "offset": record.Offset})
	})
	log.Printf("listening on %s, producing to %s on %s", *listen, *topic, *brokers)
	log.Fatal(http.ListenAndServe(*listen, nil))
}

// verify checks X-AUTHVIA-SIGNATURE = base64(HMAC-SHA256(secret, VALUE.len(VALUE).TIMESTAMP))
// with a timestamp no more than 5 minutes from now.
func verify(h http.Header, secret []byte, now time.Time) bool {
	value, timestamp := h.Get("X-AUTHVIA-VALUE"), h.Get("X-AUTHVIA-TIMESTAMP")
	if h.Get("X-AUTHVIA-ALGORITHM") != "SHA-256" || value == "" {
		return false
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || now.Sub(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		return false
	}
	got, err := base64.StdEncoding.DecodeString(h.Get("X-AUTHVIA-SIGNATURE"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(value + "." + strconv.Itoa(len(value)) + "." + timestamp))
	return hmac.Equal(got, mac.Sum(nil))
}
