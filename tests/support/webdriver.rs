//! A small WebDriver client over reqwest for the browser tests: Debian's `chromium` driven
//! headless by its `chromium-driver` (`chromedriver` on the path, or `CHROMEDRIVER`),
//! started on a free loopback port and stopped when the [`Browser`] drops. A dozen
//! WebDriver calls are all the tests need, so no client crate.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The key WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with its profile and downloads in
    /// `dir`.
    pub async fn start(dir: &Path) -> Browser {
        let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port();
        let driver = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {bin} ({e}): scripts/test installs Debian's chromium-driver \
                     (apt-get install chromium-driver), or set CHROMEDRIVER"
                )
            });
        let http = reqwest::Client::new();
        let mut browser = Browser { driver, base: format!("http://127.0.0.1:{port}"), http };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = browser.http.get(format!("{}/status", browser.base)).send().await;
            if let Ok(r) = ready {
                let v: Value = r.json().await.unwrap_or_default();
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let chromium = which(&chromium).unwrap_or(chromium);
        let downloads = dir.join("downloads");
        std::fs::create_dir_all(&downloads).expect("downloads folder");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-extensions", "--window-size=1400,1000",
                         format!("--user-data-dir={}", dir.join("profile").display())],
                "prefs": {"download.default_directory": downloads.display().to_string(),
                          "download.prompt_for_download": false}
            }
        }}});
        let session = browser.http.post(format!("{}/session", browser.base)).json(&caps).send().await.expect("session");
        let v: Value = session.json().await.expect("session answer");
        let id = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        // Downloads in headless Chromium go where the browser is told.
        browser
            .call(
                "POST",
                "/goog/cdp/execute",
                json!({"cmd": "Browser.setDownloadBehavior",
                       "params": {"behavior": "allow", "downloadPath": downloads.display().to_string()}}),
            )
            .await;
        browser
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.call("GET", "/url", Value::Null).await.as_str().unwrap_or_default().to_owned()
    }

    /// The first element `css` selects, waiting up to 10 s for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.find_all(css).await;
            if let Some(e) = found.into_iter().next() {
                return e;
            }
            assert!(Instant::now() < deadline, "no element '{css}' on {}", self.url().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self.call("POST", "/elements", json!({"using": "css selector", "value": css})).await;
        v.as_array().into_iter().flatten().filter_map(|e| e[ELEMENT].as_str().map(|s| Element(s.to_owned()))).collect()
    }

    pub async fn click(&self, e: &Element) {
        self.call("POST", &format!("/element/{}/click", e.0), json!({})).await;
    }

    /// Clicks a link or a form's button and waits, up to 10 s, until the next page has
    /// loaded (a click does not wait for the navigation it starts).
    pub async fn click_to_next_page(&self, e: &Element) {
        self.script("window.carehubPageBefore = true; return null;").await;
        self.click(e).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let check = "return window.carehubPageBefore === undefined && document.readyState === 'complete';";
        while self.try_script(check).await != Some(Value::Bool(true)) {
            assert!(Instant::now() < deadline, "the click led to no new page (at {})", self.url().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs a script, or nothing when the page is between documents.
    async fn try_script(&self, script: &str) -> Option<Value> {
        let url = format!("{}/execute/sync", self.base);
        let resp = self.http.post(&url).json(&json!({"script": script, "args": []})).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json::<Value>().await.ok().map(|v| v["value"].clone())
    }

    pub async fn type_into(&self, e: &Element, text: &str) {
        self.call("POST", &format!("/element/{}/clear", e.0), json!({})).await;
        self.call("POST", &format!("/element/{}/value", e.0), json!({ "text": text })).await;
    }

    pub async fn text(&self, e: &Element) -> String {
        self.call("GET", &format!("/element/{}/text", e.0), Value::Null).await.as_str().unwrap_or_default().to_owned()
    }

    /// The text of the first element `css` selects.
    pub async fn text_of(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.text(&e).await
    }

    /// The whole page's visible text.
    pub async fn page_text(&self) -> String {
        self.text_of("body").await
    }

    pub async fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", json!({"script": script, "args": []})).await
    }

    /// What the page logged at level SEVERE since last asked, and what its error collector
    /// (`window.consoleErrors`, set by the console's script) caught.
    pub async fn errors(&self) -> Vec<String> {
        let log = self.call("POST", "/se/log", json!({"type": "browser"})).await;
        let mut errors: Vec<String> = log
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect();
        let caught = self.script("return window.consoleErrors || ['the console script did not load'];").await;
        errors.extend(caught.as_array().into_iter().flatten().map(|e| e.to_string()));
        errors
    }

    pub async fn quit(mut self) {
        let _ = self.http.delete(&self.base).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

fn which(bin: &str) -> Option<String> {
    if bin.contains('/') {
        return Some(bin.to_owned());
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}
