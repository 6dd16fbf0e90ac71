//! The LCD and key drivers against embedded-hal-mock, down to the exact I2C bytes. Expected
//! bytes are worked out by hand from the PCF8574 backpack wiring (P0 RS, P1 RW, P2 EN,
//! P3 backlight, P4..P7 = D4..D7) and the HD44780 datasheet, not from the driver.

use bertling_kiosk::panel::{Keys, Lcd};
use embedded_hal::delay::DelayNs;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinT};
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as I2cT};

const ADDR: u8 = 0x27;

/// Records every delay, in nanoseconds.
#[derive(Default)]
struct Recorded(Vec<u64>);

impl DelayNs for &mut Recorded {
    fn delay_ns(&mut self, ns: u32) {
        self.0.push(u64::from(ns));
    }
}

fn w(bytes: &[u8]) -> I2cT {
    I2cT::write(ADDR, bytes.to_vec())
}

/// One character as data with the backlight on: high nibble, low nibble, each with EN high then low.
fn ch(c: u8) -> I2cT {
    let high = (c & 0xF0) | 0x09;
    let low = (c << 4) | 0x09;
    w(&[high | 0x04, high, low | 0x04, low])
}

fn init_sequence() -> Vec<I2cT> {
    vec![
        w(&[0x3C, 0x38]), // 0x3 nibble, three times: reset to 8-bit
        w(&[0x3C, 0x38]),
        w(&[0x3C, 0x38]),
        w(&[0x2C, 0x28]),             // 0x2 nibble: 4-bit mode
        w(&[0x2C, 0x28, 0x8C, 0x88]), // 0x28 function set
        w(&[0x0C, 0x08, 0xCC, 0xC8]), // 0x0C display on
        w(&[0x0C, 0x08, 0x1C, 0x18]), // 0x01 clear
        w(&[0x0C, 0x08, 0x6C, 0x68]), // 0x06 entry mode
    ]
}

#[test]
fn init_sends_the_datasheet_sequence_with_its_waits() {
    let expected = init_sequence();
    let mut i2c = I2cMock::new(&expected);
    let mut delay = Recorded::default();
    let lcd: Lcd<_, _, 16, 2> = Lcd::new(i2c.clone(), &mut delay, ADDR).unwrap();
    drop(lcd);
    i2c.done();
    let waits = &delay.0;
    // Power-on wait ≥ 40 ms, then ≥ 4.1 ms, ≥ 4.1 ms, ≥ 100 µs between the reset nibbles,
    // ≥ 1.52 ms after clear.
    assert!(waits[0] >= 40_000_000, "{waits:?}");
    assert!(waits[1] >= 4_100_000 && waits[2] >= 4_100_000 && waits[3] >= 100_000);
    assert!(waits.iter().any(|&ns| (1_520_000..4_000_000).contains(&ns)));
}

#[test]
fn show_writes_changed_rows_only() {
    let mut expected = init_sequence();
    // Row 0 "Hi" padded to 16: cursor to 0x00 (command 0x80), then the characters.
    expected.push(w(&[0x8C, 0x88, 0x0C, 0x08]));
    expected.push(ch(b'H'));
    expected.push(w(&[0x6D, 0x69, 0x9D, 0x99])); // 'i' = 0x69
    expected.extend(std::iter::repeat_n(ch(b' '), 14));
    // Second show: only row 1, "1:é" with é shown as '?': cursor to 0x40 (command 0xC0).
    expected.push(w(&[0xCC, 0xC8, 0x0C, 0x08]));
    expected.push(w(&[0x3D, 0x39, 0x1D, 0x19])); // '1' = 0x31
    expected.push(w(&[0x3D, 0x39, 0xAD, 0xA9])); // ':' = 0x3A
    expected.push(w(&[0x3D, 0x39, 0xFD, 0xF9])); // '?' = 0x3F
    expected.extend(std::iter::repeat_n(ch(b' '), 13));
    // Backlight off: one byte, no EN.
    expected.push(w(&[0x00]));
    let mut i2c = I2cMock::new(&expected);
    let mut delay = Recorded::default();
    let mut lcd: Lcd<_, _, 16, 2> = Lcd::new(i2c.clone(), &mut delay, ADDR).unwrap();
    lcd.show(&["Hi"]).unwrap();
    lcd.show(&["Hi", ""]).unwrap(); // nothing changed: no traffic
    lcd.show(&["Hi", "1:é"]).unwrap();
    lcd.set_backlight(false).unwrap();
    drop(lcd);
    i2c.done();
}

#[test]
fn a_20x4_display_addresses_rows_2_and_3() {
    let expected = vec![
        w(&[0x9C, 0x98, 0x4C, 0x48]), // row 2 starts at 0x14: command 0x94
        w(&[0xDC, 0xD8, 0x4C, 0x48]), // row 3 starts at 0x54: command 0xD4
    ];
    let mut i2c = I2cMock::new(&expected);
    let mut delay = Recorded::default();
    let mut lcd: Lcd<_, _, 20, 4> = Lcd::new_uninitialized(i2c.clone(), &mut delay, ADDR);
    lcd.set_cursor(0, 2).unwrap();
    lcd.set_cursor(0, 3).unwrap();
    drop(lcd);
    i2c.done();
}

#[test]
fn keys_are_debounced_and_do_not_repeat() {
    use State::{High, Low};
    // Key 0 bounces (down, up) then is held down; key 1 stays up.
    let key0 = [High, Low, High, Low, Low, Low, Low, High, High, Low, Low];
    let key1 = [High; 11];
    let mut pin0 = PinMock::new(&key0.map(PinT::get));
    let mut pin1 = PinMock::new(&key1.map(PinT::get));
    let mut keys = Keys::new([pin0.clone(), pin1.clone()], 2);
    let polled: Vec<Option<usize>> = (0..11).map(|_| keys.poll().unwrap()).collect();
    assert_eq!(
        polled,
        [
            None,    // up
            None,    // down once
            None,    // bounced up: count resets
            None,    // down once
            Some(0), // down twice: pressed
            None,    // held
            None,    // held
            None,    // up once
            None,    // up twice: released
            None,    // down once
            Some(0), // down twice: pressed again
        ]
    );
    pin0.done();
    pin1.done();
}
