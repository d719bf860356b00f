use std::process::ExitCode;

fn main() -> ExitCode {
    pacer::cli::main()
}
