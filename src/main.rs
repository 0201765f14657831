//! The `plotter2` binary: parse, dispatch, print. Each role lives in its crate; this is the only
//! place that sees them all.

mod cli;
mod commands;
mod connect;
mod explaincmd;
mod lineagecmd;
mod output;
mod pipeline_run;
mod progress;
mod roles;
mod rulecmds;
mod runcmds;
mod statuscmd;
mod up;
mod watch;

use clap::Parser;
use tracing::Instrument;

use crate::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    // rustls panics at first TLS use when more than one provider is compiled in and none is
    // chosen; an error here only means one was installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", output::error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        // Roles share the cores between raft, NATS, hashing and I/O: a multi-thread runtime.
        Command::Coordinator(args) => role("plotter2-coordinator", &args.metrics, || {
            roles::run_coordinator(&cli.global, &args)
        }),
        Command::Stager(args) => role("plotter2-stager", &args.metrics, || {
            roles::run_stager(&cli.global, &args)
        }),
        Command::Worker(args) => role("plotter2-worker", &args.metrics, || {
            roles::run_worker(&cli.global, &args)
        }),
        Command::WorkerGuard => Ok(plotter2_worker::guard::serve()?),
        Command::PipelineRun { plan, out, memory } => pipeline_run::run(&plan, &out, memory),
        Command::Up(args) => {
            // Children are forked from this one thread, so PR_SET_PDEATHSIG ties them to `up`.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async {
                let telemetry = plotter2_node::telemetry::init("plotter2-up", "warn")?;
                let done = up::run(&cli.global, args).await;
                telemetry.shutdown().await;
                done
            })
        }
        command => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let done = rt.block_on(async {
                let telemetry = plotter2_node::telemetry::init("plotter2-cli", "warn")?;
                // One span for the whole command, in the trace handed over in TRACEPARENT.
                let span = tracing::info_span!("plotter2", command = command.name());
                let handed = std::env::var(plotter2_node::telemetry::TRACEPARENT_ENV).ok();
                plotter2_node::telemetry::adopt_traceparent(&span, handed.as_deref());
                let done = commands::run(&cli.global, command).instrument(span).await;
                telemetry.shutdown().await;
                done
            });
            // An exporter still retrying on a blocking thread does not hold the CLI up.
            rt.shutdown_timeout(std::time::Duration::from_millis(50));
            done
        }
    }
}

/// Runs one role on a multi-thread runtime with telemetry named `service`.
fn role<F, Fut>(service: &'static str, metrics: &cli::MetricsArg, start: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let telemetry = plotter2_node::telemetry::init(service, "info")?;
        let _scrape = match metrics.addr {
            Some(addr) => Some(plotter2_node::metrics::serve(addr).await.map_err(|e| {
                anyhow::anyhow!("cannot serve metrics on {addr}: {e}; give --metrics another port")
            })?),
            None => None,
        };
        let done = start().await;
        telemetry.shutdown().await;
        done
    })
}
