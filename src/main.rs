//! The `kopek` binary: parses the command line, sets up logging, calls the
//! role's library and maps errors to exit codes. Nothing else lives here.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
