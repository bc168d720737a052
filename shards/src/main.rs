//! `rserpool-registrar`: the registrar runtime arrives with issue 3.

fn main() -> std::process::ExitCode {
    eprintln!("rserpool-registrar: the registrar runtime is not built yet (see README: status)");
    std::process::ExitCode::from(2)
}
