//! report.html as text: the pick block, one heatmap rect per scored cell, escaped user strings, the not-scored
//! page, placeholders for missing images, no network references, the atomic write, and the generation time.

use std::time::Instant;

use loraeval::recommend::{recommend, Thresholds};
use loraeval::report::sample::{sample_run, SampleRun, SampleSpec};
use loraeval::report::{render_report, write_report, ReportError, ReportInput};

fn sample(spec: &SampleSpec) -> (tempfile::TempDir, SampleRun) {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = sample_run(dir.path(), spec).expect("sample run");
    (dir, run)
}

/// 4 epochs × 4 weights, 2 small images per cell.
fn small() -> SampleSpec {
    SampleSpec {
        side: 96,
        seeds: 2,
        ..SampleSpec::default()
    }
}

/// The text of the element with `id` up to the end of its section (or SVG).
fn block<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no id=\"{id}\" in the page"));
    let rest = &html[start..];
    let end = ["</section>", "</svg>"]
        .iter()
        .filter_map(|t| rest.find(t))
        .min()
        .unwrap_or(rest.len());
    &rest[..end]
}

fn render(input: &ReportInput<'_>) -> String {
    render_report(input).expect("report renders")
}

#[test]
fn pick_block_names_the_file_and_weight() {
    let (_dir, run) = sample(&small());
    let pick = run
        .recommendation
        .pick
        .as_ref()
        .expect("the sample has a pick");
    assert_eq!(pick.file.as_deref(), Some("sks-000006.safetensors"));
    assert_eq!(pick.weight, Some(1.0));
    let html = render(&run.input(true));
    let block = block(&html, "pick");
    assert!(
        block.contains("<b class=\"pick-file\">sks-000006.safetensors</b>"),
        "{block}"
    );
    assert!(block.contains("<b class=\"pick-weight\">1</b>"), "{block}");
    assert!(block.contains("epoch 6"));
    assert!(
        block.contains("Each epoch&#39;s best weight")
            || block.contains("Each epoch's best weight")
    );
}

#[test]
fn no_pick_gives_the_reason() {
    let (_dir, run) = sample(&small());
    let strict = Thresholds {
        min_hit_rate: 1.01,
        ..Thresholds::default()
    };
    let recommendation = recommend(&run.scores, &strict);
    assert!(recommendation.pick.is_none());
    let input = ReportInput {
        recommendation: Some(&recommendation),
        ..run.input(true)
    };
    let html = render(&input);
    let block = block(&html, "pick");
    assert!(block.contains("No pick"), "{block}");
    assert!(
        block.contains("no cell passes every gate; failed hit rate in 16 of 16 cells"),
        "{block}"
    );
}

#[test]
fn heatmap_has_one_rect_per_scored_cell_and_one_pick() {
    let (_dir, run) = sample(&small());
    let html = render(&run.input(true));
    let svg = block(&html, "heatmap");
    assert_eq!(svg.matches("<rect").count(), run.scores.cells.len());
    assert_eq!(svg.matches("class=\"hm-cell pick\"").count(), 1);
    assert!(svg.contains("data-label=\"sks-000006 @ 1\""));
}

#[test]
fn grid_has_every_position_with_a_label_and_the_pick_highlighted() {
    let (_dir, run) = sample(&small());
    let html = render(&run.input(true));
    let grid = block(&html, "grid");
    assert_eq!(grid.matches("<td class=\"cell").count(), 16);
    assert_eq!(grid.matches("<td class=\"cell pick\"").count(), 1);
    assert!(grid.contains("<td class=\"cell pick\" data-label=\"sks-000006 @ 1\""));
    assert!(
        grid.contains("data-label=\"None\""),
        "the control is in the grid section"
    );
}

#[test]
fn cells_without_scores_still_show() {
    let (_dir, mut run) = sample(&small());
    run.scores.cells.retain(|c| c.x_index != 0);
    let html = render(&run.input(true));
    let grid = block(&html, "grid");
    assert_eq!(grid.matches("<td class=\"cell").count(), 16);
    assert_eq!(grid.matches("<td class=\"cell unscored\"").count(), 4);
    assert_eq!(block(&html, "heatmap").matches("<rect").count(), 12);
}

#[test]
fn user_strings_are_escaped() {
    let spec = SampleSpec {
        prompt: "<script>alert(1)</script> photo".to_string(),
        lora: "\"&<>'".to_string(),
        ..small()
    };
    let (_dir, run) = sample(&spec);
    let html = render(&run.input(true));
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; photo"));
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(!html.contains("\"&<>'"));
    assert!(html.contains("&quot;&amp;&lt;&gt;&#39;-000006.safetensors"));
    assert!(html.contains("data-label=\"&quot;&amp;&lt;&gt;&#39;-000006 @ 1\""));
}

#[test]
fn not_scored_run_shows_the_grid_with_a_note() {
    let (_dir, run) = sample(&small());
    let html = render(&run.input(false));
    assert!(block(&html, "pick").contains("Not scored yet."));
    assert!(!html.contains("id=\"heatmap\""));
    let grid = block(&html, "grid");
    assert_eq!(grid.matches("<td class=\"cell unscored\"").count(), 16);
    assert!(grid.contains("2/2 rendered"));
    assert!(block(&html, "reference").contains("Not scored yet"));
    assert!(block(&html, "command").contains("loraeval grid --model"));
}

#[test]
fn missing_and_unreadable_images_become_placeholders() {
    let (_dir, run) = sample(&small());
    std::fs::remove_file(run.run.join("cells/e1w1s0.png")).expect("remove an image");
    std::fs::write(run.run.join("cells/e2w2s1.png"), b"not a png").expect("corrupt an image");
    let html = render(&run.input(true));
    let grid = block(&html, "grid");
    assert!(
        grid.contains("title=\"image missing\""),
        "missing cell image"
    );
    assert!(grid.contains("title=\"unreadable: "), "corrupt cell image");
    let reference = block(&html, "reference");
    assert_eq!(
        reference.matches("class=\"thumb placeholder\"").count(),
        1,
        "006.jpg is not on disk"
    );
    assert_eq!(reference.matches("class=\"ref flagged\"").count(), 2);
}

#[test]
fn infotext_comes_from_the_png() {
    let (_dir, run) = sample(&small());
    let html = render(&run.input(true));
    let details = block(&html, "details");
    assert!(details.contains("Schedule type: Karras"));
    assert!(!details.contains("settings from grid.json"));
}

#[test]
fn images_without_the_trigger_word_are_marked() {
    let (_dir, mut run) = sample(&small());
    run.scores.trigger = Some("sks".to_string());
    let cell = &mut run.scores.cells[0];
    cell.side_effect = Some(0.12);
    cell.leak_rate = Some(1.0);
    let image = &mut cell.images[0];
    image.asks_for_person = false;
    image.control_change = Some(0.12);
    image.hit = true;
    let html = render(&run.input(true));
    assert!(html.contains("trigger word <code>sks</code>"));
    let detail = block(&html, "details");
    assert!(detail.contains("⚠ the person, unasked"));
    assert!(detail.contains("changed this image by 0.12"));
    assert!(detail.contains("<dt>Person without trigger</dt><dd>100%</dd>"));
}

#[test]
fn page_references_nothing_on_the_network() {
    let (_dir, run) = sample(&small());
    let html = render(&run.input(true));
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<link") && !html.contains(" src="));
    let urls = html.matches("url(").count();
    assert_eq!(urls, html.matches("url(\"data:image/jpeg;base64,").count());
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
}

#[test]
fn metadata_and_command_are_shown() {
    let (_dir, run) = sample(&small());
    let html = render(&run.input(true));
    let metadata = block(&html, "metadata");
    for text in [
        "Learning rate",
        "0.0001",
        "Dim",
        "32",
        "Alpha",
        "16",
        "sks person <b>25</b>",
    ] {
        assert!(metadata.contains(text), "{text} in {metadata}");
    }
    assert!(block(&html, "command").contains("--out run"));
}

#[test]
fn write_report_writes_report_html_atomically() {
    let (_dir, run) = sample(&small());
    let input = run.input(true);
    let path = write_report(&input).expect("written");
    assert_eq!(path, run.run.join("report.html"));
    let first = std::fs::read_to_string(&path).expect("read");
    write_report(&input).expect("rewritten");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), first);
    let leftovers: Vec<_> = std::fs::read_dir(&run.run)
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_file_is_not_a_run_folder() {
    let (_dir, run) = sample(&small());
    let file = run.run.join("cells/e0w0s0.png");
    let input = ReportInput {
        run: &file,
        ..run.input(true)
    };
    match render_report(&input) {
        Err(ReportError::RunFolder { path, .. }) => assert_eq!(path, file),
        other => panic!("expected RunFolder, got {:?}", other.map(|h| h.len())),
    }
}

/// Prints the generation time of a 4×4 grid with 4 images of 512² per cell (not asserted: machines differ).
#[test]
fn generation_time_of_a_4x4_grid_with_4_images_per_cell() {
    let (_dir, run) = sample(&SampleSpec::default());
    let input = run.input(true);
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..3 {
        let start = Instant::now();
        size = render(&input).len();
        times.push(start.elapsed().as_secs_f64());
    }
    println!(
        "report of 64 images of 512x512 on {} threads: {:.3} s, {:.3} s, {:.3} s; {} KiB",
        rayon::current_num_threads(),
        times[0],
        times[1],
        times[2],
        size / 1024
    );
}
