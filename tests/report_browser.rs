//! report.html in a real headless browser (Chromium from the system packages): it loads without console errors,
//! its script runs (body[data-ready="1"]), the pick and the heatmap are in the DOM; a screenshot is kept at
//! target/test-artifacts/report.png.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use loraeval::report::sample::{sample_run, SampleRun, SampleSpec};
use loraeval::report::write_report;

const CHROMIUM: &str = "/usr/bin/chromium";
const TIMEOUT: Duration = Duration::from_secs(120);

fn chromium() -> &'static Path {
    let path = Path::new(CHROMIUM);
    assert!(
        path.exists(),
        "{CHROMIUM} is missing: install the Debian package `chromium` (apt-get install -y chromium); \
         this test checks report.html in a real headless browser"
    );
    path
}

/// What Chromium printed and how it ended.
struct Browser {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs headless Chromium on `page` with `extra` flags and a fresh profile; its output goes to files (a pipe
/// would fill up with the DOM); kills it after the timeout.
fn run_chromium(page: &Path, extra: &[String]) -> Browser {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let profile = scratch.path().join("profile");
    let (out_path, err_path) = (scratch.path().join("stdout"), scratch.path().join("stderr"));
    let file = |p: &Path| std::fs::File::create(p).expect("output file");
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdout(file(&out_path))
        .stderr(file(&err_path));
    let mut child = command.spawn().expect("start chromium");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).expect("read output")).into_owned();
    Browser {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

/// The page's console messages: Chromium logs each (errors, uncaught exceptions, blocked loads) as
/// `INFO:CONSOLE:<line>] "<message>", source: <url> (<line>)`. The report logs nothing itself.
fn console_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

fn sample() -> (tempfile::TempDir, SampleRun) {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = sample_run(dir.path(), &SampleSpec::default()).expect("sample run");
    (dir, run)
}

fn artifacts() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Dumps the DOM after the page's script ran, asserting a clean console.
fn loaded_dom(page: &Path) -> String {
    let browser = run_chromium(page, &["--dump-dom".to_string()]);
    assert!(
        browser.status.success(),
        "chromium failed: {}",
        browser.stderr
    );
    let console = console_lines(&browser.stderr);
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    browser.stdout
}

#[test]
fn report_loads_in_chromium_with_the_pick_and_heatmap() {
    let (_dir, run) = sample();
    let page = write_report(&run.input(true)).expect("report written");
    let dom = loaded_dom(&page);
    assert!(
        dom.contains("data-ready=\"1\""),
        "the script did not finish"
    );
    assert!(dom.contains("id=\"pick\""));
    assert!(dom.contains("id=\"heatmap\""));
    assert!(dom.contains("sks-000006.safetensors"));
    let shown =
        dom.matches("<article class=\"detail\"").count() - dom.matches("hidden=\"\"").count();
    assert_eq!(shown, 1, "only the pick's detail is shown at first");
    assert!(
        dom.contains("<article class=\"detail\" id=\"cell-2-3\" data-label=\"sks-000006 @ 1\">")
    );
}

#[test]
fn unscored_report_loads_in_chromium() {
    let (_dir, run) = sample();
    let page = write_report(&run.input(false)).expect("report written");
    let dom = loaded_dom(&page);
    assert!(dom.contains("data-ready=\"1\""));
    assert!(dom.contains("Not scored yet."));
}

#[test]
fn screenshot_is_kept_as_a_test_artifact() {
    let (_dir, run) = sample();
    let page = write_report(&run.input(true)).expect("report written");
    let shot = artifacts().join("report.png");
    let _ = std::fs::remove_file(&shot);
    let browser = run_chromium(
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400".to_string(),
            "--hide-scrollbars".to_string(),
        ],
    );
    assert!(
        browser.status.success(),
        "chromium failed: {}",
        browser.stderr
    );
    let image = image::open(&shot).expect("screenshot is a PNG");
    assert_eq!((image.width(), image.height()), (1280, 2400));
    println!("screenshot: {}", shot.display());
}
