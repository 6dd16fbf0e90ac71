//! A front panel wired straight to the Pi: an HD44780 character LCD behind a PCF8574 I2C
//! backpack, and GPIO keys to pick a suggestion. Plain `embedded-hal` 1.0 drivers, so they run on
//! the Pi through `linux-embedded-hal` and in tests against `embedded-hal-mock`.

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::InputPin;
use embedded_hal::i2c::I2c;

/// PCF8574 pin P0: HD44780 register select (0 = command, 1 = data).
pub const RS: u8 = 0x01;
/// PCF8574 pin P1: read/write (always 0: write).
pub const RW: u8 = 0x02;
/// PCF8574 pin P2: enable; the HD44780 latches a nibble on its falling edge.
pub const EN: u8 = 0x04;
/// PCF8574 pin P3: backlight transistor.
pub const BACKLIGHT: u8 = 0x08;
/// The usual backpack address (PCF8574; the PCF8574A variant is 0x3F).
pub const DEFAULT_ADDRESS: u8 = 0x27;

/// An HD44780 display of `COLS` × `ROWS` characters (16×2 and 20×4 are common) behind a PCF8574.
///
/// Each nibble goes out as one two-byte I2C write, `[nibble | EN, nibble]`: the enable pulse
/// lasts one I2C byte (≥ 22 µs at 400 kHz, far above the 450 ns the HD44780 needs). A byte is
/// one four-byte write: high nibble then low nibble.
///
/// ```
/// use bertling_kiosk::panel::Lcd;
/// use embedded_hal_mock::eh1::{delay::NoopDelay, i2c::{Mock, Transaction}};
///
/// // 'A' (0x41) as data, backlight on: high nibble 4, low nibble 1, each pulsed on EN.
/// let expected = [Transaction::write(0x27, vec![0x4D, 0x49, 0x1D, 0x19])];
/// let mut i2c = Mock::new(&expected);
/// let mut lcd: Lcd<_, _, 16, 2> = Lcd::new_uninitialized(i2c.clone(), NoopDelay, 0x27);
/// lcd.write_char(b'A').unwrap();
/// i2c.done();
/// ```
pub struct Lcd<I, D, const COLS: usize, const ROWS: usize> {
    i2c: I,
    delay: D,
    address: u8,
    backlight: u8,
    shown: [[u8; COLS]; ROWS],
}

impl<I: I2c, D: DelayNs, const COLS: usize, const ROWS: usize> Lcd<I, D, COLS, ROWS> {
    /// Takes the bus and resets the display into 4-bit mode (the HD44780 datasheet's
    /// "initializing by instruction" sequence), display on, cursor off, cleared.
    pub fn new(i2c: I, delay: D, address: u8) -> Result<Self, I::Error> {
        let mut lcd = Lcd::new_uninitialized(i2c, delay, address);
        lcd.init()?;
        Ok(lcd)
    }

    /// Takes the bus without touching the display (for a display initialized already).
    pub fn new_uninitialized(i2c: I, delay: D, address: u8) -> Self {
        Lcd {
            i2c,
            delay,
            address,
            backlight: BACKLIGHT,
            shown: [[b' '; COLS]; ROWS],
        }
    }

    /// The reset sequence.
    pub fn init(&mut self) -> Result<(), I::Error> {
        self.delay.delay_ms(50);
        self.nibble(0x3, 0)?;
        self.delay.delay_us(4500);
        self.nibble(0x3, 0)?;
        self.delay.delay_us(4500);
        self.nibble(0x3, 0)?;
        self.delay.delay_us(150);
        self.nibble(0x2, 0)?;
        self.command(0x28)?; // function set: 4-bit, 2 lines, 5×8 dots
        self.command(0x0C)?; // display on, cursor off, blink off
        self.clear()?;
        self.command(0x06) // entry mode: increment, no shift
    }

    /// Clears the display (and what it remembers having shown).
    pub fn clear(&mut self) -> Result<(), I::Error> {
        self.command(0x01)?;
        self.delay.delay_us(2000);
        self.shown = [[b' '; COLS]; ROWS];
        Ok(())
    }

    /// Moves the cursor; out-of-range positions are clamped.
    pub fn set_cursor(&mut self, col: usize, row: usize) -> Result<(), I::Error> {
        const OFFSETS: [usize; 4] = [0x00, 0x40, 0x14, 0x54];
        let row = row.min(ROWS.saturating_sub(1)).min(3);
        let col = col.min(COLS.saturating_sub(1));
        self.command(0x80 | (OFFSETS[row] + col) as u8)
    }

    /// Writes one character code at the cursor.
    pub fn write_char(&mut self, code: u8) -> Result<(), I::Error> {
        self.byte(code, RS)
    }

    /// Shows `lines` (padded or cut to `COLS`), rewriting only the rows that changed. Characters
    /// the display's ROM lacks (non-ASCII) show as `?`.
    pub fn show(&mut self, lines: &[&str]) -> Result<(), I::Error> {
        for row in 0..ROWS {
            let text = lines.get(row).copied().unwrap_or("");
            let line = to_row::<COLS>(text);
            if line != self.shown[row] {
                self.set_cursor(0, row)?;
                for &code in &line {
                    self.write_char(code)?;
                }
                self.shown[row] = line;
            }
        }
        Ok(())
    }

    /// Turns the backlight on or off.
    pub fn set_backlight(&mut self, on: bool) -> Result<(), I::Error> {
        self.backlight = if on { BACKLIGHT } else { 0 };
        self.i2c.write(self.address, &[self.backlight])
    }

    /// Gives the bus and delay back.
    pub fn release(self) -> (I, D) {
        (self.i2c, self.delay)
    }

    fn command(&mut self, command: u8) -> Result<(), I::Error> {
        self.byte(command, 0)?;
        self.delay.delay_us(50);
        Ok(())
    }

    fn nibble(&mut self, nibble: u8, rs: u8) -> Result<(), I::Error> {
        let data = (nibble << 4) | rs | self.backlight;
        self.i2c.write(self.address, &[data | EN, data])
    }

    fn byte(&mut self, byte: u8, rs: u8) -> Result<(), I::Error> {
        let high = (byte & 0xF0) | rs | self.backlight;
        let low = (byte << 4) | rs | self.backlight;
        self.i2c
            .write(self.address, &[high | EN, high, low | EN, low])
    }
}

/// `text` as one display row of character codes: ASCII kept, anything else `?`, padded with
/// spaces or cut to `COLS`.
pub fn to_row<const COLS: usize>(text: &str) -> [u8; COLS] {
    let mut row = [b' '; COLS];
    for (slot, c) in row.iter_mut().zip(text.chars()) {
        *slot = if c.is_ascii() && !c.is_ascii_control() {
            c as u8
        } else {
            b'?'
        };
    }
    row
}

/// `N` keys on GPIO inputs, active low (a key pulls its pin to ground; the pin has a pull-up),
/// debounced by polling: a key counts as pressed once it reads down on `stable` polls in a row,
/// and can be pressed again only after it reads up as long.
///
/// ```
/// use bertling_kiosk::panel::Keys;
/// use embedded_hal_mock::eh1::digital::{Mock, State, Transaction};
///
/// let reads = [State::High, State::Low, State::Low, State::Low];
/// let mut pin = Mock::new(&reads.map(Transaction::get));
/// let mut keys = Keys::new([pin.clone()], 2);
/// assert_eq!(keys.poll().unwrap(), None); // up
/// assert_eq!(keys.poll().unwrap(), None); // down once: not yet
/// assert_eq!(keys.poll().unwrap(), Some(0)); // down twice: pressed
/// assert_eq!(keys.poll().unwrap(), None); // held: no repeat
/// pin.done();
/// ```
pub struct Keys<P, const N: usize> {
    pins: [P; N],
    stable: u8,
    count: [u8; N],
    down: [bool; N],
}

impl<P: InputPin, const N: usize> Keys<P, N> {
    /// Keys on `pins`, debounced over `stable` polls (at least 1). Poll every few milliseconds.
    pub fn new(pins: [P; N], stable: u8) -> Self {
        Keys {
            pins,
            stable: stable.max(1),
            count: [0; N],
            down: [false; N],
        }
    }

    /// Reads every key once; returns the first key that became pressed on this poll.
    pub fn poll(&mut self) -> Result<Option<usize>, P::Error> {
        let mut pressed = None;
        for i in 0..N {
            let reads_down = self.pins[i].is_low()?;
            if reads_down != self.down[i] {
                self.count[i] += 1;
                if self.count[i] >= self.stable {
                    self.down[i] = reads_down;
                    self.count[i] = 0;
                    if reads_down && pressed.is_none() {
                        pressed = Some(i);
                    }
                }
            } else {
                self.count[i] = 0;
            }
        }
        Ok(pressed)
    }

    /// Gives the pins back.
    pub fn release(self) -> [P; N] {
        self.pins
    }
}
