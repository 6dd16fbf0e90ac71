//! Where requests come from: a byte stream speaking the framed protocol (a serial port, a Unix
//! socket connection), or a person at a terminal.

use std::io::{BufRead, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::mpsc::Receiver;

use bertling_protocol::{
    decode, encode, Deframer, ErrorCode, Fed, Request, Response, MAX_WIRE, NOTICE_ID,
};

use crate::server::{Client, Daemon, Reply};

/// Counters of what a framed connection dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Frames that were not valid COBS.
    pub bad_cobs: u64,
    /// Frames longer than the protocol's maximum.
    pub oversize: u64,
    /// Frames too short or with a wrong CRC.
    pub bad_crc: u64,
}

/// Serves one framed connection until `reader` ends (EOF or an error): decodes requests, submits
/// them, and writes replies to `writer` from a thread of its own. Returns what it dropped.
pub fn serve_framed<R, W>(daemon: &Daemon, mut reader: R, writer: W) -> std::io::Result<Dropped>
where
    R: Read,
    W: Write + Send + 'static,
{
    let (client, replies) = daemon.connect();
    let writer = std::thread::Builder::new()
        .name("bertling-writer".into())
        .spawn(move || write_replies(replies, writer))?;
    let mut dropped = Dropped::default();
    let mut deframer = Deframer::new();
    let mut buf = [0u8; 4096];
    let result = loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        for &byte in &buf[..n] {
            on_byte(&client, &mut deframer, byte, &mut dropped);
        }
    };
    drop(client);
    let _ = writer.join();
    match result {
        Ok(()) => Ok(dropped),
        // A pty whose other side closed reads EIO: that is the end of the stream.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => Ok(dropped),
        Err(e) => Err(e),
    }
}

fn on_byte(client: &Client, deframer: &mut Deframer, byte: u8, dropped: &mut Dropped) {
    match deframer.feed(byte) {
        Fed::Pending | Fed::Empty => {}
        Fed::BadCobs => {
            dropped.bad_cobs += 1;
            tracing::debug!("dropped a frame: invalid COBS");
            client.reject(NOTICE_ID, ErrorCode::BadFrame);
        }
        Fed::Oversize => {
            dropped.oversize += 1;
            tracing::debug!("dropped an oversize frame");
            client.reject(NOTICE_ID, ErrorCode::BadFrame);
        }
        Fed::Frame(frame) => match decode::<Request>(frame) {
            Ok((id, request)) => client.submit(id, request),
            Err(error) => {
                tracing::debug!("bad frame: {error}");
                let (id, code) = error.reply();
                if code == ErrorCode::BadFrame {
                    dropped.bad_crc += 1;
                }
                client.reject(id, code);
            }
        },
    }
}

fn write_replies<W: Write>(replies: Receiver<Reply>, mut writer: W) {
    let mut wire = [0u8; MAX_WIRE];
    for (id, response) in replies {
        let n = match encode(id, &response, &mut wire) {
            Ok(n) => n,
            Err(e) => {
                // Unreachable for the protocol's own types (MAX_WIRE fits them all).
                tracing::error!("cannot encode the reply to {id}: {e}");
                continue;
            }
        };
        if let Err(e) = writer.write_all(&wire[..n]).and_then(|()| writer.flush()) {
            tracing::warn!("writing a reply failed: {e}");
            return;
        }
    }
}

/// Opens a serial device (a UART such as `/dev/ttyAMA0`, a USB adapter, a pty) for the protocol:
/// raw mode (8N1, no echo, no line editing, no flow control) at `baud`.
pub fn open_serial(path: &Path, baud: u32) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    use rustix::termios::{self, ControlModes, OptionalActions};
    let fd: OwnedFd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut tio = termios::tcgetattr(&fd)?;
    tio.make_raw();
    tio.control_modes |= ControlModes::CLOCAL | ControlModes::CREAD;
    tio.control_modes -= ControlModes::CRTSCTS | ControlModes::CSTOPB | ControlModes::PARENB;
    tio.special_codes[termios::SpecialCodeIndex::VMIN] = 1;
    tio.special_codes[termios::SpecialCodeIndex::VTIME] = 0;
    tio.set_speed(baud)?;
    termios::tcsetattr(&fd, OptionalActions::Now, &tio)?;
    Ok(std::fs::File::from(fd))
}

/// Serves a serial device until it ends (for a pty: its other side closes).
pub fn serve_serial(daemon: &Daemon, path: &Path, baud: u32) -> std::io::Result<Dropped> {
    let port = open_serial(path, baud)?;
    let writer = port.try_clone()?;
    tracing::info!("serving {}", path.display());
    serve_framed(daemon, port, writer)
}

/// Serves a Unix socket at `path` forever, one thread per connection (each connection is one
/// client). A stale socket file is replaced.
pub fn serve_unix(daemon: &Daemon, path: &Path) -> std::io::Result<()> {
    use std::os::unix::net::UnixListener;
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    tracing::info!("listening on {}", path.display());
    std::thread::scope(|scope| {
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    continue;
                }
            };
            scope.spawn(move || {
                let writer = match stream.try_clone() {
                    Ok(writer) => writer,
                    Err(e) => return tracing::warn!("cloning a connection failed: {e}"),
                };
                match serve_framed(daemon, stream, writer) {
                    Ok(dropped) if dropped != Dropped::default() => {
                        tracing::info!("connection closed; dropped {dropped:?}")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("connection failed: {e}"),
                }
            });
        }
        Ok(())
    })
}

/// The terminal mode: each input line is a fill-mask request (`k` suggestions); the answer is
/// printed as `word probability` lines, or `error: ...`. Lines starting with `:complete ` ask
/// for a completion instead. Ends at EOF.
pub fn serve_lines<R: BufRead, W: Write>(
    daemon: &Daemon,
    input: R,
    mut output: W,
    k: u8,
) -> std::io::Result<()> {
    let (client, replies) = daemon.connect();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let id = n as u32 + 1;
        let (complete, text) = match line.strip_prefix(":complete ") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let Ok(text) = bertling_protocol::Text::try_from(text) else {
            writeln!(
                output,
                "error: the text is longer than {} bytes",
                bertling_protocol::MAX_TEXT
            )?;
            continue;
        };
        let request = if complete {
            Request::Complete { text, k }
        } else {
            Request::FillMask { text, k }
        };
        client.submit(id, request);
        // One request at a time: the reply to this id is the next one.
        match replies.recv() {
            Ok((_, Response::Suggestions(list))) => {
                for s in list {
                    writeln!(output, "{}\t{:.4}", s.word, s.probability)?;
                }
            }
            Ok((_, Response::Error(code))) => writeln!(output, "error: {code}")?,
            Ok((_, other)) => writeln!(output, "{other:?}")?,
            Err(_) => break,
        }
        writeln!(output)?;
        output.flush()?;
    }
    Ok(())
}
