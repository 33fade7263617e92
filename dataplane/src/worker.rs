//! Worker loop (filled in next).
