//! Telemetry under test: [`TestRecorder`], a `metrics` recorder that keeps every counter, gauge
//! (with the highest value it reached) and histogram sample, and [`EventLog`], a tracing
//! collector that keeps krab's events (with the spans they happened in) and closed spans.
//!
//! Both are meant to be installed for one thread (`set_default`), which covers everything a
//! current-thread tokio runtime (`#[tokio::test]`'s default) runs: tests then see only their own
//! clients, with no global state shared between tests.

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::lock;

type Labels = BTreeMap<String, String>;

#[derive(Default)]
struct CounterCell(AtomicU64);

impl CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

/// A gauge's current value, the highest it reached, and how often it was set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GaugeValue {
    /// The value now.
    pub current: f64,
    /// The highest value it had.
    pub max: f64,
    /// Updates received.
    pub updates: u64,
}

#[derive(Default)]
struct GaugeCell(Mutex<GaugeValue>);

impl GaugeCell {
    fn update(&self, f: impl FnOnce(f64) -> f64) {
        let mut g = lock(&self.0);
        g.current = f(g.current);
        g.max = if g.updates == 0 { g.current } else { g.max.max(g.current) };
        g.updates += 1;
    }
}

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

#[derive(Default)]
struct HistogramCell(Mutex<Vec<f64>>);

impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        lock(&self.0).push(value);
    }
}

#[derive(Default)]
struct Metrics {
    counters: Vec<(String, Labels, Arc<CounterCell>)>,
    gauges: Vec<(String, Labels, Arc<GaugeCell>)>,
    histograms: Vec<(String, Labels, Arc<HistogramCell>)>,
}

fn parts(key: &Key) -> (String, Labels) {
    (key.name().to_string(), key.labels().map(|l| (l.key().to_string(), l.value().to_string())).collect())
}

fn matches(labels: &Labels, wanted: &[(&str, &str)]) -> bool {
    wanted.iter().all(|(k, v)| labels.get(*k).is_some_and(|x| x == v))
}

/// A `metrics` recorder keeping everything, for tests. Cheap to clone (clones share the data).
#[derive(Clone, Default)]
pub struct TestRecorder {
    inner: Arc<Mutex<Metrics>>,
}

impl std::fmt::Debug for TestRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = lock(&self.inner);
        f.debug_struct("TestRecorder")
            .field("counters", &m.counters.len())
            .field("gauges", &m.gauges.len())
            .field("histograms", &m.histograms.len())
            .finish()
    }
}

impl TestRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs it for this thread until the guard drops; handles registered meanwhile report to
    /// it from any thread.
    pub fn set_default(&self) -> metrics::LocalRecorderGuard<'_> {
        metrics::set_default_local_recorder(self)
    }

    /// The sum of every counter named `name` whose labels include `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let m = lock(&self.inner);
        m.counters
            .iter()
            .filter(|(n, l, _)| n == name && matches(l, labels))
            .map(|(_, _, c)| c.0.load(Ordering::Relaxed))
            .sum()
    }

    /// Every counter named `name` whose labels include `labels`, with all its labels.
    pub fn counters(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(Labels, u64)> {
        let m = lock(&self.inner);
        m.counters
            .iter()
            .filter(|(n, l, _)| n == name && matches(l, labels))
            .map(|(_, l, c)| (l.clone(), c.0.load(Ordering::Relaxed)))
            .collect()
    }

    /// The gauge named `name` whose labels include `labels` (the first registered, if several).
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<GaugeValue> {
        let m = lock(&self.inner);
        m.gauges.iter().find(|(n, l, _)| n == name && matches(l, labels)).map(|(_, _, g)| *lock(&g.0))
    }

    /// Every gauge named `name` whose labels include `labels`, with all its labels.
    pub fn gauges(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(Labels, GaugeValue)> {
        let m = lock(&self.inner);
        m.gauges
            .iter()
            .filter(|(n, l, _)| n == name && matches(l, labels))
            .map(|(_, l, g)| (l.clone(), *lock(&g.0)))
            .collect()
    }

    /// Every sample of the histograms named `name` whose labels include `labels`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let m = lock(&self.inner);
        m.histograms
            .iter()
            .filter(|(n, l, _)| n == name && matches(l, labels))
            .flat_map(|(_, _, h)| lock(&h.0).clone())
            .collect()
    }

    /// The names of every metric registered so far.
    pub fn names(&self) -> Vec<String> {
        let m = lock(&self.inner);
        let mut names: Vec<String> = m
            .counters
            .iter()
            .map(|(n, _, _)| n.clone())
            .chain(m.gauges.iter().map(|(n, _, _)| n.clone()))
            .chain(m.histograms.iter().map(|(n, _, _)| n.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let (name, labels) = parts(key);
        let mut m = lock(&self.inner);
        if let Some((_, _, c)) = m.counters.iter().find(|(n, l, _)| *n == name && *l == labels) {
            return Counter::from_arc(c.clone());
        }
        let c = Arc::new(CounterCell::default());
        m.counters.push((name, labels, c.clone()));
        Counter::from_arc(c)
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let (name, labels) = parts(key);
        let mut m = lock(&self.inner);
        if let Some((_, _, g)) = m.gauges.iter().find(|(n, l, _)| *n == name && *l == labels) {
            return Gauge::from_arc(g.clone());
        }
        let g = Arc::new(GaugeCell::default());
        m.gauges.push((name, labels, g.clone()));
        Gauge::from_arc(g)
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let (name, labels) = parts(key);
        let mut m = lock(&self.inner);
        if let Some((_, _, h)) = m.histograms.iter().find(|(n, l, _)| *n == name && *l == labels) {
            return Histogram::from_arc(h.clone());
        }
        let h = Arc::new(HistogramCell::default());
        m.histograms.push((name, labels, h.clone()));
        Histogram::from_arc(h)
    }
}

/// A span as it was when it closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedSpan {
    /// Its name (`krab.request`, ...).
    pub name: String,
    /// Its fields, formatted (strings without quotes).
    pub fields: Labels,
}

/// One event krab emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedEvent {
    /// Its level.
    pub level: Level,
    /// Its target (the module that emitted it).
    pub target: String,
    /// Its message.
    pub message: String,
    /// Its other fields, formatted (strings without quotes).
    pub fields: Labels,
    /// The spans it happened in, outermost first.
    pub spans: Vec<CapturedSpan>,
}

impl CapturedEvent {
    /// A field's formatted value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Log {
    events: Vec<CapturedEvent>,
    closed: Vec<CapturedSpan>,
}

/// A tracing collector of krab's events (targets `krab*`, every level) and closed spans. Cheap
/// to clone (clones share the log).
#[derive(Clone, Default)]
pub struct EventLog {
    inner: Arc<Mutex<Log>>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").field("events", &lock(&self.inner).events.len()).finish()
    }
}

impl EventLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The collector as a layer, to compose with others.
    pub fn layer(&self) -> EventLayer {
        EventLayer { log: self.clone() }
    }

    /// Collects this thread's events until the guard drops.
    ///
    /// The first call also installs a global subscriber that collects nothing but keeps every
    /// callsite undecided (`Interest::sometimes`): tracing caches each callsite's interest
    /// process-wide, and a callsite first reached on another thread while this thread's
    /// collector was being installed could otherwise stay cached as uninteresting, losing this
    /// thread's events (tests run in parallel threads). A global subscriber set before is kept.
    pub fn set_default(&self) -> tracing::subscriber::DefaultGuard {
        static UNDECIDED: std::sync::Once = std::sync::Once::new();
        UNDECIDED.call_once(|| {
            let _ = tracing::subscriber::set_global_default(Undecided);
        });
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.layer()))
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<CapturedEvent> {
        lock(&self.inner).events.clone()
    }

    /// The events with this message.
    pub fn with_message(&self, message: &str) -> Vec<CapturedEvent> {
        lock(&self.inner).events.iter().filter(|e| e.message == message).cloned().collect()
    }

    /// The closed spans with this name.
    pub fn closed_spans(&self, name: &str) -> Vec<CapturedSpan> {
        lock(&self.inner).closed.iter().filter(|s| s.name == name).cloned().collect()
    }

    /// Events at `level` or more severe.
    pub fn at_least(&self, level: Level) -> Vec<CapturedEvent> {
        // tracing orders levels by verbosity: ERROR < WARN < INFO < DEBUG < TRACE.
        lock(&self.inner).events.iter().filter(|e| e.level <= level).cloned().collect()
    }
}

/// Wants nothing, decides nothing once for all: every callsite asks each time.
struct Undecided;

impl Subscriber for Undecided {
    fn register_callsite(&self, _: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // Never called: nothing is enabled.
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[derive(Default)]
struct Fields(Labels);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }
}

/// The [`EventLog`]'s layer.
#[derive(Debug)]
pub struct EventLayer {
    log: EventLog,
}

impl<S> Layer<S> for EventLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        metadata.target().starts_with("krab")
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|span| CapturedSpan {
                        name: span.name().to_string(),
                        fields: span.extensions().get::<Fields>().map(|f| f.0.clone()).unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let meta = event.metadata();
        lock(&self.log.inner).events.push(CapturedEvent {
            level: *meta.level(),
            target: meta.target().to_string(),
            message,
            fields: fields.0,
            spans,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span.extensions().get::<Fields>().map(|f| f.0.clone()).unwrap_or_default();
            lock(&self.log.inner).closed.push(CapturedSpan { name: span.name().to_string(), fields });
        }
    }
}
