//! `bertling-kiosk --simulate`: the whole kiosk in a terminal. The LCD is drawn as a box of
//! `COLS` × `ROWS` characters exactly as the real display would show it; typing goes to the
//! same [`Kiosk`] logic and the same [`Daemon`] as on the Pi, with the real model.

use std::sync::mpsc::Receiver;
use std::time::Duration;

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use crate::kiosk::Kiosk;
use crate::panel::to_row;
use crate::server::{Client, Daemon, Reply};

/// Display columns of the simulated LCD.
pub const COLS: usize = 20;
/// Display rows of the simulated LCD.
pub const ROWS: usize = 4;

/// Runs the simulator until Esc or Ctrl-C.
pub fn run(daemon: &Daemon, k: u8) -> std::io::Result<()> {
    let (client, replies) = daemon.connect();
    let mut kiosk = Kiosk::new("[MASK]", k);
    let mut terminal = ratatui::init();
    let result = event_loop(&mut terminal, &client, &replies, &mut kiosk);
    ratatui::restore();
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    client: &Client,
    replies: &Receiver<Reply>,
    kiosk: &mut Kiosk,
) -> std::io::Result<()> {
    let send = |request: Option<(u32, bertling_protocol::Request)>| {
        if let Some((id, request)) = request {
            client.submit(id, request);
        }
    };
    loop {
        while let Ok((id, response)) = replies.try_recv() {
            kiosk.on_reply(id, response);
        }
        terminal.draw(|frame| draw(frame, kiosk))?;
        if !event::poll(Duration::from_millis(30))? {
            continue;
        }
        let Event::Key(key) = event::read()? else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Esc => return Ok(()),
            KeyCode::Char('c') if ctrl => return Ok(()),
            KeyCode::F(n) if (1..=9).contains(&n) => send(kiosk.pick(usize::from(n) - 1)),
            KeyCode::Char(c @ '1'..='9') if alt => send(kiosk.pick(c as usize - '1' as usize)),
            KeyCode::Tab => send(kiosk.pick(0)),
            KeyCode::Backspace => send(kiosk.backspace()),
            KeyCode::Enter => send(kiosk.type_str(" ")),
            KeyCode::Char(c) if !ctrl => send(kiosk.type_str(&c.to_string())),
            _ => {}
        }
    }
}

/// Draws the simulated LCD and the help line.
pub fn draw(frame: &mut Frame, kiosk: &Kiosk) {
    let [lcd_area, help_area] =
        Layout::vertical([Constraint::Length(ROWS as u16 + 2), Constraint::Min(1)])
            .areas(frame.area());
    let [lcd_area, _] =
        Layout::horizontal([Constraint::Length(COLS as u16 + 2), Constraint::Min(0)])
            .areas(lcd_area);
    let rows: Vec<Line> = kiosk
        .lines::<COLS, ROWS>()
        .iter()
        .map(|line| Line::from(String::from_utf8_lossy(&to_row::<COLS>(line)).into_owned()))
        .collect();
    let lcd = Paragraph::new(rows)
        .style(Style::default().fg(Color::Black).bg(Color::Green))
        .block(Block::default().borders(Borders::ALL).title("LCD"));
    frame.render_widget(lcd, lcd_area);
    let waiting = if kiosk.waiting_for().is_some() {
        "thinking…"
    } else {
        ""
    };
    let help = Paragraph::new(vec![
        Line::from("type to write · F1–F9 or Alt+1–9 picks a suggestion (Tab: the first)"),
        Line::from("Backspace deletes · Esc quits"),
        Line::from(waiting),
    ]);
    frame.render_widget(help, help_area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    #[test]
    fn the_lcd_box_shows_the_panel_rows() {
        let mut kiosk = Kiosk::new("[MASK]", 4);
        kiosk.type_str("hello wörld");
        let mut terminal = Terminal::new(TestBackend::new(60, 10)).unwrap();
        terminal.draw(|f| draw(f, &kiosk)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let row: String = (1..=COLS as u16)
            .map(|x| buffer[(x, 1)].symbol().to_string())
            .collect();
        // Non-ASCII shows as the LCD would: '?'.
        assert_eq!(row, "hello w?rld_        ");
    }
}
