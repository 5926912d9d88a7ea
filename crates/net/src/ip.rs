//! Classification of IP addresses that outbound requests must not reach.
//!
//! [`check_ip`] answers one question: may a tool's request connect to this address when no
//! operator setting says otherwise? Everything that is not public unicast is refused: loopback,
//! private and unique-local networks, link-local, carrier-grade NAT, multicast, unspecified,
//! broadcast, documentation/benchmarking/reserved ranges and the cloud metadata endpoints.
//! IPv6 forms that carry an IPv4 address (mapped, compatible, translated, NAT64, 6to4) are judged
//! by the IPv4 address they carry, so `[::ffff:127.0.0.1]` is as blocked as `127.0.0.1`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockKind {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, `fc00::/7`, deprecated site-local `fec0::/10` and
    /// local-use NAT64 `64:ff9b:1::/48`.
    Private,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// Carrier-grade NAT, `100.64/10`.
    SharedAddressSpace,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `0.0.0.0/8` ("this network"), `::`.
    Unspecified,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18/15`, `2001:2::/48`.
    Benchmarking,
    /// `240/4`, `192.0.0/24`, `192.88.99/24`, Teredo `2001::/32` and all IPv6 space outside the
    /// global unicast block `2000::/3`.
    Reserved,
    /// The instance metadata endpoints where clouds hand out credentials: `169.254.169.254`,
    /// `fd00:ec2::254` and Azure's WireServer `168.63.129.16`.
    CloudMetadata,
}

impl BlockKind {
    /// A noun phrase for messages, e.g. "a loopback address".
    pub fn describe(self) -> &'static str {
        match self {
            BlockKind::Loopback => "a loopback address",
            BlockKind::Private => "a private-network address",
            BlockKind::LinkLocal => "a link-local address",
            BlockKind::SharedAddressSpace => "a carrier-grade NAT (shared) address",
            BlockKind::Multicast => "a multicast address",
            BlockKind::Unspecified => "an unspecified (this-network) address",
            BlockKind::Broadcast => "the broadcast address",
            BlockKind::Documentation => "a documentation-only address",
            BlockKind::Benchmarking => "a benchmarking-only address",
            BlockKind::Reserved => "a reserved address",
            BlockKind::CloudMetadata => "the cloud instance metadata endpoint",
        }
    }
}

impl fmt::Display for BlockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The ways an IPv6 address can carry an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ipv4Embedding {
    /// `::ffff:a.b.c.d` (RFC 4291).
    Mapped,
    /// `::a.b.c.d`, deprecated (RFC 4291).
    Compatible,
    /// `::ffff:0:a.b.c.d`, SIIT (RFC 2765).
    Translated,
    /// `64:ff9b::a.b.c.d`, well-known NAT64 prefix (RFC 6052).
    Nat64,
    /// `2002:aabb:ccdd::/48`, 6to4 (RFC 3056).
    SixToFour,
}

impl fmt::Display for Ipv4Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ipv4Embedding::Mapped => "IPv4-mapped",
            Ipv4Embedding::Compatible => "IPv4-compatible",
            Ipv4Embedding::Translated => "IPv4-translated",
            Ipv4Embedding::Nat64 => "NAT64",
            Ipv4Embedding::SixToFour => "6to4",
        })
    }
}

/// An IPv4 address found inside an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EmbeddedIpv4 {
    /// How it is embedded.
    pub form: Ipv4Embedding,
    /// The IPv4 address carried.
    pub ipv4: Ipv4Addr,
}

/// The verdict of [`check_ip`] for a refused address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockReason {
    /// The class of the refused address (for embedded forms: of the embedded IPv4 address).
    pub kind: BlockKind,
    /// Set when an IPv6 address was refused because of the IPv4 address it carries.
    pub embedded: Option<EmbeddedIpv4>,
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            None => f.write_str(self.kind.describe()),
            Some(EmbeddedIpv4 { form, ipv4 }) => {
                write!(f, "an {form} IPv6 address carrying {ipv4}, {}", self.kind.describe())
            }
        }
    }
}

/// IPv4 ranges, most specific first: the first match decides.
const V4_BLOCKED: &[(Ipv4Net, BlockKind)] = &[
    (v4(169, 254, 169, 254, 32), BlockKind::CloudMetadata),
    (v4(168, 63, 129, 16, 32), BlockKind::CloudMetadata),
    (v4(255, 255, 255, 255, 32), BlockKind::Broadcast),
    (v4(0, 0, 0, 0, 8), BlockKind::Unspecified),
    (v4(10, 0, 0, 0, 8), BlockKind::Private),
    (v4(100, 64, 0, 0, 10), BlockKind::SharedAddressSpace),
    (v4(127, 0, 0, 0, 8), BlockKind::Loopback),
    (v4(169, 254, 0, 0, 16), BlockKind::LinkLocal),
    (v4(172, 16, 0, 0, 12), BlockKind::Private),
    (v4(192, 0, 0, 0, 24), BlockKind::Reserved),
    (v4(192, 0, 2, 0, 24), BlockKind::Documentation),
    (v4(192, 88, 99, 0, 24), BlockKind::Reserved),
    (v4(192, 168, 0, 0, 16), BlockKind::Private),
    (v4(198, 18, 0, 0, 15), BlockKind::Benchmarking),
    (v4(198, 51, 100, 0, 24), BlockKind::Documentation),
    (v4(203, 0, 113, 0, 24), BlockKind::Documentation),
    (v4(224, 0, 0, 0, 4), BlockKind::Multicast),
    (v4(240, 0, 0, 0, 4), BlockKind::Reserved),
];

/// IPv6 ranges checked after the exact addresses and embedded IPv4 forms, most specific first.
const V6_BLOCKED: &[(Ipv6Net, BlockKind)] = &[
    (v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128), BlockKind::CloudMetadata),
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), BlockKind::Private),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), BlockKind::Reserved),
    (v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48), BlockKind::Benchmarking),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), BlockKind::Documentation),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), BlockKind::Documentation),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), BlockKind::Private),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), BlockKind::LinkLocal),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), BlockKind::Private),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), BlockKind::Multicast),
];

/// Global unicast `2000::/3`; IPv6 outside it (and not matched above) is reserved space.
const V6_GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

// `new_assert` is evaluated at compile time here, so a bad prefix length fails the build rather
// than panicking at run time.
const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(s: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]), len)
}

/// Decides whether outbound requests may connect to `ip` by default.
///
/// Returns `Ok(())` for public unicast addresses and the reason otherwise. Operators can still
/// permit refused addresses with [`NetConfig::allowed_networks`](crate::NetConfig::allowed_networks).
///
/// ```
/// use toolplane_net::{check_ip, BlockKind};
/// assert!(check_ip("93.184.215.14".parse().unwrap()).is_ok());
/// let reason = check_ip("::ffff:10.1.2.3".parse().unwrap()).unwrap_err();
/// assert_eq!(reason.kind, BlockKind::Private);
/// assert!(reason.embedded.is_some());
/// ```
pub fn check_ip(ip: IpAddr) -> Result<(), BlockReason> {
    match ip {
        IpAddr::V4(v4) => check_v4(v4).map_err(|kind| BlockReason { kind, embedded: None }),
        IpAddr::V6(v6) => check_v6(v6),
    }
}

fn check_v4(ip: Ipv4Addr) -> Result<(), BlockKind> {
    match V4_BLOCKED.iter().find(|(net, _)| net.contains(&ip)) {
        Some((_, kind)) => Err(*kind),
        None => Ok(()),
    }
}

fn check_v6(ip: Ipv6Addr) -> Result<(), BlockReason> {
    let plain = |kind| Err(BlockReason { kind, embedded: None });
    if ip.is_unspecified() {
        return plain(BlockKind::Unspecified);
    }
    if ip.is_loopback() {
        return plain(BlockKind::Loopback);
    }
    if let Some(embedded) = embedded_ipv4(ip) {
        return check_v4(embedded.ipv4).map_err(|kind| BlockReason {
            kind,
            embedded: Some(embedded),
        });
    }
    if let Some((_, kind)) = V6_BLOCKED.iter().find(|(net, _)| net.contains(&ip)) {
        return plain(*kind);
    }
    if !V6_GLOBAL_UNICAST.contains(&ip) {
        return plain(BlockKind::Reserved);
    }
    Ok(())
}

/// Finds an IPv4 address carried inside `ip` in one of the forms of [`Ipv4Embedding`].
///
/// `::` and `::1` are not treated as IPv4-compatible addresses; they are the IPv6 unspecified
/// and loopback addresses.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<EmbeddedIpv4> {
    let s = ip.segments();
    let o = ip.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    let form = match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Ipv4Embedding::Mapped,
        [0, 0, 0, 0, 0xffff, 0, _, _] => Ipv4Embedding::Translated,
        [0, 0, 0, 0, 0, 0, 0, 0] | [0, 0, 0, 0, 0, 0, 0, 1] => return None,
        [0, 0, 0, 0, 0, 0, _, _] => Ipv4Embedding::Compatible,
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Ipv4Embedding::Nat64,
        [0x2002, _, _, ..] => {
            return Some(EmbeddedIpv4 {
                form: Ipv4Embedding::SixToFour,
                ipv4: Ipv4Addr::new(o[2], o[3], o[4], o[5]),
            });
        }
        _ => return None,
    };
    Some(EmbeddedIpv4 { form, ipv4: tail })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(s: &str) -> Option<BlockKind> {
        let ip: IpAddr = s.parse().unwrap();
        check_ip(ip).err().map(|r| r.kind)
    }

    #[test]
    fn public_addresses_pass() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "169.253.255.255",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001:82b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::1.1.1.1",
            "2002:0808:0808::1",
        ] {
            assert_eq!(kind_of(s), None, "{s} should be allowed");
        }
    }

    #[test]
    fn ipv4_ranges_are_classified() {
        use BlockKind::*;
        let cases = [
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("169.254.0.1", LinkLocal),
            ("169.254.169.254", CloudMetadata),
            ("168.63.129.16", CloudMetadata),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("255.255.255.254", Reserved),
            ("192.0.0.170", Reserved),
            ("192.88.99.1", Reserved),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
        ];
        for (s, want) in cases {
            assert_eq!(kind_of(s), Some(want), "{s}");
        }
    }

    #[test]
    fn ipv6_ranges_are_classified() {
        use BlockKind::*;
        let cases = [
            ("::", Unspecified),
            ("::1", Loopback),
            ("fd00:ec2::254", CloudMetadata),
            ("fd00:ec2::253", Private),
            ("fc00::1", Private),
            ("fdff:ffff::1", Private),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Private),
            ("ff02::1", Multicast),
            ("ff0e::101", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2001:2::1", Benchmarking),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Reserved),
            ("64:ff9b:1::a00:1", Private),
            ("100::1", Reserved),
            ("4000::1", Reserved),
            ("1::1", Reserved),
        ];
        for (s, want) in cases {
            assert_eq!(kind_of(s), Some(want), "{s}");
        }
    }

    #[test]
    fn embedded_ipv4_forms_are_judged_by_their_ipv4() {
        let cases = [
            ("::ffff:127.0.0.1", Ipv4Embedding::Mapped, BlockKind::Loopback),
            ("::ffff:7f00:1", Ipv4Embedding::Mapped, BlockKind::Loopback),
            (
                "::ffff:169.254.169.254",
                Ipv4Embedding::Mapped,
                BlockKind::CloudMetadata,
            ),
            ("::ffff:10.0.0.1", Ipv4Embedding::Mapped, BlockKind::Private),
            ("::127.0.0.1", Ipv4Embedding::Compatible, BlockKind::Loopback),
            ("::10.0.0.1", Ipv4Embedding::Compatible, BlockKind::Private),
            ("::0.0.0.2", Ipv4Embedding::Compatible, BlockKind::Unspecified),
            ("::ffff:0:192.168.0.1", Ipv4Embedding::Translated, BlockKind::Private),
            ("64:ff9b::127.0.0.1", Ipv4Embedding::Nat64, BlockKind::Loopback),
            (
                "64:ff9b::169.254.169.254",
                Ipv4Embedding::Nat64,
                BlockKind::CloudMetadata,
            ),
            ("2002:7f00:1::", Ipv4Embedding::SixToFour, BlockKind::Loopback),
            ("2002:a9fe:a9fe::1", Ipv4Embedding::SixToFour, BlockKind::CloudMetadata),
            ("2002:c0a8:0101::", Ipv4Embedding::SixToFour, BlockKind::Private),
        ];
        for (s, form, kind) in cases {
            let ip: IpAddr = s.parse().unwrap();
            let reason = check_ip(ip).expect_err(s);
            assert_eq!(reason.kind, kind, "{s}");
            assert_eq!(reason.embedded.map(|e| e.form), Some(form), "{s}");
        }
    }

    #[test]
    fn embedded_reason_names_the_ipv4_address() {
        let reason = check_ip("::ffff:127.0.0.1".parse().unwrap()).unwrap_err();
        assert_eq!(
            reason.to_string(),
            "an IPv4-mapped IPv6 address carrying 127.0.0.1, a loopback address"
        );
    }

    #[test]
    fn loopback_and_unspecified_are_not_compatible_forms() {
        assert_eq!(embedded_ipv4(Ipv6Addr::LOCALHOST), None);
        assert_eq!(embedded_ipv4(Ipv6Addr::UNSPECIFIED), None);
        let reason = check_ip("::1".parse().unwrap()).unwrap_err();
        assert_eq!(reason.embedded, None);
    }
}
