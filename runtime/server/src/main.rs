//! `farmem-server`: the memory server as a process.
//!
//! Prints `farmem-server listening on ADDR` on stdout once it accepts connections (with
//! `--listen 127.0.0.1:0` this is how a parent learns the port), then serves until killed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use farmem_server::config::read_token_file;
use farmem_server::{parse_size, Error, Result, Server, ServerConfig};

/// farmem memory server: offers far memory and runs remote functions next to the data.
#[derive(Parser, Debug)]
#[command(name = "farmem-server", version)]
struct Args {
    /// TOML config file (flags below override its values).
    #[arg(long, value_name = "F.toml")]
    config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Far-memory capacity, e.g. 64MiB, 2GiB, or bytes.
    #[arg(long, value_name = "SIZE")]
    capacity: Option<String>,
    /// File holding the cluster token.
    #[arg(long, value_name = "F")]
    token_file: Option<PathBuf>,
    /// Largest frame body accepted, e.g. 64MiB.
    #[arg(long, value_name = "SIZE")]
    max_frame_body: Option<String>,
    /// Most concurrent connections.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
}

fn config_from(args: Args) -> Result<ServerConfig> {
    let mut config = match &args.config {
        Some(path) => ServerConfig::from_toml_file(path)?,
        None => ServerConfig::new("127.0.0.1:7070", 0, Vec::new()),
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(c) = args.capacity {
        config.capacity_bytes = parse_size(&c)?;
    }
    if let Some(f) = args.token_file {
        config.token = read_token_file(&f)?;
    }
    if let Some(m) = args.max_frame_body {
        let bytes = parse_size(&m)?;
        config.max_frame_body = u32::try_from(bytes).map_err(|_| {
            Error::invalid(format!(
                "--max-frame-body {m} exceeds the protocol's 4 GiB - 1 limit"
            ))
        })?;
    }
    if let Some(n) = args.max_connections {
        config.max_connections = n;
    }
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let started = config_from(args).and_then(Server::start);
    match started {
        Ok(handle) => {
            let mut out = std::io::stdout();
            let _ = writeln!(out, "farmem-server listening on {}", handle.addr());
            let _ = out.flush();
            handle.wait();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("farmem-server: {e}");
            ExitCode::FAILURE
        }
    }
}
