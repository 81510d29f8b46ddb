//! The `rcmd` binary: parse the command line and hand it to the library.

use clap::Parser;

fn main() {
    let cli = rcmd::cli::Cli::parse();
    std::process::exit(rcmd::cli::run(cli));
}
