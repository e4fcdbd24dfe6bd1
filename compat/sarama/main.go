// A sarama (Debian's 1.22) consumer group member for the old-client tests: it joins the
// group, prints each record it is given as a JSON line, marks it consumed, and once it has
// printed -records records (or seen none for -idle), commits and leaves.
//
//	sarama-member -brokers 127.0.0.1:9092 -version 2.0.0 -group g -topic t -records 10
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

type member struct {
	wanted int
	mu     sync.Mutex
	seen   int
	done   context.CancelFunc
	last   time.Time
}

func (m *member) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (m *member) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (m *member) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for msg := range claim.Messages() {
		m.mu.Lock()
		if m.seen >= m.wanted {
			m.mu.Unlock()
			return nil
		}
		m.seen++
		m.last = time.Now()
		line, _ := json.Marshal(map[string]interface{}{
			"partition": msg.Partition, "offset": msg.Offset, "value": string(msg.Value),
		})
		fmt.Println(string(line))
		session.MarkMessage(msg, "")
		if m.seen >= m.wanted {
			m.done()
		}
		m.mu.Unlock()
	}
	return nil
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "bootstrap brokers, comma-separated")
	version := flag.String("version", "2.0.0", "the Kafka version sarama is configured for")
	group := flag.String("group", "", "group id")
	topic := flag.String("topic", "", "topic")
	records := flag.Int("records", 1, "records to consume before leaving")
	idle := flag.Duration("idle", 60*time.Second, "leave after this long without a record")
	flag.Parse()

	kafkaVersion, err := sarama.ParseKafkaVersion(*version)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	config := sarama.NewConfig()
	config.Version = kafkaVersion
	config.ClientID = "sarama-member"
	config.Consumer.Offsets.Initial = sarama.OffsetOldest
	config.Consumer.Offsets.CommitInterval = 100 * time.Millisecond
	config.Consumer.Return.Errors = false

	client, err := sarama.NewClient(strings.Split(*brokers, ","), config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
	consumerGroup, err := sarama.NewConsumerGroupFromClient(*group, client)
	if err != nil {
		fmt.Fprintln(os.Stderr, "group:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{wanted: *records, done: cancel, last: time.Now()}
	go func() {
		for ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
			m.mu.Lock()
			quiet := time.Since(m.last) > *idle
			m.mu.Unlock()
			if quiet {
				fmt.Fprintln(os.Stderr, "no record for", *idle)
				cancel()
			}
		}
	}()
	for ctx.Err() == nil {
		if err := consumerGroup.Consume(ctx, []string{*topic}, m); err != nil {
			fmt.Fprintln(os.Stderr, "consume:", err)
			os.Exit(1)
		}
	}
	// Closing the group commits what was marked, then leaves it.
	if err := consumerGroup.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		os.Exit(1)
	}
	client.Close()
}
