//! Counting matches: a common word answers once the first page is sure and says its count is
//! a lower bound; asking for the exact count counts every file.

use crate::common::{Backend, TestApp, fake_bitbucket::FakeFile, indexed_user};

on_both_databases!(common_words_stop_early_and_can_be_counted_exactly);

async fn common_words_stop_early_and_can_be_counted_exactly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let texts: Vec<(String, FakeFile)> = (0..300)
        .map(|n| {
            let dir = if n % 3 == 0 { "tests/deep/er" } else { "src" };
            (
                format!("{dir}/f{n}.rs"),
                FakeFile::Text(format!("fn common_{n}() {{}}\n")),
            )
        })
        .collect();
    let files: Vec<(&str, FakeFile)> = texts.iter().map(|(p, f)| (p.as_str(), f.clone())).collect();
    let (browser, _) = indexed_user(&app, "Counter", "acme", &["many"], &files).await;

    let quick = app.search(&browser, "common").await;
    assert_eq!(quick["total_exact"], false, "{quick}");
    assert_eq!(quick["partial"], false);
    let lower = quick["total_files"].as_u64().expect("count");
    assert!((100..300).contains(&lower), "a lower bound, got {lower}");
    // The page came from the best-ranked files: sources before the deep test folder.
    let paths: Vec<&str> = quick["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths.len(), 20);
    assert!(paths.iter().all(|p| p.starts_with("src/")), "{paths:?}");
    // Lines are there for every file of the page.
    for r in quick["results"].as_array().expect("results") {
        assert!(
            r["matches"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("common")),
            "{r}"
        );
    }

    let exact = app
        .get_json(&browser, "/api/v1/search?q=common&exact=1")
        .await;
    assert_eq!(exact["total_exact"], true);
    assert_eq!(exact["total_files"], 300);

    // Asked again, the same answer comes from the user's recent answers.
    let again = app.search(&browser, "common").await;
    assert_eq!(again["took_ms"], 0, "kept");
    assert_eq!(again["results"], quick["results"]);

    // A selective query is exact without asking.
    let rare = app.search(&browser, "common_123").await;
    assert_eq!(rare["total_exact"], true);
    assert_eq!(rare["total_files"], 1);

    // The page says "N+" and offers the exact count.
    let page = app.page(&browser, "/search?q=common").await;
    assert!(
        page.contains(&format!("{lower}+ files")),
        "the page says N+"
    );
    assert!(page.contains("count exactly"));
    let counted = app.page(&browser, "/search?q=common&exact=1").await;
    assert!(counted.contains("300 files"));
}
