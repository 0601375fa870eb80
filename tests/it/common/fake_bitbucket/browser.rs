//! The test's side of the consent page: a browser that reads the form and clicks a button.

use super::oauth::unescape;

/// GETs the consent page, reads its hidden fields back and POSTs the decision.
pub(super) async fn consent(authorize_url: &str, decision: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("fake Bitbucket: cannot build an HTTP client");
    let page = client
        .get(authorize_url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("fake Bitbucket: GET {authorize_url}: {e}"));
    let status = page.status();
    let html = page.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "fake Bitbucket: consent page {authorize_url} answered {status}: {html}"
    );
    let mut fields = vec![("decision".to_owned(), decision.to_owned())];
    for input in html.split("<input ").skip(1) {
        let attr = |name: &str| {
            let key = format!("{name}=\"");
            let start = input.find(&key)? + key.len();
            let len = input[start..].find('"')?;
            Some(unescape(&input[start..start + len]))
        };
        if let (Some(name), Some(value)) = (attr("name"), attr("value")) {
            fields.push((name, value));
        }
    }
    let action = url::Url::parse(authorize_url)
        .and_then(|u| u.join("/site/oauth2/authorize"))
        .unwrap_or_else(|e| panic!("fake Bitbucket: bad authorize URL {authorize_url}: {e}"));
    let answer = client
        .post(action)
        .form(&fields)
        .send()
        .await
        .unwrap_or_else(|e| panic!("fake Bitbucket: POST consent: {e}"));
    let status = answer.status();
    let location = answer
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match location {
        Some(loc) if status == reqwest::StatusCode::FOUND => loc,
        _ => panic!(
            "fake Bitbucket: consent answered {status}: {}",
            answer.text().await.unwrap_or_default()
        ),
    }
}
