//! Binary entry point: flags, logging, the crypto provider, and the subcommands.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use gpuscale_adapter::cli::{self, Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // One crypto provider for rustls, kube and reqwest alike (see DESIGN.md).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gpuscale-adapter: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => gpuscale_adapter::serve::run(args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::CheckConfig { file } => cli::check_config(&file).map(|text| {
                print!("{text}");
                ExitCode::SUCCESS
            }),
            Command::Query {
                metric,
                namespace,
                selector,
                config,
            } => cli::query(&config, &metric, &namespace, &selector)
                .await
                .map(|(ok, json)| {
                    println!("{json}");
                    if ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(3)
                    }
                }),
            Command::Explain {
                hpa,
                config,
                current_replicas,
            } => cli::explain(&config, &hpa, current_replicas)
                .await
                .map(|text| {
                    print!("{text}");
                    ExitCode::SUCCESS
                }),
            Command::Replay(args) => gpuscale_adapter::replay::main(*args)
                .await
                .map(|text| {
                    print!("{text}");
                    ExitCode::SUCCESS
                })
                .map_err(|e| cli::Error::Other(e.to_string())),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gpuscale-adapter: {e}");
            ExitCode::from(2)
        }
    }
}
