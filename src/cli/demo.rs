//! `rcmd demo`.

use clap::{Args, Subcommand};

use super::{Failure, Whole, DEFAULT_RECV_SIZE};
use crate::demo::render::Style;
use crate::demo::{self, sticky};
use crate::wire::header::HeaderFormat;

/// Exit code when a demo did not show what it exists to show (a regression).
const NOT_REPRODUCED: i32 = 1;

const STICKY_STATUS: &str = "\
Exit status:
  0    the demo showed what it is for: the bug without a header, every reply
       right with one. When a bigger --recv-size hides the bug, the demo says so
       and prints the command that brings it back; that is a 0 too
  1    the bug did not show where it must (with --recv-size 1024 or less): a
       bug in rcmd, not in your program
  141  the output was closed early (`| head`); with --html the page is still
       written, and stderr says where
  255  the demo could not run, or its arguments are wrong";

const UDP_STATUS: &str = "\
Exit status:
  0    every reply that fit the buffer came whole and every longer one was
       cut. When the buffer holds every reply nothing is cut, and the demo
       says so and prints the command that shows the loss; that is a 0 too
  1    a reply came otherwise: a bug in rcmd
  255  the demo could not run, or its arguments are wrong";

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    #[command(subcommand)]
    demo: Option<Demo>,
}

#[derive(Debug, Subcommand)]
enum Demo {
    /// The sticky-packet bug (粘包) over TCP, the same on every run, and its fixes
    #[command(after_help = STICKY_STATUS)]
    Sticky(StickyArgs),
    /// The same commands over UDP: boundaries kept, but long replies cut and lost
    #[command(after_help = UDP_STATUS)]
    Udp(UdpArgs),
    /// The cost of a round trip: each stage through a proxy that delays every byte
    Rtt(RttArgs),
}

#[derive(Debug, Args)]
struct RttArgs {
    /// Milliseconds the proxy holds data in each direction, a whole number from 1 to 2000
    #[arg(long, value_name = "MS", default_value_t = 25,
          value_parser = Whole { min: 1, max: 2000 })]
    delay: u64,

    /// Print only the timings, as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct StickyArgs {
    /// Header format of the framed stage (a Python struct format for one integer)
    #[arg(long, value_name = "FMT", default_value = "!I")]
    header: HeaderFormat,

    /// Bytes one recv() may return, like the tutorial's recv(1024): a whole number from 16
    /// to 65535
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RECV_SIZE,
          value_parser = Whole { min: 16, max: 65535 }.map(|v| v as usize))]
    recv_size: usize,

    /// Which cause to show
    #[arg(long, value_enum, default_value_t = sticky::Case::All)]
    case: sticky::Case,

    /// Print only the summary, as JSON
    #[arg(long)]
    json: bool,

    /// Wait for Enter before every read, to talk through each step
    #[arg(long)]
    step: bool,

    /// Also write the runs as one self-contained web page (inline SVG, no scripts)
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct UdpArgs {
    /// Bytes one recvfrom() may return, like the tutorial's UDP recvfrom(1024); the rest
    /// of a longer datagram is lost; a whole number from 16 to 65535
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RECV_SIZE,
          value_parser = Whole { min: 16, max: 65535 }.map(|v| v as usize))]
    recv_size: usize,

    /// Print only the summary, as JSON
    #[arg(long)]
    json: bool,
}

use clap::builder::TypedValueParser;

/// A writer that, once its output is closed (a broken pipe), drops what follows instead
/// of failing, and remembers that it happened.
struct ClosedIsSilent<W> {
    inner: W,
    closed: bool,
}

impl<W> ClosedIsSilent<W> {
    fn new(inner: W) -> Self {
        ClosedIsSilent {
            inner,
            closed: false,
        }
    }
}

impl<W: std::io::Write> std::io::Write for ClosedIsSilent<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.closed {
            match self.inner.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => self.closed = true,
                other => return other,
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.inner.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            _ if self.closed => Ok(()),
            other => other,
        }
    }
}

pub(super) fn run(args: DemoArgs) -> Result<i32, Failure> {
    let Some(demo) = args.demo else {
        println!("Demos (run one with `rcmd demo NAME`):");
        for (name, what) in demo::DEMOS {
            println!("  {name:<8} {what}");
        }
        return Ok(0);
    };
    // One language for every learner's run: the commands' messages (ls's error) would
    // otherwise follow the user's locale. Set before any thread starts.
    std::env::set_var("LC_ALL", "C");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Failure::new)?;
    let style = Style::detect();
    let mut stdout = std::io::stdout();
    let (json, ok) = runtime
        .block_on(async {
            match demo {
                Demo::Sticky(a) => {
                    let opts = sticky::Options {
                        header: a.header,
                        recv_size: a.recv_size,
                        case: a.case,
                        step: a.step,
                    };
                    // Made first, so a path that cannot be written fails before the runs.
                    let page = a.html.as_deref().map(demo::html::PageFile::create);
                    let page = page.transpose()?;
                    // The page is what was asked for: output closed early (`| head`) does
                    // not stop the runs it shows.
                    let mut out = ClosedIsSilent::new(&mut stdout);
                    let (s, lesson) = sticky::run(&opts, style, &mut out, a.json).await?;
                    if let Some(page) = page {
                        eprintln!("{}", page.finish(&lesson)?);
                    }
                    if out.closed {
                        return Ok((None, None));
                    }
                    Ok::<_, std::io::Error>((a.json.then(|| s.to_json()), Some(s.as_expected())))
                }
                Demo::Udp(a) => {
                    let s = demo::udp::run(a.recv_size, style, &mut stdout, a.json).await?;
                    Ok((a.json.then(|| s.to_json()), Some(s.as_expected())))
                }
                Demo::Rtt(a) => {
                    let delay = std::time::Duration::from_millis(a.delay);
                    let t = demo::rtt::run(delay, style, &mut stdout, a.json).await?;
                    Ok((a.json.then(|| t.to_json()), Some(true)))
                }
            }
        })
        .or_else(|e| match e.kind() {
            // Our output was closed (`| head`): end quietly, as a command killed by SIGPIPE.
            std::io::ErrorKind::BrokenPipe => Ok((None, None)),
            // Errors of our own making (the page's) carry their message; the OS's get words.
            _ if e.raw_os_error().is_none() => Err(Failure::new(format!("demo failed: {e}"))),
            _ => Err(Failure::new(format!(
                "demo failed: {}",
                crate::text::io_reason(&e)
            ))),
        })?;
    let Some(ok) = ok else {
        return Ok(super::SIGPIPE_STATUS);
    };
    if let Some(json) = json {
        use std::io::Write;
        if writeln!(std::io::stdout(), "{json}").is_err() {
            return Ok(super::SIGPIPE_STATUS);
        }
    }
    Ok(if ok { 0 } else { NOT_REPRODUCED })
}
