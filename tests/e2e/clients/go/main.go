// End-to-end check of a Kafka endpoint (normally kgate) with franz-go (kgo/kadm).
//
// Usage: kgate-franz <bootstrap> <topic> <group> <records> <compression>
//
//	compression: none | lz4 | zstd | gzip | snappy
//
// The same scenario as clients/java/KgateE2E.java, and the same JSON line on
// stdout (see tests/e2e/scenarios.py run_external):
//  1. create <topic> with 3 partitions, read the cluster's metadata;
//  2. produce <records> keyed records, idempotent (franz-go's default), acks=all;
//  3. consume them in group <group>, committing offsets; check exactly once and
//     in order against the offsets the producer was given;
//  4. leave the group, produce 50 more, and check a new member of the group
//     gets exactly those 50;
//  5. report every broker address the client was told about or dialed.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	partitions    = 3
	keys          = 12
	resumeRecords = 50
)

type sent struct {
	key       string
	seq       int
	partition int32
	offset    int64
}

type phase struct {
	consumed, duplicates, missing, unexpected, foreign, offsetMismatch int
	orderOK                                                            bool
}

var (
	mu        sync.Mutex
	brokers   = map[string]bool{}
	connected = map[string]bool{}
	errs      []string
	out       = map[string]any{}
)

type dialHook struct{}

// OnBrokerConnect records every address franz-go dialed (seeds included).
func (dialHook) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		return
	}
	mu.Lock()
	connected[net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))] = true
	mu.Unlock()
}

func addBroker(host string, port int32) {
	mu.Lock()
	brokers[net.JoinHostPort(host, strconv.Itoa(int(port)))] = true
	mu.Unlock()
}

func fail(format string, a ...any) {
	mu.Lock()
	errs = append(errs, fmt.Sprintf(format, a...))
	mu.Unlock()
}

func codec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("unknown compression %q", name)
}

func main() {
	if len(os.Args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: kgate-franz <bootstrap> <topic> <group> <records> <compression>")
		os.Exit(2)
	}
	bootstrap, topic, group := os.Args[1], os.Args[2], os.Args[3]
	records, err := strconv.Atoi(os.Args[4])
	if err != nil {
		fmt.Fprintln(os.Stderr, "records must be an integer")
		os.Exit(2)
	}
	comp, err := codec(os.Args[5])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out["client"] = "franz-go"
	out["topic"], out["group"], out["compression"] = topic, group, os.Args[5]
	out["produced"], out["consumed"], out["resumed_consumed"] = 0, 0, 0
	out["duplicates"], out["missing"] = 0, records
	out["order_ok"], out["resumed_ok"] = false, false

	done := make(chan bool, 1)
	go func() { done <- run(strings.Split(bootstrap, ","), topic, group, records, comp) }()
	var ok bool
	select {
	case ok = <-done:
	case <-time.After(200 * time.Second):
		fail("watchdog: run exceeded 200 s")
	}
	finish(ok)
	if !ok {
		os.Exit(1)
	}
}

func finish(ok bool) {
	mu.Lock()
	defer mu.Unlock()
	list := func(m map[string]bool) []string {
		l := make([]string, 0, len(m))
		for k := range m {
			l = append(l, k)
		}
		sort.Strings(l)
		return l
	}
	out["brokers"] = list(brokers)
	out["connected"] = list(connected)
	out["ok"] = ok && len(errs) == 0
	if !ok || len(errs) > 0 {
		if len(errs) == 0 {
			errs = append(errs, "failed")
		}
		n := len(errs)
		if n > 10 {
			n = 10
		}
		out["error"] = strings.Join(errs[:n], "; ")
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}

func ms(t time.Time) int64 { return time.Since(t).Milliseconds() }

func run(seeds []string, topic, group string, records int, comp kgo.CompressionCodec) bool {
	ctx := context.Background()
	base := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.WithHooks(dialHook{}),
		kgo.RequestTimeoutOverhead(10 * time.Second),
		kgo.RetryTimeout(45 * time.Second),
	}
	t0 := time.Now()
	admCl, err := kgo.NewClient(append(base, kgo.ClientID("kgate-e2e-franz-admin"))...)
	if err != nil {
		fail("admin client: %v", err)
		return false
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)

	// ---- 1. topic and cluster
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	resp, err := adm.CreateTopics(cctx, partitions, 1, nil, topic)
	cancel()
	if err != nil {
		fail("create topic: %v", err)
		return false
	}
	if r := resp[topic]; r.Err != nil && !strings.Contains(r.Err.Error(), "TOPIC_ALREADY_EXISTS") {
		fail("create topic: %v", r.Err)
		return false
	}
	var md kadm.Metadata
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		md, err = adm.Metadata(cctx, topic)
		cancel()
		if err == nil {
			t := md.Topics[topic]
			ready := t.Err == nil && len(t.Partitions) == partitions
			for _, p := range t.Partitions {
				if p.Leader < 0 {
					ready = false
				}
			}
			if ready {
				break
			}
		}
		if time.Now().After(deadline) {
			fail("topic %s not ready: %v", topic, err)
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	out["partitions"] = len(md.Topics[topic].Partitions)
	nodes := []string{}
	for _, b := range md.Brokers {
		addBroker(b.Host, b.Port)
		nodes = append(nodes, fmt.Sprintf("%d@%s", b.NodeID, net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))))
		if b.NodeID == md.Controller {
			out["controller"] = net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
			out["controller_id"] = b.NodeID
		}
	}
	sort.Strings(nodes)
	out["cluster_nodes"] = nodes
	out["setup_ms"] = ms(t0)

	// ---- 2. produce
	prod, err := kgo.NewClient(append(base,
		kgo.ClientID("kgate-e2e-franz-producer"),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(comp),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.DefaultProduceTopic(topic),
	)...)
	if err != nil {
		fail("producer: %v", err)
		return false
	}
	defer prod.Close()
	runID := fmt.Sprintf("%08x", time.Now().UnixNano()&0xffffffff)
	out["run_id"] = runID
	nextSeq := make([]int, keys)
	produce := func(first, n int, into map[string]*sent) bool {
		recs := make([]*kgo.Record, 0, n)
		bySent := make(map[*kgo.Record]*sent, n)
		for i := 0; i < n; i++ {
			index := first + i
			k := index % keys
			s := &sent{key: fmt.Sprintf("k%02d", k), seq: nextSeq[k]}
			nextSeq[k]++
			into[fmt.Sprintf("%s|%d", s.key, s.seq)] = s
			rec := &kgo.Record{Key: []byte(s.key), Value: []byte(fmt.Sprintf("%s|%s|%d|%d", runID, s.key, s.seq, index))}
			bySent[rec] = s
			recs = append(recs, rec)
		}
		pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		res := prod.ProduceSync(pctx, recs...)
		// ProduceSync lists results in completion order: match them by record.
		for _, r := range res {
			if r.Err != nil {
				fail("produce: %v", r.Err)
				return false
			}
			s := bySent[r.Record]
			if s == nil {
				fail("produce: a result for a record that was not sent")
				return false
			}
			s.partition, s.offset = r.Record.Partition, r.Record.Offset
		}
		if len(res) != n {
			fail("produce: %d results for %d records", len(res), n)
			return false
		}
		return true
	}
	phase1 := map[string]*sent{}
	t0 = time.Now()
	if !produce(0, records, phase1) {
		return false
	}
	out["produced"] = len(phase1)
	out["produce_ms"] = ms(t0)

	// ---- 3. consume phase 1
	t0 = time.Now()
	p1, committed1 := consume(base, topic, group, runID, phase1, nil, "c1")
	out["consumed"], out["duplicates"], out["missing"] = p1.consumed, p1.duplicates, p1.missing
	out["unexpected"], out["foreign"], out["offset_mismatch"] = p1.unexpected, p1.foreign, p1.offsetMismatch
	out["order_ok"] = p1.orderOK
	out["consume_ms"] = ms(t0)
	_ = committed1

	// ---- 4. resume
	t0 = time.Now()
	phase2 := map[string]*sent{}
	if !produce(records, resumeRecords, phase2) {
		return false
	}
	out["produced"] = len(phase1) + len(phase2)
	p2, committed2 := consume(base, topic, group, runID, phase2, phase1, "c2")
	out["resumed_consumed"] = p2.consumed
	resumedOK := p2.consumed == resumeRecords && p2.duplicates == 0 && p2.missing == 0 && p2.unexpected == 0 &&
		p2.orderOK && p2.offsetMismatch == 0
	out["resumed_ok"] = resumedOK
	out["resume_ms"] = ms(t0)
	out["committed"] = committed2

	// ---- 5. coordinator
	cctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	dg, err := adm.DescribeGroups(cctx, group)
	cancel()
	if err != nil {
		fail("describe group: %v", err)
	} else if g, ok := dg[group]; ok {
		c := g.Coordinator
		out["coordinator"] = net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
		out["coordinator_id"] = c.NodeID
		addBroker(c.Host, c.Port)
		out["group_state"] = g.State
	}
	return p1.duplicates == 0 && p1.missing == 0 && p1.unexpected == 0 && p1.orderOK && p1.offsetMismatch == 0 && resumedOK
}

// consume joins the group with a fresh client, reads until every expected
// record was seen, commits, leaves, and returns the check and the committed
// offsets (read back with an OffsetFetch).
func consume(base []kgo.Opt, topic, group, runID string, expected, forbidden map[string]*sent, tag string) (phase, map[string]int64) {
	ph := phase{orderOK: true}
	ctx := context.Background()
	cl, err := kgo.NewClient(append(base,
		kgo.ClientID("kgate-e2e-franz-"+tag),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(6*time.Second),
		kgo.HeartbeatInterval(time.Second),
		kgo.FetchMaxWait(500*time.Millisecond),
	)...)
	if err != nil {
		fail("%s: consumer: %v", tag, err)
		ph.missing = len(expected)
		return ph, nil
	}
	seen := map[string]int{}
	lastOffset := map[int32]int64{}
	lastSeq := map[string]int{}
	keyPart := map[string]int32{}
	deadline := time.Now().Add(60 * time.Second)
	for len(seen) < len(expected) && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		for _, fe := range fs.Errors() {
			if fe.Err != context.DeadlineExceeded {
				fail("%s: fetch %s/%d: %v", tag, fe.Topic, fe.Partition, fe.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) {
			parts := strings.Split(string(r.Value), "|")
			if len(parts) != 4 || parts[0] != runID {
				ph.foreign++
				return
			}
			key := parts[1]
			seq, _ := strconv.Atoi(parts[2])
			id := key + "|" + parts[2]
			ph.consumed++
			if string(r.Key) != key {
				ph.orderOK = false
			}
			if lo, ok := lastOffset[r.Partition]; ok && r.Offset <= lo {
				ph.orderOK = false
				fail("%s: partition %d offset went %d -> %d", tag, r.Partition, lo, r.Offset)
			}
			lastOffset[r.Partition] = r.Offset
			if kp, ok := keyPart[key]; ok && kp != r.Partition {
				ph.orderOK = false
			}
			keyPart[key] = r.Partition
			if ls, ok := lastSeq[key]; ok && seq <= ls {
				ph.orderOK = false
			}
			lastSeq[key] = seq
			if _, old := forbidden[id]; old {
				ph.unexpected++
				return
			}
			s, ok := expected[id]
			if !ok {
				ph.unexpected++
				return
			}
			if s.partition != r.Partition || s.offset != r.Offset {
				ph.offsetMismatch++
			}
			seen[id]++
			if seen[id] > 1 {
				ph.duplicates++
			}
		})
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			fail("%s: commit: %v", tag, err)
		}
	}
	ph.missing = len(expected) - len(seen)
	if ph.missing > 0 {
		fail("%s: %d of %d records never arrived", tag, ph.missing, len(expected))
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		fail("%s: final commit: %v", tag, err)
	}
	committed := map[string]int64{}
	adm := kadm.NewClient(cl)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	offs, err := adm.FetchOffsets(cctx, group)
	cancel()
	if err != nil {
		fail("%s: fetch offsets: %v", tag, err)
	} else {
		for p := int32(0); p < partitions; p++ {
			if o, ok := offs.Lookup(topic, p); ok {
				committed[strconv.Itoa(int(p))] = o.At
			}
		}
	}
	cctx, cancel = context.WithTimeout(ctx, 15*time.Second)
	if md, err := adm.Metadata(cctx, topic); err == nil {
		for _, b := range md.Brokers {
			addBroker(b.Host, b.Port)
		}
	}
	cancel()
	cl.LeaveGroup()
	cl.Close()
	return ph, committed
}
