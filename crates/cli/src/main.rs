//! `krab`: krab's command-line tool. Metadata, topics, producing and consuming (kcat-like),
//! consumer groups and a quick benchmark, all through krab's own clients.
//!
//! Every failure ends as one line on stderr, `krab: <what>: <why>`, and a non-zero exit code:
//! 1 for a failure, 2 for bad usage (clap's), 130 when interrupted (Ctrl-C).

#![forbid(unsafe_code)]

mod bench;
mod connect;
mod consume;
mod format;
mod group;
mod metadata;
mod produce;
mod progress;
mod table;
mod topic;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

/// krab: produce, consume and administer Apache Kafka from the command line.
#[derive(Debug, Parser)]
#[command(name = "krab", version, about, propagate_version = true, max_term_width = 110)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) connect: connect::ConnectArgs,
    #[command(flatten)]
    pub(crate) display: progress::DisplayArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Brokers, controller, and topics with their partitions, leaders, replicas and ISR.
    Metadata(metadata::MetadataArgs),
    /// Create, delete, list, describe and alter topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Produce records read from stdin or a file (one per line, or split by --delimiter).
    Produce(produce::ProduceArgs),
    /// Consume records and print them (a kcat-like format string, or JSON).
    Consume(consume::ConsumeArgs),
    /// List, describe, delete consumer groups; show their lag; reset their offsets.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// krab's quick benchmark: produce (with acknowledgement latency) or consume.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done.
    Done,
    /// Stopped by Ctrl-C (exit code 130).
    Interrupted,
}

/// The exit code of an interrupted command (128 + SIGINT), as shells report it.
const INTERRUPTED: u8 = 130;

/// Ctrl-C, watched from now on: the receiver turns `true` at the first one, so the command can
/// wind down (flush, commit) and report; a second Ctrl-C ends krab at once.
pub(crate) fn interrupts() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handling here: Ctrl-C keeps its default effect.
            std::future::pending::<()>().await;
        }
        let _ = tx.send(true);
        eprintln!("krab: interrupted; finishing (Ctrl-C again to stop at once)");
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("krab: stopped");
        std::process::exit(i32::from(INTERRUPTED));
    });
    rx
}

/// Resolves once `interrupted` is `true` (never, if its sender is gone without it).
pub(crate) async fn interrupted(interrupted: &mut tokio::sync::watch::Receiver<bool>) {
    if interrupted.wait_for(|i| *i).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn main() -> ExitCode {
    // A panic is a bug in krab, never the user's input: one line, no backtrace.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("krab: internal error (a bug in krab, please report it): {what}{at}");
    }));
    if let Ok(filter) = std::env::var("KRAB_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    let cli = Cli::parse();
    if let Command::Completions { shell } = &cli.command {
        let mut script = Vec::new();
        clap_complete::generate(*shell, &mut Cli::command(), "krab", &mut script);
        return match table::print(&String::from_utf8_lossy(&script)) {
            Err(e) if !is_broken_pipe(&e) => {
                eprintln!("krab: {}", one_line(&e));
                ExitCode::FAILURE
            }
            _ => ExitCode::SUCCESS,
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("krab: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Tasks of the clients may still be running (a connection being closed): do not wait.
    runtime.shutdown_background();
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Interrupted) => ExitCode::from(INTERRUPTED),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("krab: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let Cli { connect, display, command } = cli;
    let settings = connect::Settings::from_args(&connect)?;
    match command {
        Command::Metadata(args) => metadata::run(&settings, args).await,
        Command::Topic(cmd) => topic::run(&settings, cmd).await,
        Command::Produce(args) => produce::run(&settings, &display, args).await,
        Command::Consume(args) => consume::run(&settings, &display, args).await,
        Command::Group(cmd) => group::run(&settings, cmd).await,
        Command::Bench(cmd) => bench::run(&settings, &display, cmd).await,
        Command::Completions { .. } => Ok(Outcome::Done),
    }
}

/// The error and its causes on one line: `what: why: why`.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        // Library errors often repeat their source's words in their own message.
        if parts.last().is_some_and(|last| last.ends_with(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// Whether the output was closed by its reader (`krab consume | head`): not a failure.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("krab").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn connection_options_are_global() {
        let cli = parse(&["consume", "-t", "orders", "-b", "k1:9092,k2:9092", "-X", "fetch.max.wait.ms=100"]).unwrap();
        assert_eq!(cli.connect.bootstrap.as_deref(), Some("k1:9092,k2:9092"));
        assert_eq!(cli.connect.properties, vec!["fetch.max.wait.ms=100".to_string()]);
        let cli = parse(&["-b", "k:1", "--tls", "--ca", "ca.pem", "metadata", "--json"]).unwrap();
        assert!(cli.connect.tls);
        assert_eq!(cli.connect.ca.as_deref(), Some(std::path::Path::new("ca.pem")));
        assert!(matches!(cli.command, Command::Metadata(m) if m.json));
    }

    #[test]
    fn produce_arguments() {
        let cli = parse(&[
            "produce",
            "-t",
            "t",
            "-K",
            ":",
            "-H",
            "a=1",
            "-H",
            "b=2",
            "-p",
            "3",
            "--compression",
            "lz4",
            "--acks",
            "1",
            "--idempotence",
            "--delimiter",
            "\\n\\n",
            "--file",
            "in.txt",
        ])
        .unwrap();
        let Command::Produce(p) = cli.command else { panic!("not produce") };
        assert_eq!(p.topic, "t");
        assert_eq!(p.key_separator.as_deref(), Some(":"));
        assert_eq!(p.headers, vec!["a=1", "b=2"]);
        assert_eq!(p.partition, Some(3));
        assert_eq!(p.compression.as_deref(), Some("lz4"));
        assert_eq!(p.acks.as_deref(), Some("1"));
        assert!(p.idempotence);
        assert_eq!(p.delimiter.as_deref(), Some("\\n\\n"));
        assert!(parse(&["produce"]).is_err(), "a topic is required");
        assert!(parse(&["produce", "-t", "t", "-p", "x"]).is_err(), "a partition is a number");
    }

    #[test]
    fn consume_arguments() {
        let cli = parse(&["consume", "-t", "t", "-o", "-10", "-e", "-c", "5", "-f", "%k %s\\n", "-p", "0,2"]).unwrap();
        let Command::Consume(c) = cli.command else { panic!("not consume") };
        assert_eq!(c.offset.as_deref(), Some("-10"));
        assert!(c.exit_at_end);
        assert_eq!(c.count, Some(5));
        assert_eq!(c.format.as_deref(), Some("%k %s\\n"));
        assert_eq!(c.partitions, vec![0, 2]);
        let cli = parse(&["consume", "-t", "a", "-t", "b", "-G", "g", "--json"]).unwrap();
        let Command::Consume(c) = cli.command else { panic!("not consume") };
        assert_eq!(c.topics, vec!["a", "b"]);
        assert_eq!(c.group.as_deref(), Some("g"));
        assert!(c.json);
        assert!(parse(&["consume", "-t", "t", "--json", "-f", "%s"]).is_err(), "--json and -f exclude each other");
    }

    #[test]
    fn topic_group_bench_and_completions_arguments() {
        let cli = parse(&["topic", "create", "t", "--partitions", "6", "--replication-factor", "3", "--config", "a=b"])
            .unwrap();
        assert!(matches!(cli.command, Command::Topic(topic::TopicCommand::Create(c)) if c.partitions == Some(6)));
        let cli = parse(&["group", "reset-offsets", "-G", "g", "-t", "t:0,1", "--to-offset", "5"]).unwrap();
        assert!(matches!(cli.command, Command::Group(group::GroupCommand::ResetOffsets(_))));
        assert!(
            parse(&["group", "reset-offsets", "-G", "g", "-t", "t", "--to-earliest", "--to-latest"]).is_err(),
            "one target only"
        );
        assert!(parse(&["group", "reset-offsets", "-G", "g", "-t", "t"]).is_err(), "a target is required");
        let cli = parse(&["bench", "produce", "-t", "t", "--records", "1000", "--size", "100"]).unwrap();
        assert!(matches!(cli.command, Command::Bench(bench::BenchCommand::Produce(b)) if b.records == 1000));
        let cli = parse(&["completions", "zsh"]).unwrap();
        assert!(matches!(cli.command, Command::Completions { shell: clap_complete::Shell::Zsh }));
        assert!(parse(&["completions", "tcsh"]).is_err());
    }

    #[test]
    fn completions_generate_for_each_shell() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "krab", &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("reset-offsets"), "{shell}: no subcommands in the script");
        }
    }

    #[test]
    fn errors_print_on_one_line_without_repeats() {
        let e =
            anyhow::anyhow!("connection refused").context("cluster error: connection refused").context("connecting");
        assert_eq!(one_line(&e), "connecting: cluster error: connection refused");
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe)).context("writing");
        assert!(is_broken_pipe(&pipe));
    }
}
