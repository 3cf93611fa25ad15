//! Apache Kafka itself, from Maven Central jars: a KRaft cluster of N combined
//! broker+controller JVMs on 127.0.0.1, each behind a [`FaultProxy`].
//!
//! - [`KafkaDist`] downloads one pinned Kafka (the committed `xtask/kafka/pom.xml`) into
//!   `target/brokers/kafka/<version>/lib` with Maven, once.
//! - [`KafkaCluster::start`] formats KRaft storage (static quorum), starts the JVMs together
//!   (a combined node cannot finish starting without a controller quorum), and waits until every
//!   node serves. Each node has three listeners: `INTERNAL` (inter-broker, and the control path
//!   the tests use: it never crosses a proxy), `EXTERNAL` (clients; advertised as the address of
//!   the node's proxy, so every client connection to node N crosses proxy N) and `CONTROLLER`.
//!   With [`KafkaOptions::tls`], two more: `SSL` (TLS) and `MTLS` (TLS with client certificates
//!   required), advertised as `localhost:<port>` (the broker certificate names `localhost`
//!   only) and reached directly: the proxies parse Kafka frames, which TLS hides from them.
//! - The JVMs are always reaped: on drop (test failure, panic unwinding) they are killed, and a
//!   watchdog shell kills them if this process dies without unwinding (Ctrl-C, SIGKILL).
//!
//! The control API the scenarios share (create topics, leader/ISR map, leader moves, kill -9,
//! restart, SIGSTOP/SIGCONT, ISR healing) lives in `crate::it::kafka_control`.

use super::kafka_tls::TlsFiles;
use crate::proxy::FaultProxy;
use anyhow::{Context, Result, bail, ensure};
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The Apache Kafka release the tests run (also in `xtask/kafka/pom.xml`).
pub(crate) const KAFKA_VERSION: &str = "4.4.0";

/// A fixed cluster id: storage is formatted anew for every cluster anyway.
const CLUSTER_ID: &str = "a3JhYi10ZXN0LWthZmthAA";

/// How long a node may take to serve after its JVM starts (Kafka's own system tests use 60 s).
const START_TIMEOUT: Duration = Duration::from_secs(90);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Kafka jars, downloaded once.
#[derive(Clone)]
pub(crate) struct KafkaDist {
    home: PathBuf,
}

impl KafkaDist {
    /// `target/brokers/kafka/<version>`.
    fn home() -> PathBuf {
        super::brokers_dir().join("kafka").join(KAFKA_VERSION)
    }

    /// Checks for `java` and `mvn`, and downloads the jars unless a complete download is there.
    pub(crate) fn ensure() -> Result<Self> {
        let dist = Self { home: Self::home() };
        check_tool("java", &["-version"], "OpenJDK 17 or newer")?;
        let marker = dist.home.join("lib").join(".complete");
        if marker.exists() {
            return Ok(dist);
        }
        check_tool("mvn", &["-v"], "Apache Maven")?;
        let pom = crate::project_root().join("xtask").join("kafka").join("pom.xml");
        let lib = dist.home.join("lib");
        if lib.exists() {
            fs::remove_dir_all(&lib)?;
        }
        fs::create_dir_all(&lib)?;
        eprintln!("downloading Apache Kafka {KAFKA_VERSION} from Maven Central into {}", lib.display());
        let out = Command::new("mvn")
            .args(["-B", "-q", "-f"])
            .arg(&pom)
            .arg("org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies")
            .arg(format!("-DoutputDirectory={}", lib.display()))
            .arg("-DincludeScope=runtime")
            .stdin(Stdio::null())
            .output()
            .context("running mvn")?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            let why = text.lines().find(|l| l.contains("[ERROR]")).unwrap_or("see `mvn -f xtask/kafka/pom.xml`");
            bail!("downloading Apache Kafka {KAFKA_VERSION} from Maven Central failed: {}", why.trim());
        }
        let broker_jar = lib.join(format!("kafka_2.13-{KAFKA_VERSION}.jar"));
        ensure!(broker_jar.exists(), "Maven ran but {} is missing", broker_jar.display());
        fs::write(&marker, KAFKA_VERSION)?;
        Ok(dist)
    }

    /// The directory holding every jar.
    pub(crate) fn lib(&self) -> PathBuf {
        self.home.join("lib")
    }

    /// `-cp` value for the jars.
    pub(crate) fn classpath(&self) -> String {
        format!("{}/*", self.lib().display())
    }

    /// A JVM for one of Kafka's command-line tools (quick start, quiet logging).
    pub(crate) fn tool(&self, main_class: &str) -> Command {
        let log = crate::project_root().join("xtask").join("kafka").join("tools-log4j2.yaml");
        let mut cmd = Command::new("java");
        cmd.args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto"])
            .arg(format!("-Dlog4j2.configurationFile={}", log.display()))
            .arg("-cp")
            .arg(self.classpath())
            .arg(main_class)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a tool to completion; its stdout, or an error with its stderr.
    pub(crate) fn run_tool(&self, main_class: &str, args: &[&str]) -> Result<String> {
        let out = self.tool(main_class).args(args).output().with_context(|| format!("running {main_class}"))?;
        if !out.status.success() {
            bail!(
                "{main_class} {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// "Apache Kafka 4.x.y", as the broker jar reports itself.
    pub(crate) fn version(&self) -> Result<String> {
        let out = self.run_tool("kafka.Kafka", &["--version"])?;
        let v = out.split_whitespace().next().context("kafka.Kafka --version printed nothing")?;
        Ok(format!("Apache Kafka {v}"))
    }
}

fn check_tool(name: &str, args: &[&str], what: &str) -> Result<()> {
    match Command::new(name).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("`{name} {}` failed ({s}): Apache Kafka needs {what} on PATH", args.join(" ")),
        Err(e) => bail!("`{name}` not found ({e}): Apache Kafka needs {what} on PATH"),
    }
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub(crate) struct KafkaOptions {
    /// Combined broker+controller nodes, ids 1..=nodes.
    pub(crate) nodes: usize,
    /// Extra `server.properties` lines (override the defaults below).
    pub(crate) overrides: Vec<(String, String)>,
    /// Heap per JVM.
    pub(crate) heap_mb: u32,
    /// Also open the `SSL` and `MTLS` listeners, with TLS material made at start.
    pub(crate) tls: bool,
    /// Also open a `SASL_SSL` listener (implies `tls`): PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and
    /// OAUTHBEARER (unsecured JWTs), user [`SASL_USER`] with [`SASL_PASSWORD`], sessions
    /// re-authenticated after [`SASL_REAUTH_MS`].
    pub(crate) sasl: bool,
    /// Turn on Kafka's `StandardAuthorizer`. Resources without ACLs stay open to everyone, and
    /// the PLAINTEXT listeners' principal (`User:ANONYMOUS`) and `User:admin` are super users;
    /// so only resources given ACLs are guarded, against the SASL users.
    pub(crate) acl: bool,
}

impl KafkaOptions {
    pub(crate) fn new(nodes: usize) -> Self {
        Self { nodes, overrides: Vec::new(), heap_mb: 448, tls: false, sasl: false, acl: false }
    }
}

/// The SASL user the `SASL_SSL` listener knows (PLAIN, and SCRAM credentials added at format).
pub(crate) const SASL_USER: &str = "alice";
/// Its password.
pub(crate) const SASL_PASSWORD: &str = "alice-secret";
/// `connections.max.reauth.ms` on the `SASL_SSL` listener.
pub(crate) const SASL_REAUTH_MS: u64 = 5000;

/// The listener name of the TLS listener that requires client certificates.
const MTLS: &str = "MTLS";

/// One node's ports and process.
struct Node {
    id: i32,
    internal: u16,
    external: u16,
    controller: u16,
    /// The `SSL` and `MTLS` listeners' ports (0: no TLS).
    ssl: u16,
    mtls: u16,
    /// The `SASL_SSL` listener's port (0: none).
    sasl_ssl: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
    /// SIGSTOPped and not yet continued.
    frozen: std::sync::atomic::AtomicBool,
}

/// A running cluster; every JVM is killed when it is dropped.
pub(crate) struct KafkaCluster {
    dist: KafkaDist,
    dir: PathBuf,
    nodes: Vec<Node>,
    proxies: Vec<FaultProxy>,
    watchdog: Mutex<Option<Child>>,
    /// Runs the proxies (its own threads, so the tests' runtimes can come and go).
    _proxy_rt: tokio::runtime::Runtime,
    version: String,
    heap_mb: u32,
    /// Boxed: most clusters have none.
    tls: Option<Box<TlsFiles>>,
}

impl KafkaCluster {
    /// Downloads Kafka if needed, formats storage and starts `options.nodes` JVMs; returns when
    /// every node serves.
    pub(crate) fn start(options: &KafkaOptions) -> Result<Self> {
        ensure!((1..=9).contains(&options.nodes), "--nodes must be 1..=9");
        let dist = KafkaDist::ensure()?;
        let dir = super::brokers_dir().join("kafka").join("run");
        reap_stale(&dir);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(&dir)?;
        let tls = if options.tls || options.sasl { Some(Box::new(TlsFiles::create(&dir.join("tls"))?)) } else { None };
        let proxy_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kafka-proxy")
            .enable_all()
            .build()?;
        let mut nodes = Vec::new();
        let mut proxies = Vec::new();
        for i in 0..options.nodes {
            let id = i as i32 + 1;
            let (internal, external, controller) = (super::free_port()?, super::free_port()?, super::free_port()?);
            let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, external));
            let proxy = proxy_rt.block_on(FaultProxy::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), upstream))?;
            proxies.push(proxy);
            let (ssl, mtls) = if tls.is_some() { (super::free_port()?, super::free_port()?) } else { (0, 0) };
            let sasl_ssl = if options.sasl { super::free_port()? } else { 0 };
            let node_dir = dir.join(format!("node{id}"));
            fs::create_dir_all(node_dir.join("data"))?;
            nodes.push(Node {
                id,
                internal,
                external,
                controller,
                ssl,
                mtls,
                sasl_ssl,
                dir: node_dir,
                child: Mutex::new(None),
                frozen: Default::default(),
            });
        }
        let voters: Vec<String> = nodes.iter().map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller)).collect();
        for (node, proxy) in nodes.iter().zip(&proxies) {
            let props = server_properties(node, proxy.addr().port(), &voters.join(","), options, tls.as_deref());
            fs::write(node.dir.join("server.properties"), props)?;
        }
        let version = dist.version()?;
        let cluster = Self {
            dist,
            dir,
            nodes,
            proxies,
            watchdog: Mutex::new(None),
            _proxy_rt: proxy_rt,
            version,
            heap_mb: options.heap_mb,
            tls,
        };
        cluster.format(options.sasl)?;
        cluster.start_watchdog()?;
        for node in &cluster.nodes {
            cluster.spawn(node, options.heap_mb)?;
        }
        let started = Instant::now();
        for node in &cluster.nodes {
            cluster.wait_serving(node, started)?;
        }
        Ok(cluster)
    }

    /// Formats every node's storage, in parallel.
    fn format(&self, sasl: bool) -> Result<()> {
        let mut children = Vec::new();
        // SCRAM credentials live in the metadata log: added at format, like Kafka's docs do.
        let scram: Vec<String> = if sasl {
            ["SCRAM-SHA-256", "SCRAM-SHA-512"]
                .iter()
                .flat_map(|m| ["--add-scram".to_string(), format!("{m}=[name={SASL_USER},password={SASL_PASSWORD}]")])
                .collect()
        } else {
            Vec::new()
        };
        for node in &self.nodes {
            let props = node.dir.join("server.properties");
            let child = self
                .dist
                .tool("kafka.tools.StorageTool")
                .args(["format", "--cluster-id", CLUSTER_ID])
                .args(&scram)
                .arg("--config")
                .arg(&props)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("running kafka.tools.StorageTool")?;
            children.push((node.id, child));
        }
        for (id, child) in children {
            let out = child.wait_with_output()?;
            ensure!(
                out.status.success(),
                "formatting node {id}'s storage failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// A shell that kills the JVMs (by their pid files) as soon as this process is gone, however
    /// it went.
    fn start_watchdog(&self) -> Result<()> {
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; \
             for f in {dir}/node*/pid; do p=$(cat \"$f\" 2>/dev/null) || continue; \
             grep -q kafka.Kafka /proc/$p/cmdline 2>/dev/null && kill -9 $p; done",
            me = std::process::id(),
            dir = self.dir.display()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the JVM watchdog")?;
        *lock(&self.watchdog) = Some(child);
        Ok(())
    }

    fn spawn(&self, node: &Node, heap_mb: u32) -> Result<()> {
        let log = crate::project_root().join("xtask").join("kafka").join("broker-log4j2.yaml");
        let heap = format!("{heap_mb}m");
        let child = Command::new("java")
            .arg(format!("-Xms{heap}"))
            .arg(format!("-Xmx{heap}"))
            // Sized for three JVMs sharing two cores with the clients under test.
            .args([
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:ParallelGCThreads=1",
                "-XX:ConcGCThreads=1",
                "-XX:CICompilerCount=2",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true",
            ])
            .arg(format!("-Dkafka.logs.dir={}", node.dir.display()))
            .arg(format!("-Dlog4j2.configurationFile={}", log.display()))
            .arg("-cp")
            .arg(self.dist.classpath())
            .arg("kafka.Kafka")
            .arg(node.dir.join("server.properties"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(node.dir.join("stderr.log"))?)
            .spawn()
            .with_context(|| format!("starting node {}'s JVM", node.id))?;
        fs::write(node.dir.join("pid"), child.id().to_string())?;
        *lock(&node.child) = Some(child);
        Ok(())
    }

    /// Waits until the node's client listener accepts: Kafka opens it only once the broker is
    /// caught up with the metadata log and unfenced.
    fn wait_serving(&self, node: &Node, since: Instant) -> Result<()> {
        loop {
            if let Some(child) = lock(&node.child).as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "Kafka node {} exited while starting ({status}); see {}",
                    node.id,
                    node.dir.join("server.log").display()
                );
            }
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, node.external));
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if since.elapsed() > START_TIMEOUT {
                bail!(
                    "Kafka node {} did not serve within {START_TIMEOUT:?}; see {}",
                    node.id,
                    node.dir.join("server.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn node(&self, id: i32) -> Result<&Node> {
        self.nodes.iter().find(|n| n.id == id).with_context(|| format!("no Kafka node {id}"))
    }

    /// The bootstrap clients use: the proxies.
    pub(crate) fn bootstrap(&self) -> String {
        self.proxies.iter().map(|p| p.addr().to_string()).collect::<Vec<_>>().join(",")
    }

    /// The bootstrap of the INTERNAL listeners: straight to the brokers, never through a proxy
    /// (for the tests' own control requests and for benchmarks).
    pub(crate) fn direct_bootstrap(&self) -> String {
        self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.internal)).collect::<Vec<_>>().join(",")
    }

    /// The `SSL` listeners' bootstrap (`localhost:<port>`, straight to the brokers), when the
    /// cluster was started with TLS.
    pub(crate) fn tls_bootstrap(&self) -> Option<String> {
        self.tls.as_ref()?;
        Some(self.nodes.iter().map(|n| format!("localhost:{}", n.ssl)).collect::<Vec<_>>().join(","))
    }

    /// The `MTLS` listeners' bootstrap (client certificates required), with TLS.
    pub(crate) fn mtls_bootstrap(&self) -> Option<String> {
        self.tls.as_ref()?;
        Some(self.nodes.iter().map(|n| format!("localhost:{}", n.mtls)).collect::<Vec<_>>().join(","))
    }

    /// The `SASL_SSL` listeners' bootstrap (`localhost:<port>`), when started with SASL.
    pub(crate) fn sasl_ssl_bootstrap(&self) -> Option<String> {
        self.nodes.first().filter(|n| n.sasl_ssl != 0)?;
        Some(self.nodes.iter().map(|n| format!("localhost:{}", n.sasl_ssl)).collect::<Vec<_>>().join(","))
    }

    /// Node 1's `SASL_SSL` port, when started with SASL.
    pub(crate) fn sasl_ssl_port(&self) -> Option<u16> {
        self.nodes.first().map(|n| n.sasl_ssl).filter(|&p| p != 0)
    }

    /// Node 1's `SSL` and `MTLS` ports, with TLS.
    pub(crate) fn tls_ports(&self) -> Option<(u16, u16)> {
        self.tls.as_ref()?;
        self.nodes.first().map(|n| (n.ssl, n.mtls))
    }

    /// The CA, client certificate and wrong CA files, with TLS.
    pub(crate) fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_deref()
    }

    /// "Apache Kafka 4.x.y".
    pub(crate) fn version(&self) -> &str {
        &self.version
    }

    /// The jars (for tools and the Java reference client).
    pub(crate) fn dist(&self) -> &KafkaDist {
        &self.dist
    }

    /// Node `id`'s proxy.
    pub(crate) fn proxy(&self, id: i32) -> Result<&FaultProxy> {
        let i = self.nodes.iter().position(|n| n.id == id).with_context(|| format!("no Kafka node {id}"))?;
        Ok(&self.proxies[i])
    }

    /// Every proxy, node 1 first.
    pub(crate) fn proxies(&self) -> &[FaultProxy] {
        &self.proxies
    }

    /// Requests of `api_key` counted at every proxy.
    pub(crate) fn requests(&self, api_key: i16) -> u64 {
        self.proxies.iter().map(|p| p.count(api_key)).sum()
    }

    /// The JVM's pid, if the node runs.
    pub(crate) fn pid(&self, id: i32) -> Result<Option<u32>> {
        Ok(lock(&self.node(id)?.child).as_ref().map(Child::id))
    }

    /// Pids of every running JVM (for CPU accounting).
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(|n| lock(&n.child).as_ref().map(Child::id)).collect()
    }

    /// `kill -9`: the node dies at once, with no controlled shutdown.
    pub(crate) fn kill(&self, id: i32) -> Result<()> {
        let node = self.node(id)?;
        let mut child = lock(&node.child);
        let Some(mut c) = child.take() else { bail!("Kafka node {id} is not running") };
        // SIGKILL also ends a SIGSTOPped JVM.
        c.kill().with_context(|| format!("killing node {id}"))?;
        c.wait()?;
        node.frozen.store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Starts a killed node again (same storage: log recovery runs) and waits until it serves.
    pub(crate) fn restart(&self, id: i32) -> Result<()> {
        let node = self.node(id)?;
        ensure!(lock(&node.child).is_none(), "Kafka node {id} is still running");
        self.spawn(node, self.heap_mb)?;
        self.wait_serving(node, Instant::now())
    }

    /// `SIGSTOP` (true) or `SIGCONT` (false): a hung broker, and its recovery.
    pub(crate) fn freeze(&self, id: i32, stop: bool) -> Result<()> {
        let pid = self.pid(id)?.with_context(|| format!("Kafka node {id} is not running"))?;
        let sig = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([sig, &pid.to_string()]).status()?;
        ensure!(status.success(), "kill {sig} {pid} failed");
        self.node(id)?.frozen.store(stop, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Undoes every fault: continues frozen nodes, restarts killed ones, sets every proxy back to
    /// pass-through.
    pub(crate) fn heal(&self) -> Result<()> {
        for p in &self.proxies {
            p.set_fault(crate::proxy::Fault::Pass);
        }
        for node in &self.nodes {
            if node.frozen.load(std::sync::atomic::Ordering::Relaxed) {
                self.freeze(node.id, false)?;
            }
        }
        for node in &self.nodes {
            if lock(&node.child).is_none() {
                self.restart(node.id)?;
            }
        }
        Ok(())
    }

    /// Where node `id` keeps its logs.
    pub(crate) fn log_dir(&self, id: i32) -> Result<&Path> {
        Ok(&self.node(id)?.dir)
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Some(mut c) = lock(&node.child).take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(mut w) = lock(&self.watchdog).take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// Kills JVMs a previous run left behind (its pid files), so their ports are free again.
fn reap_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let Ok(pid) = fs::read_to_string(e.path().join("pid")) else { continue };
        let pid = pid.trim();
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("kafka.Kafka") {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

/// `cargo xtask broker kafka [--nodes N]`: start a cluster, print its bootstrap (the proxies) and
/// version, run until stdin closes or Ctrl-C.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut options = KafkaOptions::new(3);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--nodes" => options.nodes = it.next().context("--nodes needs a value")?.parse().context("--nodes")?,
            "--tls" => options.tls = true,
            "--sasl" => options.sasl = true,
            "--acl" => options.acl = true,
            other => bail!("unknown option `{other}` (usage: broker kafka [--nodes N] [--tls] [--sasl] [--acl])"),
        }
    }
    let started = Instant::now();
    let cluster = KafkaCluster::start(&options)?;
    println!("BOOTSTRAP {}", cluster.bootstrap());
    println!("DIRECT {}", cluster.direct_bootstrap());
    if let (Some(ssl), Some(mtls), Some(files)) =
        (cluster.tls_bootstrap(), cluster.mtls_bootstrap(), cluster.tls_files())
    {
        println!("SSL {ssl}");
        println!("MTLS {mtls}");
        println!("CA {}", files.ca.display());
        println!("CLIENT_CERT {} {}", files.client_cert.display(), files.client_key.display());
    }
    if let Some(sasl) = cluster.sasl_ssl_bootstrap() {
        println!("SASL_SSL {sasl} user {SASL_USER} password {SASL_PASSWORD}");
    }
    println!("VERSION {}", cluster.version());
    eprintln!(
        "{} with {} nodes serving after {:.1} s (logs: {}); close stdin or press Ctrl-C to stop",
        cluster.version(),
        options.nodes,
        started.elapsed().as_secs_f64(),
        cluster.dir.display()
    );
    let mut sink = [0u8; 256];
    let mut stdin = std::io::stdin().lock();
    while std::io::Read::read(&mut stdin, &mut sink).map(|n| n > 0).unwrap_or(false) {}
    drop(cluster);
    Ok(())
}

/// The `SASL_SSL` listener's mechanisms and their JAAS settings (Kafka's docs,
/// `authentication-using-sasl`); inter-broker traffic stays on PLAINTEXT.
fn sasl_properties() -> Vec<(String, String)> {
    let mechanisms = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER";
    let l = "listener.name.sasl_ssl";
    vec![
        ("sasl.enabled.mechanisms".into(), mechanisms.into()),
        (format!("{l}.sasl.enabled.mechanisms"), mechanisms.into()),
        (
            format!("{l}.plain.sasl.jaas.config"),
            format!(
                "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" \
                 password=\"admin-secret\" user_admin=\"admin-secret\" user_{SASL_USER}=\"{SASL_PASSWORD}\";"
            ),
        ),
        (
            format!("{l}.scram-sha-256.sasl.jaas.config"),
            "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" \
             password=\"admin-secret\";"
                .into(),
        ),
        (
            format!("{l}.scram-sha-512.sasl.jaas.config"),
            "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" \
             password=\"admin-secret\";"
                .into(),
        ),
        (
            format!("{l}.oauthbearer.sasl.jaas.config"),
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
             unsecuredLoginStringClaim_sub=\"admin\";"
                .into(),
        ),
        // KIP-368: sessions end after this; clients re-authenticate on the same connection.
        ("connections.max.reauth.ms".into(), SASL_REAUTH_MS.to_string()),
    ]
}

fn server_properties(
    node: &Node,
    proxy_port: u16,
    voters: &str,
    options: &KafkaOptions,
    tls: Option<&TlsFiles>,
) -> String {
    let rf = options.nodes.min(3);
    let min_isr = if rf >= 3 { 2 } else { 1 };
    let mut props = vec![
        ("node.id".to_string(), node.id.to_string()),
        ("process.roles".into(), "broker,controller".into()),
        ("controller.quorum.voters".into(), voters.to_string()),
        ("controller.listener.names".into(), "CONTROLLER".into()),
        ("inter.broker.listener.name".into(), "INTERNAL".into()),
        (
            "listeners".into(),
            format!(
                "INTERNAL://127.0.0.1:{},EXTERNAL://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                node.internal, node.external, node.controller
            ),
        ),
        (
            "advertised.listeners".into(),
            format!("INTERNAL://127.0.0.1:{},EXTERNAL://127.0.0.1:{proxy_port}", node.internal),
        ),
        ("listener.security.protocol.map".into(), "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT".into()),
        ("log.dirs".into(), node.dir.join("data").display().to_string()),
        ("num.partitions".into(), "3".into()),
        ("default.replication.factor".into(), rf.to_string()),
        ("min.insync.replicas".into(), min_isr.to_string()),
        ("auto.create.topics.enable".into(), "true".into()),
        ("offsets.topic.replication.factor".into(), rf.to_string()),
        ("offsets.topic.num.partitions".into(), "3".into()),
        ("transaction.state.log.replication.factor".into(), rf.to_string()),
        ("transaction.state.log.min.isr".into(), min_isr.to_string()),
        ("transaction.state.log.num.partitions".into(), "3".into()),
        ("share.coordinator.state.topic.replication.factor".into(), rf.to_string()),
        ("share.coordinator.state.topic.min.isr".into(), min_isr.to_string()),
        ("share.coordinator.state.topic.num.partitions".into(), "3".into()),
        ("group.initial.rebalance.delay.ms".into(), "0".into()),
        // Keep every record: interop records carry fixed timestamps from the past, which
        // time-based retention would delete at its next check.
        ("log.retention.ms".into(), "-1".into()),
        // Leaders stay where the tests put them.
        ("auto.leader.rebalance.enable".into(), "false".into()),
        // A killed or frozen broker is fenced (and its partitions failed over) in seconds.
        ("broker.heartbeat.interval.ms".into(), "500".into()),
        ("broker.session.timeout.ms".into(), "4000".into()),
        ("replica.lag.time.max.ms".into(), "10000".into()),
        // Thread pools for three JVMs on two cores.
        ("num.network.threads".into(), "2".into()),
        ("num.io.threads".into(), "2".into()),
        ("background.threads".into(), "2".into()),
        ("num.replica.fetchers".into(), "1".into()),
        ("num.recovery.threads.per.data.dir".into(), "1".into()),
        ("log.cleaner.threads".into(), "1".into()),
        ("group.coordinator.threads".into(), "1".into()),
        ("share.coordinator.threads".into(), "1".into()),
    ];
    if let Some(files) = tls {
        for (key, add) in [
            ("listeners", format!(",SSL://127.0.0.1:{},{MTLS}://127.0.0.1:{}", node.ssl, node.mtls)),
            ("advertised.listeners", format!(",SSL://localhost:{},{MTLS}://localhost:{}", node.ssl, node.mtls)),
            ("listener.security.protocol.map", format!(",SSL:SSL,{MTLS}:SSL")),
        ] {
            if let Some(slot) = props.iter_mut().find(|(k, _)| k == key) {
                slot.1.push_str(&add);
            }
        }
        props.extend(files.server_properties(MTLS));
    }
    if node.sasl_ssl != 0 {
        for (key, add) in [
            ("listeners", format!(",SASL_SSL://127.0.0.1:{}", node.sasl_ssl)),
            ("advertised.listeners", format!(",SASL_SSL://localhost:{}", node.sasl_ssl)),
            ("listener.security.protocol.map", ",SASL_SSL:SASL_SSL".to_string()),
        ] {
            if let Some(slot) = props.iter_mut().find(|(k, _)| k == key) {
                slot.1.push_str(&add);
            }
        }
        props.extend(sasl_properties());
    }
    if options.acl {
        props.extend([
            (
                "authorizer.class.name".to_string(),
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer".to_string(),
            ),
            ("allow.everyone.if.no.acl.found".into(), "true".into()),
            ("super.users".into(), "User:ANONYMOUS;User:admin".into()),
        ]);
    }
    for (k, v) in &options.overrides {
        match props.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.clone(),
            None => props.push((k.clone(), v.clone())),
        }
    }
    let mut text = String::from("# Written by `cargo xtask broker kafka`.\n");
    for (k, v) in props {
        text.push_str(&format!("{k}={v}\n"));
    }
    text
}
