//! This host's interface addresses (getifaddrs(3)).

use std::io;
use std::net::IpAddr;

use super::addr;

/// The addresses of the interfaces that are up, IPv4 and IPv6, each once, in the order
/// the kernel lists them.
pub fn interface_addrs() -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs(3) writes a list head into `head`, a live pointer.
    if unsafe { libc::getifaddrs(&mut head) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out: Vec<IpAddr> = Vec::new();
    let mut at = head;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, alive until
        // freeifaddrs below.
        let ifa = unsafe { &*at };
        at = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_flags & libc::IFF_UP as libc::c_uint == 0 {
            continue;
        }
        // SAFETY: `ifa_addr` is non-null and points to a sockaddr, whose family field
        // every sockaddr starts with.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let len = match family {
            libc::AF_INET => std::mem::size_of::<libc::sockaddr_in>(),
            libc::AF_INET6 => std::mem::size_of::<libc::sockaddr_in6>(),
            _ => continue,
        };
        // SAFETY: a sockaddr of family AF_INET or AF_INET6 is a whole sockaddr_in or
        // sockaddr_in6 (`len` bytes), alive until freeifaddrs.
        let bytes = unsafe { std::slice::from_raw_parts(ifa.ifa_addr.cast::<u8>(), len) };
        if let Some((a, _)) = addr::parse(bytes)
            && !out.contains(&a.ip())
        {
            out.push(a.ip());
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once; nothing borrowed from the
    // list outlives this call (the addresses were copied).
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_among_the_interfaces() {
        let all = interface_addrs().expect("getifaddrs");
        assert!(all.iter().any(IpAddr::is_loopback), "{all:?}");
    }
}
