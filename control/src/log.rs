//! Logging to stderr, one event per line: `TIME LEVEL message`.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn timestamp() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { eprintln!("{} rvsd info: {}", $crate::log::timestamp(), format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { eprintln!("{} rvsd warn: {}", $crate::log::timestamp(), format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { eprintln!("{} rvsd error: {}", $crate::log::timestamp(), format_args!($($arg)*)) };
}
