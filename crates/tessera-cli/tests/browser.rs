//! The HTML explorer in headless Chromium: it loads without JavaScript
//! errors, the slider changes the grid, hovering shows a byte's role, and a
//! screenshot is written. The page checks itself when opened with
//! `#selftest` (see assets/explorer.js) and writes PASS/FAIL lines into
//! `<pre id="selftest">`, which `--dump-dom` prints.
//!
//! Needs Debian's `chromium` package. Without it the test fails under
//! `CI=true` and is skipped loudly elsewhere.

mod common;

use common::{missing, run_with_timeout, scratch, tessera};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The browser: `$CHROMIUM`, else the first of the usual names on PATH.
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A headless browser command with no network and a throwaway profile.
pub fn headless(browser: &Path, profile: &Path) -> Command {
    let mut c = Command::new(browser);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        // Nothing may be fetched: every host resolves nowhere.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

fn file_url(p: &Path, hash: &str) -> String {
    format!("file://{}#{hash}", p.canonicalize().unwrap().display())
}

/// Opens `page#selftest` and returns the self-test's lines.
fn self_test(browser: &Path, profile: &Path, page: &Path) -> String {
    let o = run_with_timeout(
        headless(browser, profile)
            .arg("--virtual-time-budget=5000")
            .arg("--dump-dom")
            .arg(file_url(page, "selftest")),
        Duration::from_secs(90),
    );
    let dom = String::from_utf8_lossy(&o.stdout).into_owned();
    let start = dom.find("<pre id=\"selftest\">").unwrap_or_else(|| {
        panic!(
            "no self-test output (status {:?}); stderr:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let end = dom[start..].find("</pre>").map_or(dom.len(), |e| start + e);
    dom[start + 19..end].to_owned()
}

fn assert_compare_passed(report: &str) {
    println!("comparison page:\n{report}");
    assert!(
        report.contains("DONE") && report.contains(" 0 failed") && !report.contains("FAIL"),
        "the comparison page's self-test did not pass:\n{report}"
    );
    for check in [
        "PASS three heaps are drawn",
        "PASS each grid has 128 rows x 32 cells numbered 0..4095",
        "PASS moving the slider changes all three grids",
        "PASS differences are marked (chunk rows, bytes and the step's list)",
        "PASS glibc's tcache is drawn",
        "PASS no javascript errors",
    ] {
        assert!(report.contains(check), "missing `{check}`:\n{report}");
    }
}

fn assert_passed(report: &str, what: &str) {
    println!("{what}:\n{report}");
    assert!(
        report.contains("DONE") && report.contains(" 0 failed"),
        "{what}: the self-test did not pass:\n{report}"
    );
    assert!(!report.contains("FAIL"), "{what}:\n{report}");
    for check in [
        "PASS grid has 128 rows x 32 cells numbered 0..4095",
        "PASS moving the slider changes the grid",
        "PASS hovering shows the byte's role",
        "PASS no javascript errors",
    ] {
        assert!(
            report.contains(check),
            "{what}: missing `{check}`:\n{report}"
        );
    }
}

#[test]
fn the_explorer_works_in_headless_chromium() {
    let Some(browser) = chromium() else {
        missing(
            "chromium is not installed, so the HTML explorer was not tested in a browser",
            "`apt-get install chromium` fixes it",
        );
        return;
    };
    let dir = scratch("browser");
    let profile = dir.join("profile");
    // The tour's page.
    let tour = dir.join("tour.html");
    let o = tessera()
        .args(["tour", "--html"])
        .arg(&tour)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_passed(&self_test(&browser, &profile, &tour), "tour page");

    // A replayed trace without explanations, opening mid-way.
    let trace = dir.join("t.trace");
    std::fs::write(&trace, tessera_viz::tour::TRACE).unwrap();
    let replay = dir.join("replay.html");
    let o = tessera()
        .arg("replay")
        .arg(&trace)
        .args(["--step", "12", "--html"])
        .arg(&replay)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_passed(&self_test(&browser, &profile, &replay), "replay page");

    // A screenshot of the tour at the tree-bin step, a byte hovered.
    let shot = dir.join("explorer.png");
    let o = run_with_timeout(
        headless(&browser, &profile)
            .arg("--window-size=1280,1000")
            .arg(format!("--screenshot={}", shot.display()))
            .arg(file_url(&tour, "step=17&hover=1400&pin=1400")),
        Duration::from_secs(90),
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}); stderr:\n{}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 20_000, "suspiciously small screenshot");
    println!("screenshot: {}", shot.display());

    // The comparison of three heaps (glibc's needs a known glibc, as CI's).
    let cmp = dir.join("compare.html");
    let o = tessera()
        .args(["compare", "--color", "never", "--html"])
        .arg(&cmp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_compare_passed(&self_test(&browser, &profile, &cmp));
    let _ = std::fs::remove_dir_all(&profile);
}
