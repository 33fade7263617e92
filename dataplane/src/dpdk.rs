//! DPDK glue (filled in next).
