//! The `codelayer` command: `serve` (the default) and `migrate`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use codelayer::{
    app::{App, Tuning, shutdown_signal},
    config::Config,
    db::Db,
};

#[derive(Parser)]
#[command(
    version,
    about = "Self-hosted code search over your Bitbucket Cloud repositories"
)]
struct Cli {
    /// Optional TOML file with the same keys as the environment (the environment wins).
    #[arg(long, global = true, env = "CODELAYER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web application and its background workers (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    codelayer::telemetry::init();
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{errors}");
            return std::process::ExitCode::from(2);
        }
    };
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(config).await,
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("codelayer: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    if config.bitbucket.is_none() {
        tracing::warn!(
            "BITBUCKET_CLIENT_ID / BITBUCKET_CLIENT_SECRET are not set: the home page explains how to register the OAuth consumer"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    App::new(config, Tuning::default())
        .await?
        .serve(listener, shutdown_signal())
        .await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let db = Db::connect(&config.database_url).await?;
    db.migrate().await?;
    println!("migrations applied");
    Ok(())
}
