//! `krab-mock-cluster`: librdkafka's mock Kafka cluster (from the `rdkafka`
//! crate's bundled librdkafka 2.12.1) in its own process, driven over
//! stdin/stdout by krab's integration tests (`cargo xtask broker mock`).
//!
//! **Unsafe exception.** The rest of krab forbids `unsafe`. This crate is the
//! one place allowed to call C through FFI, because the safe
//! `rdkafka::mocking::MockCluster` lacks request tracking, error pushing with
//! RTTs and more. All `unsafe` is confined to `cluster.rs`, in small blocks
//! each with a `// SAFETY:` comment; the crate does not inherit the
//! workspace lints for that reason (it sets the same ones minus the forbid).
//!
//! # Protocol
//!
//! Started as `krab-mock-cluster [--brokers N]` (default 3; broker ids are
//! `1..=N`, each listening on its own ephemeral `127.0.0.1` port), it prints
//! one line `BOOTSTRAP 127.0.0.1:P1,127.0.0.1:P2,...` and then answers every
//! stdin line with exactly one stdout line, `OK`, `OK <data>` or
//! `ERR <message>`:
//!
//! ```text
//! create TOPIC PARTITIONS RF              leader TOPIC PARTITION BROKER   (BROKER -1: no leader)
//! down BROKER                             up BROKER                        (BROKER -1: all)
//! rtt BROKER MS                           (BROKER -1: all)
//! err APIKEY ERRCODE COUNT                next COUNT requests of APIKEY, any broker, fail with ERRCODE
//! brokererr BROKER APIKEY ERRCODE COUNT [RTT_MS]
//! clearerr APIKEY                         drop pending cluster-level `err`s of APIKEY
//! track start|stop|reset                  start and stop also clear the record
//! count APIKEY [BROKER]                   -> OK <n>   requests recorded since tracking (re)started
//! counts [BROKER]                         -> OK key:n key:n ...  (sorted by key; bare OK if none)
//! bootstrap                               -> OK <bootstrap list>
//! quit                                    (stdin EOF too): destroy the cluster, exit 0
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

mod cluster;
mod command;

use cluster::{MAX_BROKERS, MockCluster};
use command::Command;
use std::io::{BufRead, Write};
use std::process::ExitCode;

const USAGE: &str = "usage: krab-mock-cluster [--brokers N]   (then one command per stdin line; see `quit`)";

fn parse_args() -> Result<i32, String> {
    let mut brokers = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--brokers" => {
                let v = args.next().ok_or("--brokers needs a value")?;
                brokers = v.parse().map_err(|_| format!("--brokers `{v}` is not a number"))?;
                if !(1..=MAX_BROKERS).contains(&brokers) {
                    return Err(format!("--brokers must be 1..={MAX_BROKERS}"));
                }
            }
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(brokers)
}

fn main() -> ExitCode {
    let brokers = match parse_args() {
        Ok(n) => n,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("krab-mock-cluster: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cluster = match MockCluster::new(brokers) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("krab-mock-cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "BOOTSTRAP {}", cluster.bootstrap()).and_then(|()| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    let stdin = std::io::stdin().lock();
    for line in stdin.split(b'\n') {
        let Ok(line) = line else { break };
        let parsed = match std::str::from_utf8(&line) {
            Ok(line) => Command::parse(line),
            Err(_) => Err("command is not UTF-8".to_owned()),
        };
        let reply = match &parsed {
            Ok(cmd) => cmd.run(&cluster),
            Err(e) => Err(e.clone()),
        };
        let written = match reply {
            Ok(None) => writeln!(out, "OK"),
            Ok(Some(data)) => writeln!(out, "OK {data}"),
            // Keep the one-line-per-command invariant whatever the message.
            Err(msg) => writeln!(out, "ERR {}", msg.replace(['\r', '\n'], " ")),
        };
        if written.and_then(|()| out.flush()).is_err() || parsed == Ok(Command::Quit) {
            // The controller went away (or asked to quit): shut down.
            break;
        }
    }
    drop(cluster);
    ExitCode::SUCCESS
}
