//! The standard `process_*` families (those of Prometheus' own client libraries) from
//! `/proc/self`, and `rserpool_build_info`. Read at each scrape; a file that cannot be
//! read leaves its families out rather than showing a made-up zero.

use std::fmt::Write as _;

use super::render::{family, sample};

/// The unit of `/proc` times: USER_HZ is 100 on every Linux ABI (the kernel converts
/// from its own HZ), so no `sysconf` call is needed.
const USER_HZ: f64 = 100.0;

/// The process figures of one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessFigures {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
}

/// Appends the `process_*` families and `rserpool_build_info`.
pub fn render(out: &mut String) {
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| boot_time(&s));
    if let Some(p) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s, boot.unwrap_or(0)))
    {
        let families: [(&str, &str, &str, String); 3] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                format!("{}", p.cpu_seconds),
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                p.resident_bytes.to_string(),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                p.virtual_bytes.to_string(),
            ),
        ];
        for (name, kind, help, value) in families {
            family(out, name, kind, help);
            sample(out, name, "", value);
        }
        if boot.is_some() {
            let name = "process_start_time_seconds";
            family(
                out,
                name,
                "gauge",
                "Start time of the process since unix epoch in seconds.",
            );
            sample(out, name, "", p.start_time_seconds);
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let name = "process_open_fds";
        family(out, name, "gauge", "Number of open file descriptors.");
        // The directory's own descriptor is counted too: one more than at rest.
        sample(out, name, "", fds.count().saturating_sub(1));
    }
    if let Some(max) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| max_fds(&s))
    {
        let name = "process_max_fds";
        family(
            out,
            name,
            "gauge",
            "Maximum number of open file descriptors.",
        );
        sample(out, name, "", max);
    }
    build_info(out);
}

/// `rserpool_build_info{version,commit} 1`.
fn build_info(out: &mut String) {
    let name = "rserpool_build_info";
    family(
        out,
        name,
        "gauge",
        "1, labelled with the registrar's version and the commit it was built from.",
    );
    let _ = writeln!(
        out,
        "{name}{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        option_env!("RSERPOOL_COMMIT").unwrap_or("unknown")
    );
}

/// `btime` (boot time, seconds since the epoch) from `/proc/stat`.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// `/proc/self/stat` (proc(5)): after the command name in parentheses (which may hold
/// spaces and parentheses itself), field 3 onwards; utime 14, stime 15, starttime 22
/// (ticks since boot), vsize 23 (bytes), rss 24 (pages of 4 KiB).
fn parse_stat(stat: &str, boot: u64) -> Option<ProcessFigures> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let ticks = field(14)? + field(15)?;
    Some(ProcessFigures {
        cpu_seconds: ticks as f64 / USER_HZ,
        resident_bytes: field(24)? * page_size(),
        virtual_bytes: field(23)?,
        start_time_seconds: boot as f64 + field(22)? as f64 / USER_HZ,
    })
}

/// The page size, from the kernel's own report of the mapped pages (`/proc/self/smaps`
/// would cost far more): 4 KiB unless the auxiliary vector says otherwise.
fn page_size() -> u64 {
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|a| auxv_page_size(&a))
        .unwrap_or(4096)
}

/// AT_PAGESZ (6) from the auxiliary vector: pairs of native-endian words.
fn auxv_page_size(auxv: &[u8]) -> Option<u64> {
    const AT_PAGESZ: u64 = 6;
    let word = std::mem::size_of::<usize>();
    let mut pairs = auxv.chunks_exact(2 * word);
    pairs.find_map(|p| {
        let (k, v) = p.split_at(word);
        let k = usize::from_ne_bytes(k.try_into().ok()?) as u64;
        let v = usize::from_ne_bytes(v.try_into().ok()?) as u64;
        (k == AT_PAGESZ).then_some(v)
    })
}

/// The soft "Max open files" limit from `/proc/self/limits`.
fn max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        // A command name with a space and a parenthesis; fields per proc(5).
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 \
                    1000 123456789 300 18446744073709551615";
        let p = parse_stat(stat, 1_700_000_000).expect("parsed");
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.virtual_bytes, 123_456_789);
        assert_eq!(p.resident_bytes, 300 * page_size());
        assert_eq!(p.start_time_seconds, 1_700_000_010.0);
        assert_eq!(parse_stat("garbage", 0), None);
    }

    #[test]
    fn limits_and_boot_time_are_found() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_fds(limits), Some(1024));
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_is_rendered_with_build_info() {
        let mut out = String::new();
        render(&mut out);
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_start_time_seconds ",
            "process_open_fds ",
            "process_max_fds ",
            "rserpool_build_info{version=\"",
        ] {
            assert!(out.lines().any(|l| l.starts_with(name)), "{name}\n{out}");
        }
        assert!(page_size() >= 4096);
    }
}
