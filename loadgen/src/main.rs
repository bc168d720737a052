//! `rserpool-loadgen`: the load generator arrives with issue 4.

fn main() -> std::process::ExitCode {
    eprintln!("rserpool-loadgen: the load generator is not built yet (see README: status)");
    std::process::ExitCode::from(2)
}
