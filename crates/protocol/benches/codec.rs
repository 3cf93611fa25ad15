//! Codec benchmark: krab-protocol side by side with the `kafka-protocol` crate, same inputs, same
//! criterion run.
//!
//! Groups are named `<workload>/<variant>/<library>` so the two libraries sit next to each
//! other in the report:
//!
//! - `record_batch_encode/{none,lz4}`: one v2 batch of 10,000 records (8-byte keys, 100-byte
//!   values, no headers) into a fresh buffer. `krab` is [`RecordBatch::encode`] from prebuilt
//!   records (the same shape `kafka-protocol` takes), `krab-appender` is [`RecordBatchEncoder`]
//!   fed record by record (the producer's path). For lz4, `kafka-protocol` is its built-in codec
//!   (the C liblz4 frame encoder at level 4, which is LZ4HC); `kafka-protocol+lz4_flex` plugs
//!   the same codec krab uses (lz4_flex, fast mode, 64 KiB independent blocks) into its
//!   compression closure, so that line compares the record framing alone.
//! - `record_batch_decode/{none,lz4}`: both libraries decode the bytes krab produced, made once
//!   outside the timing loop.
//! - `metadata_response/{encode,decode}`: a Metadata response v12 with 3 brokers and 10 topics
//!   x 100 partitions (replicas and ISR of 3). Encode includes the size computation a framer
//!   needs (`encoded_len` / `compute_size`) and a fresh buffer of that size.
//!
//! Setup asserts that both libraries read back what was written (record count, a sample
//! record) and that each one decodes the other's bytes, so the numbers cannot come from a
//! broken path.
//!
//! Run: `cargo bench -p krab-protocol --bench codec -- --warm-up-time 2 --measurement-time 5`.
//!
//! On a shared machine (a fuzzer or builds on the other cores) wall time counts the time the
//! bench spends preempted. `KRAB_BENCH_CPU_TIME=1` measures the bench thread's on-CPU time
//! instead (`/proc/thread-self/schedstat`, Linux only), with flat sampling so every sample is
//! long next to the scheduler tick that clock advances by: e.g.
//! `KRAB_BENCH_CPU_TIME=1 cargo bench -p krab-protocol --bench codec -- --sample-size 20
//! --measurement-time 10`.

use std::hint::black_box;
use std::io::Write as _;

use bytes::{BufMut as _, Bytes, BytesMut};
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, SamplingMode, Throughput, criterion_main};

use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::metadata_response as kpm;
use kafka_protocol::protocol::{Decodable as _, Encodable as _, StrBytes};
use kafka_protocol::records as kpr;

use krab_protocol::Message as _;
use krab_protocol::messages::metadata as krm;
use krab_protocol::records::{Compression, Record, RecordBatch, RecordBatchEncoder, decode_batches};
use krab_protocol::{Uuid, records};

const RECORDS: usize = 10_000;
const KEY_LEN: usize = 8;
const VALUE_LEN: usize = 100;
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;
/// The record checked after every decode in the setup.
const SAMPLE: usize = 4_321;

const METADATA_VERSION: i16 = 12;
const BROKERS: i32 = 3;
const TOPICS: usize = 10;
const PARTITIONS_PER_TOPIC: i32 = 100;

// ---------------------------------------------------------------------------------------------
// Inputs

/// Record `i`: timestamp, 8-byte key, 100-byte value. Values look like small JSON events so
/// lz4 has something realistic to work with (repetitive structure, varying digits).
fn record_parts(i: usize) -> (i64, Bytes, Bytes) {
    let key = format!("key{i:05}");
    assert_eq!(key.len(), KEY_LEN);
    let mut value = format!(
        r#"{{"id":{i},"user":"user-{:04}","event":"page_view","ts":{},"score":{}}}"#,
        (i * 7919) % 10_000,
        BASE_TIMESTAMP + i as i64,
        (i * 2_654_435_761) % 1_000_003,
    );
    while value.len() < VALUE_LEN {
        value.push(b"abcdefghijklmnopqrstuvwxyz"[(i + value.len()) % 26] as char);
    }
    value.truncate(VALUE_LEN);
    (BASE_TIMESTAMP + i as i64, Bytes::from(key), Bytes::from(value))
}

struct Inputs {
    krab: Vec<Record>,
    kp: Vec<kpr::Record>,
}

fn inputs() -> Inputs {
    let mut krab = Vec::with_capacity(RECORDS);
    let mut kp = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let (timestamp, key, value) = record_parts(i);
        krab.push(Record::new(i as i64, timestamp, Some(key.clone()), Some(value.clone())));
        kp.push(kpr::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: kpr::NO_PARTITION_LEADER_EPOCH,
            producer_id: kpr::NO_PRODUCER_ID,
            producer_epoch: kpr::NO_PRODUCER_EPOCH,
            timestamp_type: kpr::TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol cuts a batch wherever `offset - sequence` changes; -1 + offset keeps
            // one batch and writes baseSequence -1, the same header krab writes.
            sequence: (i as i32).wrapping_sub(1),
            timestamp,
            key: Some(key),
            value: Some(value),
            headers: Default::default(),
        });
    }
    Inputs { krab, kp }
}

fn krab_batch(records: &[Record], compression: Compression) -> RecordBatch {
    let mut batch = RecordBatch::new(records.to_vec());
    batch.compression = compression;
    batch
}

fn kp_compression(compression: Compression) -> kpr::Compression {
    match compression {
        Compression::None => kpr::Compression::None,
        Compression::Lz4 => kpr::Compression::Lz4,
        other => unreachable!("not benchmarked: {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Encoders and decoders under test

fn krab_encode(batch: &RecordBatch) -> Bytes {
    let mut out = BytesMut::new();
    batch.encode(&mut out).expect("krab encode");
    out.freeze()
}

fn krab_append(records: &[Record], compression: Compression) -> Bytes {
    let mut enc = RecordBatchEncoder::new(compression);
    for r in records {
        enc.append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &r.headers).expect("krab append");
    }
    enc.finish().expect("krab finish")
}

fn kp_encode(records: &[kpr::Record], compression: Compression) -> Bytes {
    let mut out = BytesMut::new();
    let options = kpr::RecordEncodeOptions { version: 2, compression: kp_compression(compression) };
    kpr::RecordBatchEncoder::encode(&mut out, records, &options).expect("kafka-protocol encode");
    out.freeze()
}

/// kafka-protocol's record encoding with lz4_flex (krab's codec, fast mode) as the compressor.
fn kp_encode_lz4_flex(records: &[kpr::Record]) -> Bytes {
    let mut out = BytesMut::new();
    let options = kpr::RecordEncodeOptions { version: 2, compression: kpr::Compression::Lz4 };
    // The return type (anyhow's Result) is inferred from the closure bound.
    let compressor = |plain: &mut BytesMut, out: &mut BytesMut, _: kpr::Compression| {
        let info = lz4_flex::frame::FrameInfo::new()
            .block_size(lz4_flex::frame::BlockSize::Max64KB)
            .block_mode(lz4_flex::frame::BlockMode::Independent);
        let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, out.writer());
        enc.write_all(plain)?;
        enc.finish()?;
        Ok(())
    };
    kpr::RecordBatchEncoder::encode_with_custom_compression(&mut out, records, &options, Some(compressor))
        .expect("kafka-protocol encode");
    out.freeze()
}

fn krab_decode(bytes: &Bytes) -> records::RecordSet {
    decode_batches(bytes).expect("krab decode")
}

fn kp_decode(bytes: &Bytes) -> kpr::RecordSet {
    let mut buf = bytes.clone();
    let set = kpr::RecordBatchDecoder::decode(&mut buf).expect("kafka-protocol decode");
    assert!(buf.is_empty(), "kafka-protocol left bytes");
    set
}

// ---------------------------------------------------------------------------------------------
// Sanity checks (setup only)

fn check_krab(bytes: &Bytes, compression: Compression, who: &str) {
    let set = krab_decode(bytes);
    assert!(!set.is_partial(), "{who}: partial set");
    assert_eq!(set.batches.len(), 1, "{who}: batch count");
    let batch = &set.batches[0];
    assert_eq!(batch.compression, compression, "{who}: compression");
    assert_eq!(batch.records.len(), RECORDS, "{who}: record count");
    for i in [0, SAMPLE, RECORDS - 1] {
        let (timestamp, key, value) = record_parts(i);
        let r = &batch.records[i];
        assert_eq!((r.offset, r.timestamp), (i as i64, timestamp), "{who}: record {i} offset/timestamp");
        assert_eq!(r.key.as_ref(), Some(&key), "{who}: record {i} key");
        assert_eq!(r.value.as_ref(), Some(&value), "{who}: record {i} value");
        assert!(r.headers.is_empty(), "{who}: record {i} headers");
    }
}

fn check_kp(bytes: &Bytes, compression: Compression, who: &str) {
    let set = kp_decode(bytes);
    assert_eq!(set.compression, kp_compression(compression), "{who}: compression");
    assert_eq!(set.records.len(), RECORDS, "{who}: record count");
    for i in [0, SAMPLE, RECORDS - 1] {
        let (timestamp, key, value) = record_parts(i);
        let r = &set.records[i];
        assert_eq!((r.offset, r.timestamp), (i as i64, timestamp), "{who}: record {i} offset/timestamp");
        assert_eq!(r.key.as_ref(), Some(&key), "{who}: record {i} key");
        assert_eq!(r.value.as_ref(), Some(&value), "{who}: record {i} value");
        assert!(r.headers.is_empty(), "{who}: record {i} headers");
    }
}

/// Encodes once with every encoder, checks that both libraries decode every output, and
/// returns krab's bytes (the decode benches' input).
fn encoded_and_checked(inputs: &Inputs, batch: &RecordBatch, compression: Compression) -> Bytes {
    let krab = krab_encode(batch);
    let appended = krab_append(&inputs.krab, compression);
    let kp = kp_encode(&inputs.kp, compression);
    let mut outputs = vec![("krab", &krab), ("krab-appender", &appended), ("kafka-protocol", &kp)];
    let kp_flex;
    if compression == Compression::Lz4 {
        kp_flex = kp_encode_lz4_flex(&inputs.kp);
        outputs.push(("kafka-protocol+lz4_flex", &kp_flex));
    }
    for (who, bytes) in &outputs {
        check_krab(bytes, compression, &format!("krab decoding {who}'s {compression} batch"));
        check_kp(bytes, compression, &format!("kafka-protocol decoding {who}'s {compression} batch"));
    }
    assert_eq!(krab, appended, "RecordBatch::encode and RecordBatchEncoder disagree ({compression})");
    let sizes: Vec<String> = outputs.iter().map(|(who, b)| format!("{who} {} B", b.len())).collect();
    let identical = if krab == kp { "byte-identical" } else { "different bytes" };
    eprintln!(
        "record batch {compression}: {} ({identical} krab vs kafka-protocol; all mutually decodable)",
        sizes.join(", ")
    );
    krab
}

// ---------------------------------------------------------------------------------------------
// Benches

fn bench_records<M: Measurement>(c: &mut Criterion<M>, mode: SamplingMode) {
    let inputs = inputs();
    for compression in [Compression::None, Compression::Lz4] {
        let batch = krab_batch(&inputs.krab, compression);
        let bytes = encoded_and_checked(&inputs, &batch, compression);

        let mut g = c.benchmark_group(format!("record_batch_encode/{compression}"));
        g.throughput(Throughput::Elements(RECORDS as u64)).sampling_mode(mode);
        g.bench_function("krab", |b| b.iter(|| krab_encode(black_box(&batch))));
        g.bench_function("krab-appender", |b| b.iter(|| krab_append(black_box(&inputs.krab), compression)));
        g.bench_function("kafka-protocol", |b| b.iter(|| kp_encode(black_box(&inputs.kp), compression)));
        if compression == Compression::Lz4 {
            g.bench_function("kafka-protocol+lz4_flex", |b| b.iter(|| kp_encode_lz4_flex(black_box(&inputs.kp))));
        }
        g.finish();

        let mut g = c.benchmark_group(format!("record_batch_decode/{compression}"));
        g.throughput(Throughput::Elements(RECORDS as u64)).sampling_mode(mode);
        g.bench_function("krab", |b| b.iter(|| krab_decode(black_box(&bytes))));
        g.bench_function("kafka-protocol", |b| b.iter(|| kp_decode(black_box(&bytes))));
        g.finish();
    }
}

fn uuid_bytes(topic: usize) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(0x5eed_0000_0000_0000u64 + topic as u64).to_be_bytes());
    id[8..].copy_from_slice(&(topic as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    id
}

fn replicas(topic: usize, partition: i32) -> [i32; 3] {
    let first = (topic as i32 + partition) % BROKERS;
    [first, (first + 1) % BROKERS, (first + 2) % BROKERS]
}

fn krab_metadata() -> krm::MetadataResponse {
    krm::MetadataResponse {
        brokers: (0..BROKERS)
            .map(|id| krm::MetadataResponseBroker {
                node_id: id,
                host: format!("broker-{id}.kafka.example.com"),
                port: 9092,
                rack: Some(format!("rack-{id}")),
                ..Default::default()
            })
            .collect(),
        cluster_id: Some("MkU3OEVBNTcwNTJENDM2Qk".to_owned()),
        controller_id: 1,
        topics: (0..TOPICS)
            .map(|t| krm::MetadataResponseTopic {
                name: Some(format!("events.topic-{t:02}")),
                topic_id: Uuid(uuid_bytes(t)),
                partitions: (0..PARTITIONS_PER_TOPIC)
                    .map(|p| {
                        let nodes = replicas(t, p);
                        krm::MetadataResponsePartition {
                            partition_index: p,
                            leader_id: nodes[0],
                            leader_epoch: 17,
                            replica_nodes: nodes.to_vec(),
                            isr_nodes: nodes.to_vec(),
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn kp_metadata() -> kpm::MetadataResponse {
    let brokers = |ids: [i32; 3]| ids.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
    kpm::MetadataResponse::default()
        .with_brokers(
            (0..BROKERS)
                .map(|id| {
                    kpm::MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id))
                        .with_host(StrBytes::from_string(format!("broker-{id}.kafka.example.com")))
                        .with_port(9092)
                        .with_rack(Some(StrBytes::from_string(format!("rack-{id}"))))
                })
                .collect(),
        )
        .with_cluster_id(Some(StrBytes::from_static_str("MkU3OEVBNTcwNTJENDM2Qk")))
        .with_controller_id(BrokerId(1))
        .with_topics(
            (0..TOPICS)
                .map(|t| {
                    kpm::MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(format!("events.topic-{t:02}")))))
                        .with_topic_id(uuid_bytes(t).to_vec().try_into().expect("16-byte uuid"))
                        .with_partitions(
                            (0..PARTITIONS_PER_TOPIC)
                                .map(|p| {
                                    let nodes = replicas(t, p);
                                    kpm::MetadataResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_leader_id(BrokerId(nodes[0]))
                                        .with_leader_epoch(17)
                                        .with_replica_nodes(brokers(nodes))
                                        .with_isr_nodes(brokers(nodes))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

fn krab_metadata_encode(msg: &krm::MetadataResponse) -> Bytes {
    let mut out = BytesMut::with_capacity(msg.encoded_len(METADATA_VERSION));
    msg.encode(&mut out, METADATA_VERSION).expect("krab encode");
    out.freeze()
}

fn kp_metadata_encode(msg: &kpm::MetadataResponse) -> Bytes {
    let mut out = BytesMut::with_capacity(msg.compute_size(METADATA_VERSION).expect("kafka-protocol size"));
    msg.encode(&mut out, METADATA_VERSION).expect("kafka-protocol encode");
    out.freeze()
}

fn krab_metadata_decode(bytes: &Bytes) -> krm::MetadataResponse {
    krm::MetadataResponse::decode(bytes, METADATA_VERSION).expect("krab decode")
}

fn kp_metadata_decode(bytes: &Bytes) -> kpm::MetadataResponse {
    let mut buf = bytes.clone();
    let msg = kpm::MetadataResponse::decode(&mut buf, METADATA_VERSION).expect("kafka-protocol decode");
    assert!(buf.is_empty(), "kafka-protocol left bytes");
    msg
}

fn bench_metadata<M: Measurement>(c: &mut Criterion<M>, mode: SamplingMode) {
    let krab = krab_metadata();
    let kp = kp_metadata();
    let partitions = (TOPICS as u64) * PARTITIONS_PER_TOPIC as u64;

    // Same message, so the same bytes; each library reads the other's back to the same value.
    let bytes = krab_metadata_encode(&krab);
    assert_eq!(bytes.len(), krab.encoded_len(METADATA_VERSION), "krab encoded_len");
    assert_eq!(kp_metadata_encode(&kp), bytes, "krab and kafka-protocol encode Metadata v12 differently");
    assert_eq!(krab_metadata_decode(&bytes), krab, "krab Metadata round trip");
    assert_eq!(kp_metadata_decode(&bytes), kp, "kafka-protocol Metadata round trip");
    let sample = &krab_metadata_decode(&bytes).topics[7].partitions[42];
    assert_eq!((sample.partition_index, sample.isr_nodes.len()), (42, 3), "krab sample partition");
    eprintln!(
        "metadata v{METADATA_VERSION}: {partitions} partitions, {} B (byte-identical, mutually decodable)",
        bytes.len()
    );

    let mut g = c.benchmark_group("metadata_response/encode");
    g.throughput(Throughput::Elements(partitions)).sampling_mode(mode);
    g.bench_function("krab", |b| b.iter(|| krab_metadata_encode(black_box(&krab))));
    g.bench_function("kafka-protocol", |b| b.iter(|| kp_metadata_encode(black_box(&kp))));
    g.finish();

    let mut g = c.benchmark_group("metadata_response/decode");
    g.throughput(Throughput::Elements(partitions)).sampling_mode(mode);
    g.bench_function("krab", |b| b.iter(|| krab_metadata_decode(black_box(&bytes))));
    g.bench_function("kafka-protocol", |b| b.iter(|| kp_metadata_decode(black_box(&bytes))));
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// On-CPU time measurement

/// The bench thread's on-CPU time in nanoseconds, from `/proc/thread-self/schedstat`: unlike
/// wall time it leaves out the time the thread waited while other processes ran. The kernel
/// advances it at context switches and scheduler ticks, so samples must be long (tens of ms).
struct CpuTime;

fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("read /proc/thread-self/schedstat");
    stat.split_whitespace().next().and_then(|ns| ns.parse().ok()).expect("parse /proc/thread-self/schedstat")
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }

    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

/// Formats nanoseconds (of CPU time) like criterion's wall-time formatter does.
struct NanosFormatter;

impl ValueFormatter for NanosFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = match typical {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e3, "µs"),
            t if t < 1e9 => (1e6, "ms"),
            _ => (1e9, "s"),
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }

    fn scale_throughputs(&self, typical: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        let (per_iter, units) = match *throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (n as f64, ["B/s", "KB/s", "MB/s", "GB/s"]),
            Throughput::Elements(n) => (n as f64, ["elem/s", "Kelem/s", "Melem/s", "Gelem/s"]),
        };
        let rate = per_iter * 1e9 / typical;
        let (div, unit) = match rate {
            r if r < 1e3 => (1.0, units[0]),
            r if r < 1e6 => (1e3, units[1]),
            r if r < 1e9 => (1e6, units[2]),
            _ => (1e9, units[3]),
        };
        values.iter_mut().for_each(|v| *v = per_iter * 1e9 / *v / div);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// What `criterion_group!` would generate (minus its undocumented `pub fn`), with the
/// measurement chosen by `KRAB_BENCH_CPU_TIME`.
fn benches() {
    if std::env::var_os("KRAB_BENCH_CPU_TIME").is_some_and(|v| !v.is_empty() && v != "0") {
        let mut c = Criterion::default().with_measurement(CpuTime).configure_from_args();
        bench_records(&mut c, SamplingMode::Flat);
        bench_metadata(&mut c, SamplingMode::Flat);
    } else {
        let mut c = Criterion::default().configure_from_args();
        bench_records(&mut c, SamplingMode::Auto);
        bench_metadata(&mut c, SamplingMode::Auto);
    }
}

criterion_main!(benches);
