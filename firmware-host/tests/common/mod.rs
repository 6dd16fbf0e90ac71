//! Shared by the integration tests: the tiny DistilBERT fixture compiled once, a pty with the
//! real daemon on its far side, and a firmware-side client that speaks the protocol over it.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Mutex;

use bertling_protocol::{decode, encode, Deframer, Fed, Request, Response, MAX_WIRE};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("firmware-host has a parent")
        .to_path_buf()
}

pub fn scratch() -> PathBuf {
    let dir = repo_root()
        .join("target/test-scratch")
        .join(format!("kiosk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

static COMPILE: Mutex<()> = Mutex::new(());

/// The DistilBERT fixture as a model file (compiled once per test process).
pub fn model() -> PathBuf {
    let _guard = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
    let out = scratch().join("distilbert.bertling");
    if !out.exists() {
        // The `bertling` command: $BERTLING_BIN (set by scripts/test.sh), else target/debug.
        let bin = std::env::var_os("BERTLING_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/debug/bertling"));
        let status = Command::new(&bin)
            .arg("compile")
            .arg(repo_root().join("models/fixtures/distilbert"))
            .arg("-o")
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e}: run `cargo build -p bertling-tools`",
                    bin.display()
                )
            });
        assert!(status.success(), "compiling the distilbert fixture failed");
    }
    out
}

pub fn daemon_bin() -> &'static str {
    env!("CARGO_BIN_EXE_bertling-kiosk")
}

/// The daemon serving a fresh pty; the test holds the master side.
pub struct PtyDaemon {
    pub child: Child,
    pub master: File,
    /// The slave kept open by the test, so the pty never hangs up under the daemon.
    _slave: OwnedFd,
}

impl PtyDaemon {
    pub fn start() -> PtyDaemon {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        let name = PathBuf::from(name.to_str().expect("pts name is UTF-8"));
        // Raw before the daemon starts, so nothing we write is ever echoed or line-edited.
        let slave = bertling_kiosk::transport::open_serial(&name, 115_200).expect("open slave");
        let child = Command::new(daemon_bin())
            .arg("--model")
            .arg(model())
            .arg("--serial")
            .arg(&name)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning bertling-kiosk");
        PtyDaemon {
            child,
            master: File::from(master),
            _slave: slave.into(),
        }
    }

    /// A reader thread turning the master's bytes into decoded replies.
    pub fn replies(&self) -> Receiver<(u32, Response)> {
        let mut reader = self.master.try_clone().expect("clone master");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut deframer = Deframer::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                for &b in &buf[..n] {
                    if let Fed::Frame(frame) = deframer.feed(b) {
                        let reply =
                            decode::<Response>(frame).expect("the daemon sends good frames");
                        if tx.send(reply).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        rx
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to pty");
    }
}

impl Drop for PtyDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `request` as wire bytes, appended to `out`.
pub fn frame_into(out: &mut Vec<u8>, id: u32, request: &Request) {
    let mut wire = [0u8; MAX_WIRE];
    let n = encode(id, request, &mut wire).expect("encode");
    out.extend_from_slice(&wire[..n]);
}

pub fn fill(text: &str, k: u8) -> Request {
    Request::FillMask {
        text: text.try_into().expect("short text"),
        k,
    }
}

/// xorshift64: deterministic test randomness.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
