//! Choosing loopback ports that a restart can have back.
//!
//! A port the kernel hands out for `bind(0)` comes from its ephemeral range, the range it also
//! takes the local ports of outgoing connections from. A server remembered on such a port and
//! restarted later (`plotter2 up` after a reboot, a test that kills a server) can find it taken
//! by any process's connection. Ports outside that range are only ever taken on purpose.

use std::net::TcpListener;
use std::ops::RangeInclusive;

const EPHEMERAL_RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
/// Linux's default ephemeral range, when the file cannot be read.
const DEFAULT_EPHEMERAL: (u16, u16) = (32768, 60999);
/// Below this sit well-known services; we do not choose from there.
const LOWEST: u16 = 10_000;

/// The larger stretch of ports above 10,000 outside the kernel's ephemeral range (the whole
/// span above 10,000 when that range leaves nearly nothing outside it).
pub fn stable_range() -> RangeInclusive<u16> {
    let text = std::fs::read_to_string(EPHEMERAL_RANGE_FILE).unwrap_or_default();
    let mut bounds = text
        .split_whitespace()
        .filter_map(|p| p.parse::<u16>().ok());
    let (low, high) = match (bounds.next(), bounds.next()) {
        (Some(l), Some(h)) if l <= h => (l, h),
        _ => DEFAULT_EPHEMERAL,
    };
    let below = low.saturating_sub(LOWEST);
    let above = u16::MAX - high;
    if below.max(above) < 100 {
        LOWEST..=u16::MAX
    } else if below >= above {
        LOWEST..=low - 1
    } else {
        high + 1..=u16::MAX
    }
}

/// The first port of [`stable_range`] from `from` on (wrapping round) that can be bound on
/// 127.0.0.1 now, or `None` if every one is taken.
pub fn free_stable_port(from: u16) -> Option<u16> {
    let range = stable_range();
    let (lo, hi) = (u32::from(*range.start()), u32::from(*range.end()));
    let span = hi - lo + 1;
    let start = u32::from(from).clamp(lo, hi) - lo;
    (0..span)
        .map(|i| (lo + (start + i) % span) as u16)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_outside_the_ephemeral_range() {
        let r = stable_range();
        assert!(*r.start() >= LOWEST);
        let text = std::fs::read_to_string(EPHEMERAL_RANGE_FILE).unwrap_or_default();
        let b: Vec<u16> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if let [low, high] = b[..]
            && (low.saturating_sub(LOWEST).max(u16::MAX - high)) >= 100
        {
            assert!(
                *r.end() < low || *r.start() > high,
                "{r:?} overlaps {low}-{high}"
            );
        }
    }

    #[test]
    fn skips_a_port_in_use() {
        let r = stable_range();
        let first = free_stable_port(*r.start() + 50).expect("a free port");
        assert!(r.contains(&first));
        let held = TcpListener::bind(("127.0.0.1", first)).expect("bind the port just found");
        let next = free_stable_port(first).expect("another free port");
        assert_ne!(next, first, "a port in use was handed out");
        drop(held);
    }
}
