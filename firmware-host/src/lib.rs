//! `bertling-kiosk`: the host side of a bertling kiosk. Loads a model once and serves the
//! [`bertling_protocol`] wire protocol to front-panel firmware over a serial port or Unix
//! sockets, answers a person at a terminal, drives an LCD and keys wired straight to the Pi, and
//! simulates the whole kiosk in a terminal.
//!
//! - [`engine`]: the [`engine::Engine`] trait and the bertling model behind it.
//! - [`server`]: the queue, supersession, cancellation, exactly-one-answer bookkeeping.
//! - [`transport`]: serial, Unix socket and terminal front ends.
//! - [`panel`]: embedded-hal 1.0 drivers for an HD44780/PCF8574 LCD and GPIO keys.
//! - [`kiosk`]: the front-panel logic the simulator and the Pi panel share.
//! - [`sim`]: the terminal simulator.
#![deny(missing_docs)]

pub mod engine;
pub mod kiosk;
pub mod panel;
#[cfg(target_os = "linux")]
pub mod pi;
pub mod server;
pub mod sim;
pub mod transport;
