//! The `rcmd` binary: parse the command line and hand it to the library.

fn main() {
    let cli = rcmd::cli::parse();
    std::process::exit(rcmd::cli::run(cli));
}
