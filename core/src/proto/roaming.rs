//! What a node does when its own addresses change (sans-IO decisions; the
//! watcher is [`crate::net::netwatch`]).
//!
//! A session's connections are bound to the local address they were made
//! from. When that address goes away (a new DHCP lease, a Wi-Fi switch, waking
//! up on another network) they are dead, though neither side may notice for a
//! while. The node does not wait for that: for each such session it dials the
//! peer again at once (pinned to the peer's key). The new connection carries
//! the same instance, so it joins the existing session as one more lane, and
//! the multiplexer resends on it what the dead lane left unacknowledged
//! ([`crate::proto::mux`]): streams, messages in flight and transfers go on
//! with nothing lost. The dead lane is dropped when its timeout passes.
//!
//! Discovery announces at once from the new address
//! ([`crate::proto::discovery::InEvent::NetworkChanged`]), so peers that lost
//! the session anyway find the node again without waiting for the next
//! periodic announcement.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// The sessions to move: those whose local address is no longer one of
/// `local`. A session whose local address is unknown is left alone.
pub fn stranded<P: Copy>(
    sessions: impl IntoIterator<Item = (P, Option<IpAddr>)>,
    local: &BTreeSet<IpAddr>,
) -> Vec<P> {
    sessions
        .into_iter()
        .filter(|(_, ip)| ip.is_some_and(|ip| !local.contains(&ip.to_canonical())))
        .map(|(p, _)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_sessions_from_an_address_that_went_away_move() {
        let local = BTreeSet::from([ip("127.0.0.1"), ip("10.0.0.101"), ip("fe80::1")]);
        let sessions = [
            (1, Some(ip("10.0.0.1"))),          // its address is gone
            (2, Some(ip("10.0.0.101"))),        // made from the new address
            (3, Some(ip("127.0.0.1"))),         // loopback stays
            (4, None),                          // unknown: left alone
            (5, Some(ip("::ffff:10.0.0.101"))), // a mapped IPv4 address of ours
            (6, Some(ip("fe80::2"))),
        ];
        assert_eq!(stranded(sessions, &local), vec![1, 6]);
    }

    #[test]
    fn nothing_moves_while_the_addresses_stay() {
        let local = BTreeSet::from([ip("10.0.0.1")]);
        assert!(stranded([(1, Some(ip("10.0.0.1")))], &local).is_empty());
    }
}
