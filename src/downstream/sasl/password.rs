//! Reading a password for `kgate user add`: from stdin when it is not a
//! terminal (scripts), else from a prompt with echo turned off.

use std::io::{BufRead, IsTerminal, Write};

/// Longest password accepted (PLAIN carries at most 255 bytes).
const MAX: usize = 255;

pub fn read(prompt: &str) -> Result<String, String> {
    let stdin = std::io::stdin();
    let line = if stdin.is_terminal() {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let echo = EchoOff::new();
        let mut l = String::new();
        let r = stdin.lock().read_line(&mut l);
        drop(echo);
        eprintln!();
        r.map_err(|e| e.to_string())?;
        l
    } else {
        let mut l = String::new();
        stdin.lock().read_line(&mut l).map_err(|e| e.to_string())?;
        l
    };
    let p = line.strip_suffix('\n').unwrap_or(&line);
    let p = p.strip_suffix('\r').unwrap_or(p);
    if p.is_empty() || p.len() > MAX || p.contains('\0') {
        return Err(format!("expected 1 to {MAX} bytes without NUL on one line"));
    }
    Ok(p.to_string())
}

/// Turns terminal echo off on stdin until dropped.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed termios that
        // tcgetattr fills; failure leaves echo as it was.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return EchoOff(None);
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            t.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return EchoOff(None);
            }
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restores the settings tcgetattr returned.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}
