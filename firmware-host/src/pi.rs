//! The front panel wired straight to the Pi (Linux only): the LCD on an I2C bus
//! (`/dev/i2c-1`) and keys on a GPIO character device (`/dev/gpiochip0`), through
//! `linux-embedded-hal`, driven by the same [`Kiosk`] logic as the simulator.
//!
//! Typing comes from the terminal's standard input (a USB keyboard on the kiosk console, one
//! line at a time); key `i` picks suggestion `i`.

use std::path::Path;
use std::time::Duration;

use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::{CdevPin, Delay, I2cdev};

use crate::kiosk::Kiosk;
use crate::panel::{Keys, Lcd};
use crate::server::Daemon;

/// Where the panel is wired.
#[derive(Debug, Clone)]
pub struct PanelConfig {
    /// The I2C bus device, e.g. `/dev/i2c-1`.
    pub i2c: std::path::PathBuf,
    /// The backpack's address (0x27 usually).
    pub address: u8,
    /// The GPIO chip, e.g. `/dev/gpiochip0`.
    pub gpiochip: std::path::PathBuf,
    /// The key lines (BCM numbers), key 1 first.
    pub keys: Vec<u32>,
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Runs the panel forever: keys and typed lines become requests, replies go on the 16×2 LCD.
pub fn run(daemon: &Daemon, config: &PanelConfig, k: u8) -> std::io::Result<()> {
    let i2c = I2cdev::new(&config.i2c).map_err(io)?;
    let mut lcd: Lcd<_, _, 16, 2> = Lcd::new(i2c, Delay, config.address).map_err(io)?;
    let mut chip = Chip::new(Path::new(&config.gpiochip)).map_err(io)?;
    let mut pins = Vec::new();
    for &line in &config.keys {
        let handle = chip
            .get_line(line)
            .and_then(|l| l.request(LineRequestFlags::INPUT, 1, "bertling-kiosk"))
            .map_err(io)?;
        pins.push(CdevPin::new(handle).map_err(io)?);
    }
    let pins: [CdevPin; 4] = pins
        .try_into()
        .map_err(|_| io("the panel takes exactly 4 keys"))?;
    let mut keys = Keys::new(pins, 3);
    let (client, replies) = daemon.connect();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut kiosk = Kiosk::new("[MASK]", k);
    loop {
        let mut request = None;
        while let Ok(line) = lines_rx.try_recv() {
            request = kiosk.type_str(&line);
        }
        if let Some(key) = keys.poll().map_err(io)? {
            request = kiosk.pick(key).or(request);
        }
        if let Some((id, request)) = request {
            client.submit(id, request);
        }
        while let Ok((id, response)) = replies.try_recv() {
            kiosk.on_reply(id, response);
        }
        let lines = kiosk.lines::<16, 2>();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        lcd.show(&lines).map_err(io)?;
        std::thread::sleep(Duration::from_millis(5));
    }
}
