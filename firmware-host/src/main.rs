//! `bertling-kiosk`: loads a model once and serves it to the kiosk's front panel.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;

use bertling_kiosk::engine::ModelEngine;
use bertling_kiosk::server::{Daemon, DEFAULT_CAPACITY};
use bertling_kiosk::transport;

/// Serves a bertling model to a kiosk's front panel: framed requests over a serial port and/or a
/// Unix socket (protocol: docs/protocol.md), plain lines on stdin (--terminal), a simulated LCD
/// (--simulate), or an LCD and keys wired to the Pi (--panel).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The model file (`bertling compile` output).
    #[arg(long, short)]
    model: PathBuf,
    /// Serial device the firmware talks on (e.g. /dev/ttyAMA0, /dev/ttyUSB0, a pty).
    #[arg(long)]
    serial: Option<PathBuf>,
    /// Serial speed.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// Unix socket to listen on (each connection is one client).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Read requests as lines on stdin, print suggestions on stdout.
    #[arg(long)]
    terminal: bool,
    /// Run the terminal kiosk simulator (an LCD on screen, typing on the keyboard).
    #[arg(long)]
    simulate: bool,
    /// Drive an LCD (PCF8574 backpack on this I2C bus, e.g. /dev/i2c-1) and 4 GPIO keys.
    #[arg(long)]
    panel: Option<PathBuf>,
    /// The LCD backpack's I2C address.
    #[arg(long, default_value = "0x27", value_parser = parse_u8)]
    lcd_address: u8,
    /// GPIO chip of the panel keys.
    #[arg(long, default_value = "/dev/gpiochip0")]
    gpiochip: PathBuf,
    /// GPIO lines of the 4 panel keys (BCM numbers), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "17,27,22,23")]
    keys: Vec<u32>,
    /// Suggestions per request in --terminal, --simulate and --panel modes.
    #[arg(long, short, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=16))]
    k: u8,
    /// Queue capacity (requests waiting for the model; one per client at most).
    #[arg(long, default_value_t = DEFAULT_CAPACITY)]
    queue: usize,
    /// Threads for the model's matrix products.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    threads: usize,
}

fn parse_u8(text: &str) -> Result<u8, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|e| format!("{text}: {e}"))
}

fn main() -> Result<()> {
    // Keep each request's freed tensors for the next instead of page-faulting them back in.
    bertling::memory::retain_freed_memory();
    let args = Args::parse();
    let modes = [
        args.serial.is_some(),
        args.socket.is_some(),
        args.terminal,
        args.simulate,
        args.panel.is_some(),
    ];
    if !modes.contains(&true) {
        bail!("nothing to serve: give --serial, --socket, --terminal, --simulate or --panel");
    }
    if args.simulate && args.terminal {
        bail!("--simulate and --terminal both want the terminal: pick one");
    }
    // The simulator owns the screen: logs go nowhere unless RUST_LOG asks.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(if args.simulate { "off" } else { "info" })
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = bertling::LoadOptions {
        threads: args.threads,
    };
    let model = bertling::Model::load_with(&args.model, &options)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let daemon = Daemon::start(Box::new(ModelEngine::new(model)), args.queue);
    tracing::info!("model loaded: {}", daemon.info().model);

    std::thread::scope(|scope| -> Result<()> {
        let daemon = &daemon;
        if let Some(path) = &args.serial {
            let baud = args.baud;
            scope.spawn(move || match transport::serve_serial(daemon, path, baud) {
                Ok(dropped) => {
                    tracing::info!("{} closed; dropped {dropped:?}", path.display());
                    std::process::exit(0);
                }
                Err(e) => {
                    tracing::error!("serial {}: {e}", path.display());
                    std::process::exit(1);
                }
            });
        }
        if let Some(path) = &args.socket {
            scope.spawn(move || {
                if let Err(e) = transport::serve_unix(daemon, path) {
                    tracing::error!("socket {}: {e}", path.display());
                    std::process::exit(1);
                }
            });
        }
        #[cfg(target_os = "linux")]
        if let Some(i2c) = &args.panel {
            let config = bertling_kiosk::pi::PanelConfig {
                i2c: i2c.clone(),
                address: args.lcd_address,
                gpiochip: args.gpiochip.clone(),
                keys: args.keys.clone(),
            };
            let k = args.k;
            scope.spawn(move || {
                if let Err(e) = bertling_kiosk::pi::run(daemon, &config, k) {
                    tracing::error!("panel: {e}");
                    std::process::exit(1);
                }
            });
        }
        #[cfg(not(target_os = "linux"))]
        if args.panel.is_some() {
            bail!("--panel needs Linux (I2C and GPIO character devices)");
        }
        if args.simulate {
            bertling_kiosk::sim::run(daemon, args.k)?;
            std::process::exit(0);
        }
        if args.terminal {
            let stdin = std::io::stdin().lock();
            transport::serve_lines(daemon, stdin, std::io::stdout().lock(), args.k)?;
            std::process::exit(0);
        }
        Ok(())
    })
}
